"""Scoring held-out runs, comparing schedulers, and guarding against meta-training leakage."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from metalr.config import PipelineConfig
from metalr.trajectories import read_parquet_files


class LeakageError(RuntimeError):
    pass


def fit_input_tasks(runs_files: Iterable[str | Path]) -> pl.DataFrame:
    """(task, task_hash) of every run in the fit's input files."""
    return read_parquet_files(runs_files).select("task", "task_hash").unique().sort("task")


def check_leakage(config: PipelineConfig, runs_files: Iterable[str | Path]) -> dict:
    """Refuse if a held-out task reaches the fit's inputs, by id or by content (a renamed copy)."""
    runs_files = [str(p) for p in runs_files]
    seen = fit_input_tasks(runs_files)
    held = {t: config.tasks[t].config_hash for t in config.held_out}
    problems = []
    for task, task_hash in seen.iter_rows():
        for held_id, held_hash in held.items():
            if task == held_id or task_hash == held_hash:
                problems.append(f"held-out task {held_id!r} reaches the meta-learner's inputs as task {task!r}")
    if problems:
        raise LeakageError("leakage check failed:\n  " + "\n  ".join(problems))
    return {
        "ok": True,
        "fit_inputs": runs_files,
        "fit_tasks": seen["task"].to_list(),
        "held_out": {k: v for k, v in sorted(held.items())},
    }


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


def summarize_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """Mean and std of the score per task x scheduler, with run counts by status."""
    return (
        score_runs(runs)
        .group_by("phase", "task", "scheduler", "metric", "higher_is_better")
        .agg(
            n_runs=pl.len(),
            n_diverged=(pl.col("status") == "diverged").sum(),
            n_failed=(pl.col("status") == "failed").sum(),
            mean=pl.col("score").mean(),
            std=pl.col("score").std(),
            mean_wall_time_s=pl.col("wall_time_s").mean(),
        )
        .sort("phase", "task", "scheduler")
    )


def paired_comparison(runs: pl.DataFrame, challenger: str, reference: str) -> pl.DataFrame:
    """Per task: challenger minus reference, paired by seed, signed so positive means better."""
    scored = score_runs(runs)
    a = scored.filter(pl.col("scheduler") == challenger).select("task", "seed", "higher_is_better", a="score")
    b = scored.filter(pl.col("scheduler") == reference).select("task", "seed", b="score")
    paired = a.join(b, on=["task", "seed"]).with_columns(
        gain=pl.when(pl.col("higher_is_better")).then(pl.col("a") - pl.col("b")).otherwise(pl.col("b") - pl.col("a"))
    )
    return (
        paired.group_by("task")
        .agg(
            n=pl.len(),
            mean_gain=pl.col("gain").mean(),
            wins=(pl.col("gain") > 0).sum(),
            losses=(pl.col("gain") < 0).sum(),
        )
        .with_columns(challenger=pl.lit(challenger), reference=pl.lit(reference))
        .sort("task")
    )


def verdict(row: dict) -> str:
    if row["wins"] > row["losses"] and row["mean_gain"] > 0:
        return "better"
    if row["losses"] > row["wins"] and row["mean_gain"] < 0:
        return "worse"
    return "no clear difference"
