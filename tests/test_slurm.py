"""The tiny pipeline on a real single-node SLURM cluster, through profiles/slurm.

Needs a running cluster (`../shared/scripts/slurm-up.sh up`, as root) and
METALR_SLURM_TEST=1; .ci/run does both. Everything asserted about GPUs comes from
SLURM's own records (sacct and scontrol), not from Snakemake's.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from conftest import TEST_CONFIG, TRAINING_RULES, snakemake_cmd

from metalr.config import load_config
from metalr.paths import ResultsLayout
from metalr.pipeline import phase_run_specs
from metalr.tasks import SplitData
from metalr.train import train_run
from metalr.trajectories import TIMING_COLUMNS


def _expected_slurm_jobs(config) -> dict[str, int]:
    """SLURM jobs per kind for a config under profiles/slurm: one job per data stage, one per
    collection round, the branching expert one per collection round (every phase of the round
    in one), one fit job per round (every variant of the last round in one), the evaluation
    one per stage (grouped)."""
    rounds = config.meta.dagger_rounds
    return {
        "prepare_data": 1,
        "collect_trajectories": 1,
        "collect_on_policy": rounds,
        "label_branch_points": 1,
        "label_on_policy": rounds,
        # the main model of each round before the last, then every variant of the last in one job
        "fit_dagger_model": rounds,
        "fit_meta_learner": 1,
        "evaluate_schedulers": 1,
    }


pytestmark = pytest.mark.skipif(
    os.environ.get("METALR_SLURM_TEST") != "1",
    reason="needs a SLURM cluster: ../shared/scripts/slurm-up.sh up && METALR_SLURM_TEST=1 pytest tests/test_slurm.py",
)


def _scontrol_jobs() -> dict[str, dict[str, str]]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


def _sacct_requested_tres(job_ids) -> dict[str, str]:
    """ReqTRES of each job as SLURM's accounting recorded it."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "--format=JobID,ReqTRES"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|") for line in out.splitlines())


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, repo):
    assert shutil.which("sbatch"), "sbatch not found: start the cluster with ../shared/scripts/slurm-up.sh up"
    workdir = tmp_path_factory.mktemp("slurm")
    cmd = snakemake_cmd(
        TEST_CONFIG,
        "--profile",
        str(repo / "profiles" / "slurm"),
        # Poll a local test cluster often; the profile keeps the plugin's gentler defaults for real ones.
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "2",
    )
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    ours = {k: v for k, v in _scontrol_jobs().items() if v.get("WorkDir") == str(workdir)}
    return workdir, ours, proc.stdout + proc.stderr


def test_the_tiny_pipeline_completes_under_the_slurm_profile(slurm_run):
    workdir, jobs, _ = slurm_run
    assert (workdir / "results" / "summary.md").is_file() and (workdir / "results" / "runs.parquet").is_file()
    assert jobs and all(job["JobState"] == "COMPLETED" for job in jobs.values())


def test_every_training_job_requested_a_gpu_and_no_other_job_did(slurm_run):
    _, jobs, _ = slurm_run
    requested = _sacct_requested_tres(list(jobs))
    assert set(requested) == set(jobs)
    seen_rules = set()
    for job_id, job in jobs.items():
        trains = [rule for rule in TRAINING_RULES if rule in job["Comment"]]
        seen_rules.update(trains)
        has_gpu = "gres/gpu=" in requested[job_id]
        assert has_gpu == bool(trains), (job["Comment"], requested[job_id])
        if trains:
            assert "gres/gpu=1" in requested[job_id] and job.get("TresPerJob") == "gres:gpu:1"
    assert seen_rules == set(TRAINING_RULES)


def test_job_groups_make_one_sbatch_call_per_stage_and_one_per_fit(slurm_run, smoke_config):
    _, jobs, output = slurm_run
    expected = _expected_slurm_jobs(smoke_config)
    assert len(jobs) == sum(expected.values()), sorted(job["Comment"] for job in jobs.values())
    assert len(re.findall(r"submitted with SLURM jobid", output)) == sum(expected.values())


