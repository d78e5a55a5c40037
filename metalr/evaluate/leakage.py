"""The guard that keeps held-out tasks out of meta-training."""

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
