from pathlib import Path

import polars as pl
import pytest

from metalr.trajectories import ParquetInputError, read_parquet_files, trajectory_frame, write_parquet


def test_a_failed_write_leaves_nothing_at_the_final_path(tmp_path, monkeypatch):
    target = tmp_path / "out" / "part-0.parquet"

    def explode(self, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", explode)
    with pytest.raises(OSError):
        write_parquet(trajectory_frame([]), target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_reading_a_missing_or_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ParquetInputError, match="bad.parquet"):
        read_parquet_files([bad])
    with pytest.raises(ParquetInputError, match="missing.parquet"):
        read_parquet_files([tmp_path / "missing.parquet"])


def test_trajectory_rows_keep_the_declared_dtypes(tmp_path):
    frame = trajectory_frame([{"run_id": "a", "step": 1, "lr": 0.1, "loss_train": 1.0}])
    write_parquet(frame, tmp_path / "t.parquet")
    back = pl.read_parquet(tmp_path / "t.parquet")
    assert back.schema == frame.schema
    assert back["val_loss"].null_count() == 1


def test_every_trajectory_runs_and_forks_column_is_documented(repo):
    import re

    from metalr.meta.branching import FORKS_SCHEMA
    from metalr.trajectories import RUNS_SCHEMA, trajectory_schema

    doc = (repo / "docs" / "trajectory-schema.md").read_text()
    documented = set(re.findall(r"`([a-z_0-9]+)`", doc))
    names = trajectory_schema().names + RUNS_SCHEMA.names + list(FORKS_SCHEMA)
    missing = [name for name in names if name not in documented]
    assert not missing, f"undocumented columns: {missing}"


def test_the_writer_puts_each_run_in_its_own_row_group_and_publishes_only_on_success(tmp_path):
    import pyarrow.parquet as pq

    from metalr.trajectories import TrajectoryWriter

    target = tmp_path / "part-0.parquet"
    with TrajectoryWriter(target) as writer:
        for run in ("a", "b", "c"):
            writer.write(trajectory_frame([{"run_id": run, "step": s, "lr": 0.1} for s in (1, 2)]))
        assert not target.exists()
    assert pq.ParquetFile(target).num_row_groups == 3
    with pytest.raises(RuntimeError), TrajectoryWriter(tmp_path / "failed.parquet") as writer:
        writer.write(trajectory_frame([{"run_id": "a", "step": 1}]))
        raise RuntimeError("job killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0.parquet"]