def test_training_jobs_use_the_gpu_slurm_gave_them(slurm_run, smoke_config):
    workdir, _, _ = slurm_run
    logs = [*(workdir / "results" / "logs").rglob("*.log")]
    training = [p for p in logs if any(rule in str(p) for rule in TRAINING_RULES)]
    # collection, branching and fits: one log per round each; evaluation: one per task
    rounds = 1 + smoke_config.meta.dagger_rounds
    assert len(training) == 3 * rounds + len(smoke_config.held_out)
    for path in training:
        assert "gpu: claimed CUDA_VISIBLE_DEVICES=0 from pool 0" in path.read_text(), path


BUDGET = 3000


def _training_processes(workdir) -> list[int]:
    """The training processes that SLURM started for this workflow (same machine: one node)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if os.readlink(proc / "cwd") == str(workdir) and b"train_runs.py" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


def test_a_killed_training_job_is_retried_by_slurm_with_more_memory_and_resumes(tmp_path, repo):
    raw = yaml.safe_load((TEST_CONFIG).read_text())
    raw["defaults"].update(budget_steps=BUDGET, val_every=100)
    raw["checkpoint_every"] = 50
    raw["checkpoint_min_interval_s"] = 0
    raw["collect"] = {"schedulers": ["constant", "cosine"], "seeds": 1}
    config_path = tmp_path / "long.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    layout = ResultsLayout()
    target = layout.trajectories("collect", "digits-mlp")
    first, second = phase_run_specs(load_config(config_path), "collect", "digits-mlp")
    checkpoint = tmp_path / layout.resume("collect", "digits-mlp") / f"{second.run_id}.ckpt"

    cmd = snakemake_cmd(config_path, "--profile", str(repo / "profiles" / "slurm"), target)
    cmd += ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2"]
    output = open(tmp_path / "snakemake.out", "w")  # noqa: SIM115 (a pipe could fill up and stall Snakemake)
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)

    def step() -> int:
        try:
            return torch.load(checkpoint, weights_only=True)["step"]
        except (OSError, RuntimeError, EOFError):
            return 0

    try:
        deadline = time.monotonic() + 400
        while step() < BUDGET / 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        victims = _training_processes(tmp_path)
        assert victims and step() >= BUDGET / 3, "the training job never reached a checkpoint at step >= budget/3"
        for pid in victims:  # what the OOM killer or a crashing node does to the training process
            os.kill(pid, signal.SIGKILL)
        killed_at = step()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        output.close()
    assert proc.returncode == 0, (tmp_path / "snakemake.out").read_text()[-4000:]

    ours = {
        k: v for k, v in _scontrol_jobs().items() if v.get("WorkDir") == str(tmp_path) and "collect" in v["Comment"]
    }
    states = {job_id: job["JobState"] for job_id, job in ours.items()}
    assert sorted(states.values()) == ["COMPLETED", "FAILED"], states
    memory = _sacct_requested_tres(list(ours))
    failed, retried = (next(k for k, v in states.items() if v == state) for state in ("FAILED", "COMPLETED"))
    assert "mem=2000M" in memory[failed] and "mem=4000M" in memory[retried]  # mem_mb: 2000 * attempt

    log = (tmp_path / layout.log("collect_trajectories/round-0")).read_text()
    resumed = int(re.search(r"cosine .* resumed from step (\d+)", log).group(1))
    assert BUDGET / 3 <= killed_at <= resumed < BUDGET
    assert "finished in an earlier attempt, skipped" in log
    data = SplitData.load(tmp_path / layout.data("digits"))
    expected = pl.concat([train_run(spec, data).trajectory for spec in (first, second)])
    assert pl.read_parquet(tmp_path / target).drop(TIMING_COLUMNS).equals(expected.drop(TIMING_COLUMNS))
