"""Per-run metrics: the score, the normalised score, and what a run's curves say about it.

Curve functions take plain arrays so that they can be checked by hand; ``curve_metrics``
applies them to every run of a trajectory table.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from metalr.config import REFERENCE_SCHEDULER

# An improvement smaller than this fraction of the best validation loss so far does not
# count as progress (seed 2's improvement threshold; ReduceLROnPlateau's default too).
PLATEAU_THRESHOLD = 0.01
# Stability is measured over the second half of the budget, where the downward trend has
# flattened, so that the variance reflects oscillation rather than progress.
STABILITY_FROM_PROGRESS = 0.5
# Changes in log-LR below this are float noise, not a scheduler decision.
LR_CHANGE_TOLERANCE = 1e-9
MISS = math.inf


def score_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """Add ``score``: the test metric, or the trivial baseline's metric for a run that did not finish.

    Diverged and failed runs are never dropped; they score what ignoring the input scores.
    """
    return runs.with_columns(
        pl.when(pl.col("status") == "ok")
        .then(pl.col("test_metric"))
        .otherwise(pl.col("trivial_test_metric"))
        .alias("score")
    )


def normalised_scores(scored: pl.DataFrame) -> pl.DataFrame:
    """Add ``norm_score``: per seed, the score relative to untuned cosine on the same task.

    Signed so that above 1 is better than cosine whatever the metric's direction:
    score / cosine when higher is better, cosine / score when lower is better.
    """
    reference = scored.filter((pl.col("scheduler") == REFERENCE_SCHEDULER) & (pl.col("lr_multiplier") == 1.0)).select(
        "task", "seed", ref_score="score"
    )
    ratio = (
        pl.when(pl.col("higher_is_better"))
        .then(pl.col("score") / pl.col("ref_score"))
        .otherwise(pl.col("ref_score") / pl.col("score"))
    )
    return (
        scored.join(reference, on=["task", "seed"], how="left")
        .with_columns(norm_score=pl.when(ratio.is_finite()).then(ratio))
        .drop("ref_score")
    )


def first_hit(values: np.ndarray, target: float | None, higher_is_better: bool) -> int | None:
    """Index of the first value that reaches ``target``, or None for a miss."""
    if target is None or not math.isfinite(target) or len(values) == 0:
        return None
    reached = values >= target if higher_is_better else values <= target
    hits = np.flatnonzero(reached)
    return int(hits[0]) if len(hits) else None


def hit_summary(steps: np.ndarray, epochs: np.ndarray, seconds: np.ndarray) -> dict[str, float | None]:
    """Hit rate over all runs, and medians over the runs that hit; misses (infinite) are never averaged."""
    hit = np.isfinite(steps)
    out: dict[str, float | None] = {"hit_rate": float(hit.mean()) if len(steps) else None}
    for unit, values in (("steps", steps), ("epochs", epochs), ("seconds", seconds)):
        out[f"median_{unit}"] = float(np.median(values[hit])) if hit.any() else None
    return out


def convergence_index(val_losses: np.ndarray, threshold: float = PLATEAU_THRESHOLD) -> int | None:
    """Index of the evaluation after which the validation loss never improves by more than ``threshold``.

    An evaluation improves when it falls below (1 - threshold) x the best loss seen before it;
    the plateau starts at the last such evaluation (0 if none ever improved).
    """
    if len(val_losses) == 0:
        return None
    best, plateau = val_losses[0], 0
    for i, value in enumerate(val_losses[1:], start=1):
        if value < best * (1 - threshold):
            plateau = i
        best = min(best, value)
    return plateau


def curve_mean(progress: np.ndarray, values: np.ndarray) -> float | None:
    """Area under a validation curve over training progress, divided by the span it covers.

    Trapezoidal, so it is the curve's average height; a single point is its own average.
    """
    if len(values) == 0:
        return None
    if len(values) == 1 or progress[-1] == progress[0]:
        return float(values[0])
    return float(np.trapezoid(values, progress) / (progress[-1] - progress[0]))


def sample_variance(values: np.ndarray) -> float | None:
    return float(np.var(values, ddof=1)) if len(values) >= 2 else None


def lr_change_stats(lrs: np.ndarray) -> tuple[int, float | None, float | None]:
    """(count, mean size, largest size) of the LR changes between consecutive steps, sizes as |Δ ln lr|."""
    if len(lrs) < 2:
        return 0, None, None
    jumps = np.abs(np.diff(np.log(np.maximum(lrs, 1e-30))))
    changes = jumps[jumps > LR_CHANGE_TOLERANCE]
    if len(changes) == 0:
        return 0, None, None
    return len(changes), float(changes.mean()), float(changes.max())


def _optional_mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def _column(rows: pl.DataFrame, name: str) -> np.ndarray:
    return rows[name].cast(pl.Float64).to_numpy()


def _time_to(rows: pl.DataFrame, column: str, target: float | None, higher_is_better: bool) -> dict[str, float]:
    """Steps, epochs and training seconds until ``column`` first reaches ``target``; infinite on a miss."""
    evaluated = rows.filter(pl.col(column).is_not_null()) if column in rows.columns else rows.clear()
    hit = first_hit(_column(evaluated, column), target, higher_is_better) if evaluated.height else None
    if hit is None:
        return {"steps": MISS, "epochs": MISS, "seconds": MISS}
    step = int(evaluated["step"][hit])
    upto = rows.filter(pl.col("step") <= step)
    return {
        "steps": float(step),
        "epochs": float(evaluated["epoch"][hit]),
        "seconds": float(upto["res_step_time_s"].fill_null(0.0).sum()),
    }


def run_curve_metrics(run: dict, rows: pl.DataFrame, metric_target: float | None, loss_target: float | None) -> dict:
    """Everything measured on one run's trajectory (``rows``, sorted by step)."""
    finished = run["status"] == "ok"
    # A metric the trajectory never logged (an older file, a new metric) just measures nothing.
    val_col = f"val_{run['metric']}"
    evals = rows.filter(pl.col("val_loss").is_not_null())
    late = rows.filter(pl.col("progress") > STABILITY_FROM_PROGRESS)
    late_evals = evals.filter(pl.col("progress") > STABILITY_FROM_PROGRESS)
    metric_time = _time_to(rows, val_col, metric_target, run["higher_is_better"])
    loss_time = _time_to(rows, "val_loss", loss_target, higher_is_better=False)
    plateau = convergence_index(_column(evals, "val_loss")) if finished else None
    n_changes, change_mean, change_max = lr_change_stats(_column(rows, "lr"))
    metric_evals = rows.filter(pl.col(val_col).is_not_null()) if val_col in rows.columns else None
    step_times = _column(rows, "res_step_time_s")
    out = {
        "run_id": run["run_id"],
        "steps_to_target": metric_time["steps"],
        "epochs_to_target": metric_time["epochs"],
        "seconds_to_target": metric_time["seconds"],
        "steps_to_loss_target": loss_time["steps"],
        "epochs_to_loss_target": loss_time["epochs"],
        "seconds_to_loss_target": loss_time["seconds"],
        "convergence_step": None if plateau is None else float(evals["step"][plateau]),
        "convergence_epoch": None if plateau is None else float(evals["epoch"][plateau]),
        "val_auc": curve_mean(_column(metric_evals, "progress"), _column(metric_evals, val_col))
        if finished and metric_evals is not None
        else None,
        "train_loss_var": sample_variance(_column(late, "loss_train")) if finished else None,
        "val_loss_var": sample_variance(_column(late_evals, "val_loss")) if finished else None,
        "lr_changes": n_changes,
        "lr_change_mean": change_mean,
        "lr_change_max": change_max,
        "step_time_median_s": float(np.nanmedian(step_times)) if len(step_times) else None,
        "train_time_s": float(np.nansum(step_times)),
    }
    # Probes that only some runs record (uncertainty, utilisation, memory): their run mean.
    # res_data_* describe the dataset, not the resources a run used.
    for name in rows.columns:
        if name.startswith(("unc_", "res_")) and name != "res_step_time_s" and not name.startswith("res_data_"):
            out[f"mean_{name}"] = _optional_mean(_column(rows, name))
    return out


def curve_metrics(runs: pl.DataFrame, trajectories: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """One row of curve metrics per run; ``targets`` holds (task, metric_target, loss_target)."""
    by_task = {r["task"]: r for r in targets.iter_rows(named=True)}
    by_run = trajectories.sort("step").partition_by("run_id", as_dict=True)
    rows = []
    for run in runs.iter_rows(named=True):
        target = by_task.get(run["task"], {})
        curve = by_run.get((run["run_id"],), trajectories.clear())
        rows.append(run_curve_metrics(run, curve, target.get("metric_target"), target.get("loss_target")))
    return pl.DataFrame(rows, infer_schema_length=None)
