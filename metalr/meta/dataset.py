"""Turn collected trajectories into (inputs, label) sequences for the meta-learner.

First objective (deliberately simple and honest): imitate, decision by decision, the run
that reached the lowest final validation loss among all schedules tried on the same task
and seed. The label is that run's LR over the next decision interval, as a log-multiplier
on the default cosine schedule. Inputs are the expert's own per-run-normalised features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from metalr.meta.inputs import MAX_LOG_MULT, InputBuilder, cosine_factor, decision_interval


@dataclass
class Sequence:
    run_id: str
    inputs: np.ndarray  # (T, F)
    labels: np.ndarray  # (T,)


def select_experts(runs: pl.DataFrame) -> pl.DataFrame:
    """Per (task, seed), the finished run with the lowest final validation loss."""
    finished = runs.filter((pl.col("status") == "ok") & pl.col("final_val_loss").is_not_null())
    return finished.sort("final_val_loss").group_by("task", "seed", maintain_order=True).first().sort("task", "seed")


def log_multiplier(lr: float, base_lr: float, update: int, budget: int) -> float:
    ratio = math.log(max(lr, 1e-30) / (base_lr * cosine_factor(update, budget)))
    return min(max(ratio, -MAX_LOG_MULT), MAX_LOG_MULT)


def run_sequence(run: dict, trajectory: pl.DataFrame, decision_fraction: float) -> Sequence:
    """Decision inputs and labels for one run; ``trajectory`` holds that run's rows."""
    budget, base_lr = int(run["budget_steps"]), float(run["base_lr"])
    every = decision_interval(budget, decision_fraction)
    builder = InputBuilder(base_lr=base_lr, budget=budget)
    rows = trajectory.sort("step").to_dicts()
    lrs = [r["lr"] for r in rows]
    inputs, labels = [], []
    for row in rows:
        builder.update(row)
        step = row["step"]
        if step % every or step >= budget:
            continue
        upcoming = range(step + 1, min(step + every, budget) + 1)
        labels.append(float(np.mean([log_multiplier(lrs[s - 1], base_lr, s, budget) for s in upcoming])))
        inputs.append(builder.decision_vector())
    width = len(builder.decision_vector())
    return Sequence(
        run["run_id"], np.array(inputs, dtype=np.float32).reshape(-1, width), np.array(labels, dtype=np.float32)
    )


def build_sequences(runs: pl.DataFrame, trajectories: pl.DataFrame, decision_fraction: float) -> list[Sequence]:
    experts = select_experts(runs)
    by_run = trajectories.filter(pl.col("run_id").is_in(experts["run_id"].implode())).partition_by(
        "run_id", as_dict=True
    )
    sequences = []
    for run in experts.iter_rows(named=True):
        rows = by_run.get((run["run_id"],))
        if rows is not None and rows.height:
            sequence = run_sequence(run, rows, decision_fraction)
            if len(sequence.labels):
                sequences.append(sequence)
    return sequences
