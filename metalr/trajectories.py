"""The Parquet contracts: per-step trajectories and per-run summaries.

Where the files live is ``metalr.paths.ResultsLayout``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from metalr.io import atomic_path

# Columns the training loop writes itself; every other column belongs to a probe.
LOOP_COLUMNS = {
    "run_id": pa.string(),
    "step": pa.int32(),
    "epoch": pa.float64(),
    "progress": pa.float64(),
    "lr": pa.float64(),
    "lr_change_reason": pa.string(),
    "lr_change": pa.float64(),
    "res_step_time_s": pa.float64(),
}


@functools.cache
def trajectory_schema() -> pa.Schema:
    """The loop's columns, then every probe's. Built on first use: the probes import torch, which a
    job that only reads or merges Parquet (most reporting jobs) should not pay for."""
    from metalr.features import probe_columns

    return pa.schema(list(LOOP_COLUMNS.items()) + list(probe_columns().items()))


# Columns that depend on wall-clock time or memory and so differ between otherwise identical runs.
TIMING_COLUMNS = ("res_step_time_s", "res_samples_per_s", "res_cpu_rss_mb", "res_gpu_mem_mb", "res_gpu_util")
# The same in runs.parquet and summary.parquet. Everything else is deterministic on CPU for
# a given config and seed (docs/faults.md).
RUNS_TIMING_COLUMNS = ("wall_time_s", "mean_wall_time_s")
REQUIRED_TRAJECTORY_COLUMNS = ("run_id", "step", "epoch", "progress", "lr", "loss_train", "loss_ema")

RUNS_SCHEMA = pa.schema(
    {
        "run_id": pa.string(),
        "phase": pa.string(),
        "task": pa.string(),
        "task_hash": pa.string(),
        "dataset": pa.string(),
        "model": pa.string(),
        "optimizer": pa.string(),
        "batch_size": pa.int32(),
        "base_lr": pa.float64(),  # the LR the run used: the task's default times lr_multiplier
        "lr_multiplier": pa.float64(),
        "weight_decay": pa.float64(),
        "budget_steps": pa.int32(),
        "scheduler": pa.string(),
        "scheduler_params": pa.string(),
        "seed": pa.int32(),
        "status": pa.string(),
        "diverged_reason": pa.string(),  # metalr.divergence.REASONS; null unless status is diverged
        "error": pa.string(),
        "steps_done": pa.int32(),
        "final_train_loss": pa.float64(),
        "final_val_loss": pa.float64(),
        "final_val_metric": pa.float64(),
        "metric": pa.string(),
        "higher_is_better": pa.bool_(),
        "test_loss": pa.float64(),
        "test_metric": pa.float64(),
        "trivial_test_metric": pa.float64(),
        "test_acc": pa.float64(),
        "test_top5": pa.float64(),
        "test_f1": pa.float64(),
        "test_auc": pa.float64(),
        "test_mae": pa.float64(),
        "test_rmse": pa.float64(),
        "test_smape": pa.float64(),
        "test_wer": pa.float64(),
        "wall_time_s": pa.float64(),
        "device": pa.string(),
        "torch_version": pa.string(),
        "metalr_version": pa.string(),
        "python_version": pa.string(),
        "config_hash": pa.string(),
    }.items()
)
# runs.parquet's status: finished, stopped by the divergence rule, or raised (recorded by failed_run).
RUN_STATUSES = OK, DIVERGED, FAILED = ("ok", "diverged", "failed")


def trajectory_frame(rows: Sequence[dict]) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_pylist(list(rows), schema=trajectory_schema()))


def runs_frame(rows: Sequence[dict]) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_pylist(list(rows), schema=RUNS_SCHEMA))


class TrajectoryWriter:
    """Writes runs' trajectories into one Parquet file, one row group per run.

    Rows are buffered per run by the caller and written in one call; the file is opened
    once and appears at its final path only when closed without error.
    """

    def __init__(self, path: str | Path, schema: pa.Schema | None = None):
        self.schema = schema or trajectory_schema()
        self._atomic = atomic_path(path)
        self._writer = pq.ParquetWriter(self._atomic.__enter__(), self.schema)

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self._writer.write_table(frame.to_arrow().cast(self.schema))

    def close(self, error: BaseException | None = None) -> None:
        self._writer.close()
        if error is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    """Write atomically: readers never see a partial file at ``path``."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


class ParquetInputError(ValueError):
    pass


def _unreadable(path: str | Path, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"cannot read Parquet input {str(path)!r}: {first}; delete it and rerun, and Snakemake rebuilds it "
        "(every intermediate file is a target of rule all)"
    )


def check_parquet_inputs(paths: Iterable[str | Path]) -> list[str]:
    """``paths``, after checking that those which exist have a readable Parquet footer.

    Called while Snakemake plans the jobs, so a corrupt input is named before any job starts
    (a started job would first remove its own, still good, outputs).
    """
    import pyarrow.parquet as pq

    paths = [str(p) for p in paths]
    for path in paths:
        if Path(path).exists():
            try:
                pq.read_metadata(path)
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise ParquetInputError(_unreadable(path, err)) from None
    return paths


def read_parquet_files(paths: Iterable[str | Path]) -> pl.DataFrame:
    """Read and concatenate Parquet files, naming the file that is missing or unreadable."""
    frames = []
    for path in paths:
        try:
            frames.append(pl.read_parquet(path))
        except (OSError, pl.exceptions.PolarsError) as err:
            raise ParquetInputError(_unreadable(path, err)) from err
    if not frames:
        raise ParquetInputError("no Parquet inputs were given")
    return pl.concat(frames, how="vertical_relaxed")


def scan_trajectories(root: str | Path = "results") -> pl.LazyFrame:
    """All trajectories under ``root``, with ``phase`` and ``task`` from the paths."""
    return pl.scan_parquet(Path(root) / "trajectories" / "**" / "*.parquet", hive_partitioning=True)
