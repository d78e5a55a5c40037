"""The branching expert: state-dependent labels for the meta-learner.

At a few branch points of a run (its *snapshots*: model and optimizer state after update
t), the expert forks continuations that scale the LR by each multiplier m, holds that LR
for a stretch of the budget and then anneals it with cosine to zero at the full budget
(the fixed tail, so that the label is judged on the final validation loss rather than a
short horizon). Each fork is run with ``seeds`` data orders; the label of the state is the
multiplier with the lowest mean final validation loss (a diverged fork counts as +inf).

Because the labelled states come from whatever schedule the source run followed
(randomised exploration, a wrong base LR, or the meta-scheduler itself in a DAgger round),
the learner sees bad states and what fixes them, not only the states of good runs.
"""

from __future__ import annotations

import math
import time

import numpy as np
import polars as pl

from metalr.config import BranchConfig, stable_hash
from metalr.meta.inputs import MAX_LOG_MULT, cosine_factor, decision_interval
from metalr.tasks.splits import SplitData
from metalr.train import Fork, RunSpec, run_loop, task_tensors


def branch_steps(budget: int, points: int, decision_fraction: float) -> list[int]:
    """Evenly spread branch points, each on a decision step of the meta-scheduler."""
    every = decision_interval(budget, decision_fraction)
    steps = {max(every, round(budget * (k + 1) / (points + 1) / every) * every) for k in range(points)}
    return sorted(s for s in steps if s < budget)


def continue_from(
    spec: RunSpec, data: SplitData, splits: dict, snapshot: dict, multiplier: float, hold: int, fork_seed: int
) -> tuple[float, float]:
    """Final validation loss of the fork of ``snapshot`` at ``multiplier`` (inf when it diverges),
    and its training seconds.

    ``data`` and ``splits`` are the task's view of its data and its tensors on the run's device.
    The fork runs through the training loop itself (``run_loop``), so it trains exactly as runs do.
    """
    started = time.perf_counter()
    result = run_loop(spec, data, splits, fork=Fork(snapshot, multiplier, hold, fork_seed))
    return result.row["final_val_loss"], time.perf_counter() - started


def fork_seed(run_id: str, step: int, seed: int) -> int:
    return int(stable_hash([run_id, step, seed], 8), 16)


def label_snapshots(spec, data, snapshots: list[dict], cfg: BranchConfig) -> list[dict]:
    """One row per (branch point, multiplier, fork seed): the fork's final validation loss."""
    view, splits = task_tensors(spec, data)  # once per run: every fork reads the same tensors
    hold = max(1, round(cfg.hold_fraction * spec.task.budget_steps))
    rows = []
    for snapshot in snapshots:
        for multiplier in cfg.multipliers:
            for seed in range(cfg.seeds):
                seed_of_fork = fork_seed(spec.run_id, snapshot["step"], seed)
                loss, seconds = continue_from(spec, view, splits, snapshot, multiplier, hold, seed_of_fork)
                rows.append(
                    {
                        "run_id": spec.run_id,
                        "step": snapshot["step"],
                        "next_lr": snapshot["next_lr"],
                        "base_lr": spec.base_lr,
                        "budget_steps": spec.task.budget_steps,
                        "multiplier": multiplier,
                        "fork_seed": seed,
                        "final_val_loss": loss if math.isfinite(loss) else None,
                        "diverged": not math.isfinite(loss),
                        "wall_time_s": seconds,
                    }
                )
    return rows


FORKS_SCHEMA = {
    "run_id": pl.String,
    "step": pl.Int32,
    "next_lr": pl.Float64,
    "base_lr": pl.Float64,
    "budget_steps": pl.Int32,
    "multiplier": pl.Float64,
    "fork_seed": pl.Int32,
    "final_val_loss": pl.Float64,
    "diverged": pl.Boolean,
    "wall_time_s": pl.Float64,  # the fork's training seconds (a timing column: differs between machines)
}


def forks_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FORKS_SCHEMA)


def fork_losses(forks: pl.DataFrame) -> pl.DataFrame:
    """Per (run, branch point, multiplier): the forks' mean final validation loss (inf where one diverged)."""
    return (
        forks.with_columns(pl.col("final_val_loss").fill_null(math.inf))
        .group_by("run_id", "step", "next_lr", "base_lr", "budget_steps", "multiplier")
        .agg(mean_val_loss=pl.col("final_val_loss").mean())
    )


def _relative_excess(loss: float, best: float) -> float:
    """L / L_best - 1, safe for a best loss of 0: how much worse a fork ended than the best one."""
    return (loss - best) / max(abs(best), 1e-12)


def _soft_log_multiplier(options: list[dict], temperature: float) -> float:
    """The temperature-weighted mean log-multiplier: weights exp(-(L / L_best - 1) / T) over the
    finite fork losses L, so multipliers within a few T of the best loss (relative) share the label."""
    finite = [r for r in options if math.isfinite(r["mean_val_loss"])]
    best = min(r["mean_val_loss"] for r in finite)
    excess = np.array([_relative_excess(r["mean_val_loss"], best) for r in finite])
    weights = np.exp(-excess / temperature)
    return float(weights @ np.log([r["multiplier"] for r in finite]) / weights.sum())


def state_labels(forks: pl.DataFrame, temperature: float | None = None) -> pl.DataFrame:
    """Per (run, branch point): the best multiplier and the label, a = a_now + ln(m), within |a| <= ln 10.

    ``a_now`` is the source run's own log-multiplier on the default cosine at that point,
    so the label is an absolute action of the meta-scheduler. Hard labels (``temperature``
    None): ln(m) of the best multiplier; ties go to the multiplier nearest 1 (no change).
    Soft labels: ln(m) is the temperature-weighted mean over the forks (``_soft_log_multiplier``).
    A point where every fork diverged gets the smallest multiplier either way.
    """
    means = fork_losses(forks)
    rows = []
    for _, group in sorted(means.partition_by("run_id", "step", as_dict=True).items()):
        options = list(group.iter_rows(named=True))
        best = min(options, key=lambda r: (r["mean_val_loss"], abs(math.log(r["multiplier"]))))
        if not math.isfinite(best["mean_val_loss"]):
            best = min(options, key=lambda r: r["multiplier"])
            log_multiplier = math.log(best["multiplier"])
        elif temperature is None:
            log_multiplier = math.log(best["multiplier"])
        else:
            log_multiplier = _soft_log_multiplier(options, temperature)
        factor = max(cosine_factor(best["step"] + 1, best["budget_steps"]), 1e-12)
        a_now = math.log(max(best["next_lr"], 1e-30) / (best["base_lr"] * factor))
        rows.append(
            {
                "run_id": best["run_id"],
                "step": best["step"],
                "best_multiplier": best["multiplier"],
                "best_val_loss": best["mean_val_loss"] if math.isfinite(best["mean_val_loss"]) else None,
                "a_now": a_now,
                "label": float(np.clip(a_now + log_multiplier, -MAX_LOG_MULT, MAX_LOG_MULT)),
            }
        )
    schema = {
        "run_id": pl.String,
        "step": pl.Int32,
        "best_multiplier": pl.Float64,
        "best_val_loss": pl.Float64,
        "a_now": pl.Float64,
        "label": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def policy_regret(proposals: pl.DataFrame, labels: pl.DataFrame, losses: pl.DataFrame) -> float | None:
    """Mean relative excess final validation loss of following a policy at the branch points.

    ``proposals`` (run_id, step, a): the policy's log-multiplier at each labelled state;
    ``labels`` gives a_now there, ``losses`` (``fork_losses``) each fork's final loss. The
    policy's multiplier exp(a - a_now) is read as the fork multiplier nearest it in log
    space; its loss against the best fork's is the regret, L / L_best - 1 (1 where its fork
    diverged, which caps it). None without a scoreable point.
    """
    joined = proposals.join(labels.select("run_id", "step", "a_now"), on=["run_id", "step"])
    by_point = {key: group for key, group in losses.partition_by("run_id", "step", as_dict=True).items()}
    regrets = []
    for row in joined.iter_rows(named=True):
        group = by_point.get((row["run_id"], row["step"]))
        if group is None:
            continue
        finite = [r for r in group.iter_rows(named=True) if math.isfinite(r["mean_val_loss"])]
        if not finite:
            continue
        wanted = row["a"] - row["a_now"]
        nearest = min(group.iter_rows(named=True), key=lambda r: abs(math.log(r["multiplier"]) - wanted))
        best = min(r["mean_val_loss"] for r in finite)
        loss = nearest["mean_val_loss"]
        regrets.append(min(_relative_excess(loss, best), 1.0) if math.isfinite(loss) else 1.0)
    return float(np.mean(regrets)) if regrets else None
