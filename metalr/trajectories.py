"""The Parquet contracts: per-step trajectories and per-run summaries.

Where the files live is ``metalr.paths.ResultsLayout``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from metalr.io import atomic_path

TRAJECTORY_SCHEMA = pl.Schema(
    {
        "run_id": pl.String,
        "step": pl.Int32,
        "epoch": pl.Float64,
        "progress": pl.Float64,
        "lr": pl.Float64,
        "loss_train": pl.Float64,
        "loss_ema": pl.Float64,
        "grad_norm": pl.Float64,
        "val_loss": pl.Float64,
        "val_acc": pl.Float64,
        "val_mae": pl.Float64,
        "res_step_time_s": pl.Float64,
    }
)
# Columns that depend on wall-clock time and so differ between otherwise identical runs.
TIMING_COLUMNS = ("res_step_time_s",)
REQUIRED_TRAJECTORY_COLUMNS = ("run_id", "step", "epoch", "progress", "lr", "loss_train", "loss_ema", "grad_norm")

RUNS_SCHEMA = pl.Schema(
    {
        "run_id": pl.String,
        "phase": pl.String,
        "task": pl.String,
        "task_hash": pl.String,
        "dataset": pl.String,
        "model": pl.String,
        "optimizer": pl.String,
        "batch_size": pl.Int32,
        "base_lr": pl.Float64,
        "weight_decay": pl.Float64,
        "budget_steps": pl.Int32,
        "scheduler": pl.String,
        "scheduler_params": pl.String,
        "seed": pl.Int32,
        "status": pl.String,
        "error": pl.String,
        "steps_done": pl.Int32,
        "final_train_loss": pl.Float64,
        "final_val_loss": pl.Float64,
        "final_val_metric": pl.Float64,
        "metric": pl.String,
        "higher_is_better": pl.Boolean,
        "test_loss": pl.Float64,
        "test_metric": pl.Float64,
        "trivial_test_metric": pl.Float64,
        "wall_time_s": pl.Float64,
        "device": pl.String,
        "torch_version": pl.String,
        "metalr_version": pl.String,
        "python_version": pl.String,
        "config_hash": pl.String,
    }
)
RUN_STATUSES = ("ok", "diverged", "failed")


def trajectory_frame(rows: Sequence[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TRAJECTORY_SCHEMA)


def runs_frame(rows: Sequence[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RUNS_SCHEMA)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    """Write atomically: readers never see a partial file at ``path``."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


class ParquetInputError(ValueError):
    pass


def read_parquet_files(paths: Iterable[str | Path]) -> pl.DataFrame:
    """Read and concatenate Parquet files, naming the file that is missing or unreadable."""
    frames = []
    for path in paths:
        try:
            frames.append(pl.read_parquet(path))
        except (OSError, pl.exceptions.PolarsError) as err:
            raise ParquetInputError(f"cannot read Parquet input {str(path)!r}: {err}") from err
    if not frames:
        raise ParquetInputError("no Parquet inputs were given")
    return pl.concat(frames, how="vertical_relaxed")


def scan_trajectories(root: str | Path = "results") -> pl.LazyFrame:
    """All trajectories under ``root``, with ``phase`` and ``task`` from the paths."""
    return pl.scan_parquet(Path(root) / "trajectories" / "**" / "*.parquet", hive_partitioning=True)
