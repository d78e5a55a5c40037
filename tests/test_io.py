"""Results files: atomic, and readable as the umask allows (shared cluster filesystems)."""

from __future__ import annotations

import os
import stat

import polars as pl
import pytest
import torch

from metalr.io import atomic_path
from metalr.meta.checkpoint import save_checkpoint
from metalr.trajectories import write_parquet


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_parquet_and_checkpoint_files_are_0644_under_umask_022(tmp_path, umask):
    umask(0o022)
    write_parquet(pl.DataFrame({"a": [1, 2]}), tmp_path / "runs.parquet")
    save_checkpoint(torch.nn.Linear(2, 1), {"arch": "linear"}, tmp_path / "meta")
    for path in (tmp_path / "runs.parquet", tmp_path / "meta" / "model.safetensors", tmp_path / "meta" / "config.json"):
        assert _mode(path) == 0o644, f"{path.name}: {oct(_mode(path))}"


def test_a_stricter_umask_is_respected(tmp_path, umask):
    umask(0o077)
    write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "private.parquet")
    assert _mode(tmp_path / "private.parquet") == 0o600


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []
