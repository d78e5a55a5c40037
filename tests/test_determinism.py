"""Same config and seeds give the same Parquet content, whatever the machine's GPU slots."""

import re
from pathlib import Path

import polars as pl
import pytest

from metalr.evaluate.protocol import EVALUATION_TIMING_COLUMNS
from metalr.schedulers import MACHINE_DEPENDENT
from metalr.trajectories import RUNS_TIMING_COLUMNS, TIMING_COLUMNS

PARQUET_OUTPUTS = ("runs.parquet", "summary.parquet", "trajectories", "runs")
TRAINING_LOGS = ("collect_trajectories", "fit_meta_learner", "evaluate_schedulers")


def _parquet_files(results: Path) -> list[Path]:
    return sorted(p.relative_to(results) for p in results.rglob("*.parquet") if ".tmp" not in p.name)


def _content(path: Path, machine_runs: set[str]) -> pl.DataFrame:
    """The file without timing columns and without the rows of schedulers that read timing features."""
    frame = pl.read_parquet(path)
    timing = (*TIMING_COLUMNS, *RUNS_TIMING_COLUMNS, *EVALUATION_TIMING_COLUMNS)
    frame = frame.drop([c for c in timing if c in frame.columns])
    for column in ("scheduler", "variant", "comparator"):
        if column in frame.columns:
            frame = frame.filter(~pl.col(column).is_in(MACHINE_DEPENDENT))
    return frame.filter(~pl.col("run_id").is_in(machine_runs)) if "run_id" in frame.columns else frame


def test_two_pipeline_runs_with_the_same_seeds_write_equal_parquet_except_timing(smoke_run, smoke_run_four_gpus):
    first, _ = smoke_run
    files = _parquet_files(first)
    assert files == _parquet_files(smoke_run_four_gpus)
    assert {f.parts[0] for f in files} >= set(PARQUET_OUTPUTS)
    runs = pl.read_parquet(first / "runs.parquet")
    machine_runs = set(runs.filter(pl.col("scheduler").is_in(MACHINE_DEPENDENT))["run_id"])
    assert machine_runs  # the smoke config evaluates meta-plus-resources
    for name in files:
        a, b = _content(first / name, machine_runs), _content(smoke_run_four_gpus / name, machine_runs)
        assert a.height > 0, name
        assert a.equals(b), f"{name} differs between two runs with the same config and seeds"


def test_timing_columns_are_the_only_ones_left_out(smoke_run, smoke_run_four_gpus):
    first, _ = smoke_run
    traj = pl.read_parquet(first / "trajectories" / "phase=collect" / "task=digits-mlp" / "part-0.parquet")
    other = pl.read_parquet(
        smoke_run_four_gpus / "trajectories" / "phase=collect" / "task=digits-mlp" / "part-0.parquet"
    )
    # Wall-clock columns really do differ, which is why they are listed; nothing else is dropped.
    assert not traj["res_step_time_s"].equals(other["res_step_time_s"])
    assert all(column.startswith("res_") for column in TIMING_COLUMNS)  # resource probes only
    assert set(RUNS_TIMING_COLUMNS) == {"wall_time_s", "mean_wall_time_s"}


@pytest.mark.parametrize("rule", TRAINING_LOGS)
def test_every_gpu_job_of_the_pipeline_claims_a_slot_from_the_pool(smoke_run_four_gpus, rule):
    root = smoke_run_four_gpus / "logs"
    logs = sorted([*root.glob(f"{rule}.log"), *(root / rule).rglob("*.log")])
    assert logs
    claims = [re.search(r"gpu: claimed CUDA_VISIBLE_DEVICES=(\S+) from pool 0,1,2,3", p.read_text()) for p in logs]
    assert all(claims), [p.read_text()[-500:] for p in logs]
    assert all(c.group(1) in {"0", "1", "2", "3"} for c in claims)
