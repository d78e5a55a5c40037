from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from metalr.config import ModelSpec, TaskSpec, load_config
from metalr.tasks import prepare_dataset

REPO = Path(__file__).resolve().parents[1]
# The tests' own smoke config (snakemake-workflows convention): self-contained, built-in
# data only, results in results/ under the working directory.
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
# A guard against a hung pipeline, not a speed test: the smoke pipeline takes ~1 min on a
# quiet 2-core machine and several times that beside other work.
PIPELINE_TIMEOUT_S = 1800


# The rules that train or fit, and so request the `gpu` resource.
TRAINING_RULES = (
    "collect_trajectories",
    "collect_on_policy",
    "label_branch_points",
    "label_on_policy",
    "fit_meta_learner",
    "fit_dagger_model",
    "evaluate_schedulers",
)


# pytest-xdist (pyproject's addopts: -n 2 --dist loadscope) hands out whole modules, so a
# module-scoped pipeline runs once; the session-wide smoke runs go through `run_once`. The
# long modules go first: the SLURM tests mostly wait on the cluster while the other worker
# runs the smoke pipelines that most other modules read.
LONG_MODULES = ("test_slurm", "test_determinism", "test_scheduler_pipeline")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: k for k, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_config():
    return load_config(TEST_CONFIG)


@pytest.fixture(scope="session")
def digits():
    return prepare_dataset("digits", 0, 0.15, 0.15)


def make_task(task_id="digits-mlp", dataset="digits", family="mlp", budget=40, val_every=10, **protocol) -> TaskSpec:
    fields = {"optimizer": "adam", "batch_size": 32, "base_lr": 1e-3, "weight_decay": 0.0} | protocol
    return TaskSpec(task_id, dataset, ModelSpec(family, width=16), budget_steps=budget, val_every=val_every, **fields)


def snakemake_exe() -> str:
    beside_python = Path(sys.executable).with_name("snakemake")
    found = str(beside_python) if beside_python.exists() else shutil.which("snakemake")
    if found is None:
        pytest.fail("the snakemake executable is not installed beside this Python")
    return found


def snakemake_cmd(configfile: Path | None, *args: str) -> list[str]:
    """The real snakemake binary on this repository's Snakefile, from any working directory.

    ``configfile=None`` runs the embedded default.
    """
    config = ["--configfile", str(configfile)] if configfile is not None else []
    return [snakemake_exe(), "-s", str(REPO / "Snakefile"), *config, *args]


def run_smoke_pipeline(
    workdir: Path, *args: str, env: dict[str, str] | None = None, configfile: Path = TEST_CONFIG
) -> Path:
    """The real snakemake on ``configfile`` (default: the test config) in ``workdir``; returns its results folder."""
    cmd = snakemake_cmd(configfile, "--cores", "2", *args)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir / load_config(configfile).results


class SharedPipeline:
    """One pipeline run for the whole session, its failure reported once.

    The first test that needs a failed run fails with the pipeline's output; every later
    one is skipped with a pointer to it, instead of repeating the same error dozens of times.
    """

    def __init__(self, name: str, run):
        self.name, self._run = name, run
        self._result = self._error = None
        self._done = self._reported = False

    def get(self):
        if not self._done:
            self._done = True
            try:
                self._result = self._run()
            except (AssertionError, subprocess.TimeoutExpired) as err:
                self._error = f"the shared {self.name} pipeline failed:\n{err}"
        if self._error is None:
            return self._result
        if self._reported:
            pytest.skip(f"the shared {self.name} pipeline failed; its output is in the first failing test")
        self._reported = True
        pytest.fail(self._error, pytrace=False)


def run_once(tmp_path_factory: pytest.TempPathFactory, name: str, run: Callable[[Path], Path]) -> Path:
    """``run(workdir)`` once per test session, also when pytest-xdist splits the session over workers.

    The first worker to ask runs it under a file lock in the session's shared temporary
    folder; the others wait on the lock and read its result, or its failure.
    """
    base = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        base = base.parent  # the workers' folders share the session's
    workdir, done, failed = base / name, base / f"{name}.done", base / f"{name}.failed"
    with FileLock(base / f"{name}.lock"):
        if failed.exists():
            raise AssertionError(failed.read_text())
        if not done.exists():
            workdir.mkdir()
            try:
                done.write_text(str(run(workdir)))
            except (AssertionError, subprocess.TimeoutExpired) as err:
                failed.write_text(str(err))
                raise
        return Path(done.read_text())


