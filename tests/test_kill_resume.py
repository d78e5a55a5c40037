"""SIGKILL a real Snakemake training job mid-run, rerun it, and check that nothing was lost."""

import os
import re
import signal
import subprocess
import time

import polars as pl
import pytest
import torch
import yaml
from conftest import TEST_CONFIG, snakemake_cmd

from metalr.config import load_config
from metalr.paths import ResultsLayout
from metalr.pipeline import phase_run_specs
from metalr.tasks import SplitData
from metalr.train import train_run
from metalr.trajectories import TIMING_COLUMNS

BUDGET, EVERY = 1500, 50
TASK = "digits-mlp"


@pytest.fixture
def long_config(tmp_path, repo):
    raw = yaml.safe_load((TEST_CONFIG).read_text())
    raw["defaults"].update(budget_steps=BUDGET, val_every=100)
    raw["checkpoint_every"] = EVERY
    raw["checkpoint_min_interval_s"] = 0
    raw["collect"] = {"schedulers": ["constant", "cosine"], "seeds": 1}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _checkpoint_step(path) -> int | None:
    try:
        return torch.load(path, weights_only=True)["step"]
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


def test_a_killed_training_job_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path, long_config):
    layout = ResultsLayout()  # relative to the working directory, as the rules name their outputs
    target = layout.trajectories("collect", TASK)
    cmd = snakemake_cmd(long_config, "--cores", "1", target)
    config = load_config(long_config)
    first, second = phase_run_specs(config, "collect", TASK)  # constant, then cosine, in one job
    checkpoint = tmp_path / layout.resume("collect", TASK) / f"{second.run_id}.ckpt"

    # A new session, so the kill takes Snakemake and its job together, as a lost node would.
    job = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while (_checkpoint_step(checkpoint) or 0) < BUDGET / 3:
        assert job.poll() is None, "the job ended before a checkpoint at step >= budget/3 was seen"
        assert time.monotonic() < deadline, "no checkpoint at step >= budget/3 within 240 s"
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    killed_at = _checkpoint_step(checkpoint)
    assert BUDGET / 3 <= killed_at < BUDGET
    assert not (tmp_path / target).exists()  # nothing partial at the final path
    assert (tmp_path / layout.resume("collect", TASK) / f"{first.run_id}.done").exists()

    subprocess.run(snakemake_cmd(long_config, "--unlock"), cwd=tmp_path, check=True, capture_output=True)
    rerun = subprocess.run([*cmd, "--rerun-incomplete"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]

    log = (tmp_path / layout.log("collect_trajectories/round-0")).read_text()
    assert re.search(r"cosine( lr x\S+)? +seed=0 ok", log) and f"resumed from step {killed_at}" in log
    assert re.search(r"constant( lr x\S+)? +seed=0 ok", log) and "finished in an earlier attempt, skipped" in log
    assert not (tmp_path / "results" / "resume").exists()  # cleaned up once the outputs exist

    data = SplitData.load(tmp_path / layout.data("digits"))
    expected = pl.concat([train_run(spec, data).trajectory for spec in (first, second)])
    got = pl.read_parquet(tmp_path / target)
    assert got.drop(TIMING_COLUMNS).equals(expected.drop(TIMING_COLUMNS))
