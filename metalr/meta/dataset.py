"""Turn source runs and the branching expert's labels into decision sequences for the meta-learner.

A sequence is one source run: its decision inputs at every decision step (the history the
causal learner reads), with a label only at the branch points the expert forked from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from metalr.meta.inputs import ALL_FEATURES, CORE_FEATURES, InputBuilder, decision_interval, feature_indices


@dataclass
class DecisionSequence:
    """One source run as the learner reads it (not a ``collections.abc.Sequence``)."""

    run_id: str
    steps: np.ndarray  # (T,) decision steps
    inputs: np.ndarray  # (T, F)
    labels: np.ndarray  # (T,) NaN where the expert did not branch


def decision_inputs(run: dict, trajectory: pl.DataFrame, decision_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(steps, inputs over ALL_FEATURES) at each decision of one run, as the MetaScheduler would see them."""
    budget = int(run["budget_steps"])
    every = decision_interval(budget, decision_fraction)
    builder = InputBuilder(base_lr=float(run["base_lr"]), budget=budget)
    steps, inputs = [], []
    for row in trajectory.sort("step").iter_rows(named=True):
        builder.update(row)
        step = row["step"]
        if step % every == 0 and step < budget:
            steps.append(step)
            inputs.append(builder.decision_vector())
    return np.array(steps, dtype=np.int64), np.array(inputs, dtype=np.float32).reshape(-1, len(ALL_FEATURES))


def build_sequences(
    runs: pl.DataFrame, trajectories: pl.DataFrame, labels: pl.DataFrame, decision_fraction: float
) -> list[DecisionSequence]:
    """One sequence per labelled source run (finished or not: a diverging source has informative states)."""
    labelled = labels.partition_by("run_id", as_dict=True)
    by_run = trajectories.filter(pl.col("run_id").is_in(labels["run_id"].unique().implode())).partition_by(
        "run_id", as_dict=True
    )
    sequences = []
    for run in (
        runs.filter(pl.col("run_id").is_in(labels["run_id"].unique().implode())).sort("run_id").iter_rows(named=True)
    ):
        rows = by_run.get((run["run_id"],))
        if rows is None or rows.is_empty():
            continue
        steps, inputs = decision_inputs(run, rows, decision_fraction)
        target = dict(labelled[(run["run_id"],)].select("step", "label").iter_rows())
        y = np.array([target.get(int(s), np.nan) for s in steps], dtype=np.float32)
        if np.isfinite(y).any():
            sequences.append(DecisionSequence(run["run_id"], steps, inputs, y))
    return sequences


def relabel(sequences: list[DecisionSequence], labels: pl.DataFrame) -> list[DecisionSequence]:
    """``sequences`` with the labels of ``labels`` (run_id, step, label) at their labelled decisions."""
    by_point = {(r, s): y for r, s, y in labels.select("run_id", "step", "label").iter_rows()}
    out = []
    for sequence in sequences:
        y = np.array([by_point.get((sequence.run_id, int(s)), np.nan) for s in sequence.steps], dtype=np.float32)
        out.append(replace(sequence, labels=np.where(np.isfinite(sequence.labels), y, np.nan).astype(np.float32)))
    return out


def select_features(sequences: list[DecisionSequence], names: tuple[str, ...]) -> list[DecisionSequence]:
    index = feature_indices(names)
    return [replace(s, inputs=s.inputs[:, index]) for s in sequences]


def shuffle_across_runs(
    sequences: list[DecisionSequence], budgets: dict[str, int], seed: int, bins: int = 10
) -> list[DecisionSequence]:
    """The shuffled control: state inputs permuted across runs within each progress bin.

    Progress, remaining steps and the current LR stay with their sequence, so this control
    keeps everything a progress-to-LR curve could use and breaks only the link between the
    run's state and its labels.
    """
    rng = np.random.default_rng(seed)
    state_columns = [i for i, name in enumerate(ALL_FEATURES) if name not in CORE_FEATURES]
    out = [replace(s, inputs=s.inputs.copy()) for s in sequences]
    slots: dict[int, list[tuple[int, int]]] = {}
    for i, s in enumerate(sequences):
        progress = s.steps / budgets[s.run_id]
        for t, b in enumerate(np.minimum((progress * bins).astype(int), bins - 1)):
            slots.setdefault(int(b), []).append((i, t))
    for cells in slots.values():
        order = rng.permutation(len(cells))
        for (i, t), k in zip(cells, order, strict=True):
            src_i, src_t = cells[k]
            out[i].inputs[t, state_columns] = sequences[src_i].inputs[src_t, state_columns]
    return out