@pytest.fixture(scope="session")
def _smoke(tmp_path_factory) -> SharedPipeline:
    return SharedPipeline(
        "smoke", lambda: run_once(tmp_path_factory, "smoke", lambda d: run_smoke_pipeline(d, "--resources", "gpu=1"))
    )


@pytest.fixture
def smoke_run(_smoke):
    """.test/config/config.yaml through the real Snakemake, as README says: one GPU slot.

    Run once per session and shared by every module that only reads its results.
    """
    return _smoke.get(), load_config(TEST_CONFIG)


@pytest.fixture(scope="session")
def _smoke_four_gpus(tmp_path_factory) -> SharedPipeline:
    def run(workdir: Path) -> Path:
        env = os.environ | {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "METALR_GPU_LOCK_DIR": str(workdir / "gpu-locks")}
        return run_smoke_pipeline(workdir, "--resources", "gpu=4", env=env)

    return SharedPipeline("four-GPU smoke", lambda: run_once(tmp_path_factory, "smoke-4gpu", run))


@pytest.fixture
def smoke_run_four_gpus(_smoke_four_gpus):
    """The same pipeline again, on a machine that claims four GPUs: --resources gpu=4 with
    CUDA_VISIBLE_DEVICES=0,1,2,3. Torch finds no CUDA device here, so it trains on CPU,
    but every GPU job still claims a slot from the allocator."""
    return _smoke_four_gpus.get()


def synthetic_eval(scores: dict[tuple[str, str, float], list[float]], budget: int = 10, val_every: int = 5):
    """Held-out runs and trajectories whose every validation value is ``score`` (one per seed).

    ``scores`` maps (task, scheduler, lr_multiplier) to one final metric per seed; the metric is
    accuracy (higher is better) unless the task name starts with "mae", and the validation
    curve rises linearly to the final value, so hand-computed targets and hits are easy.
    """
    import polars as pl

    from metalr.trajectories import runs_frame, trajectory_frame

    runs, rows = [], []
    for (task, scheduler, multiplier), values in scores.items():
        mae = task.startswith("mae")
        for seed, value in enumerate(values):
            run_id = f"eval-{task}-{scheduler}-x{multiplier}-s{seed}"
            runs.append(
                {
                    "run_id": run_id,
                    "phase": "eval",
                    "task": task,
                    "scheduler": scheduler,
                    "lr_multiplier": multiplier,
                    "base_lr": 1e-3 * multiplier,
                    "seed": seed,
                    "status": "ok",
                    "metric": "mae" if mae else "acc",
                    "higher_is_better": not mae,
                    "final_train_loss": 0.5,
                    "final_val_loss": 1.0 - value if not mae else value,
                    "final_val_metric": value,
                    "test_metric": value,
                    "trivial_test_metric": 10.0 if mae else 0.1,
                    "wall_time_s": 1.0,
                    "budget_steps": budget,
                }
            )
            for step in range(1, budget + 1):
                row = {
                    "run_id": run_id,
                    "step": step,
                    "epoch": step / 5,
                    "progress": step / budget,
                    "lr": 1e-3 * multiplier,
                    "loss_train": 1.0 / step,
                    "loss_ema": 1.0 / step,
                    "grad_norm": 1.0,
                    "res_step_time_s": 0.01,
                }
                if step % val_every == 0:
                    row["val_" + ("mae" if mae else "acc")] = value * step / budget if not mae else value
                    row["val_loss"] = row["val_" + ("mae" if mae else "acc")] if mae else 1.0 - value * step / budget
                rows.append(row)
    return runs_frame(runs), trajectory_frame(rows).with_columns(pl.col("step").cast(pl.Int32))
