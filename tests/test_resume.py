"""Checkpoint and resume of one training run, in process (the SIGKILL test is in test_kill_resume.py)."""

import shutil
from dataclasses import replace

import polars as pl
import pytest
import torch
from conftest import make_task

from metalr.config import ModelSpec, ProbeConfig
from metalr.meta.checkpoint import CheckpointError, save_checkpoint
from metalr.meta.inputs import INPUT_FEATURES
from metalr.meta.model import LSTMMetaLearner
from metalr.resume import RunCheckpoints
from metalr.train import RunSpec, train_run
from metalr.trajectories import TIMING_COLUMNS

BUDGET, EVERY, CRASH_AT = 60, 10, 30


class Crash(Exception):
    pass


class CrashingCheckpoints(RunCheckpoints):
    """Dies right after writing the checkpoint at CRASH_AT, as a killed job would."""

    def save(self, spec, model, optimizer, scheduler, ema, loop) -> None:
        super().save(spec, model, optimizer, scheduler, ema, loop)
        if loop.step >= CRASH_AT:
            raise Crash


@pytest.fixture(scope="module")
def meta_checkpoint(tmp_path_factory):
    """A meta-learner whose head is not zero, so its LSTM state really drives the LR."""
    torch.manual_seed(0)
    model = LSTMMetaLearner(len(INPUT_FEATURES), hidden=8)
    torch.nn.init.normal_(model.head.weight, std=3.0)
    directory = tmp_path_factory.mktemp("meta")
    config = {"arch": "lstm", "hidden": 8, "layers": 1, "features": list(INPUT_FEATURES), "decision_fraction": 0.1}
    save_checkpoint(model, config, directory)
    return str(directory)


def _spec(scheduler, meta_checkpoint=None, **protocol):
    task = make_task(budget=BUDGET, **protocol)
    return RunSpec("collect", task, scheduler, seed=3, meta_checkpoint=meta_checkpoint)


def _drop_timing(result):
    return result.trajectory.drop(TIMING_COLUMNS), result.summary.drop("wall_time_s")


@pytest.mark.parametrize("scheduler", ["constant", "step", "exponential", "cosine", "plateau", "meta"])
def test_a_run_resumed_from_its_checkpoint_equals_an_uninterrupted_run(digits, tmp_path, scheduler, meta_checkpoint):
    spec = _spec(scheduler, meta_checkpoint if scheduler == "meta" else None)
    uninterrupted = train_run(spec, digits)
    with pytest.raises(Crash):
        train_run(spec, digits, CrashingCheckpoints(tmp_path, EVERY))
    resumed = train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))
    assert resumed.resumed_from == CRASH_AT
    traj, summary = _drop_timing(resumed)
    want_traj, want_summary = _drop_timing(uninterrupted)
    assert traj.equals(want_traj)
    assert summary.equals(want_summary)
    if scheduler == "meta":
        assert uninterrupted.trajectory["lr"].n_unique() > 10  # the learner did steer the LR


def test_dropout_and_adamw_resume_exactly_because_rng_and_optimizer_state_are_restored(digits, tmp_path):
    task = replace(
        make_task(budget=BUDGET, optimizer="adamw", weight_decay=0.01), model=ModelSpec("mlp", 16, dropout=0.5)
    )
    spec = RunSpec("collect", task, "cosine", seed=1)
    uninterrupted = train_run(spec, digits)
    with pytest.raises(Crash):
        train_run(spec, digits, CrashingCheckpoints(tmp_path, EVERY))
    torch.manual_seed(12345)  # a different global RNG state must not matter: the checkpoint carries its own
    resumed = train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))
    assert resumed.trajectory.drop(TIMING_COLUMNS).equals(uninterrupted.trajectory.drop(TIMING_COLUMNS))


def test_probes_that_carry_state_across_steps_resume_exactly(digits, tmp_path):
    # Every probe due at every step, so the gradient-geometry probe holds the previous
    # gradient and update across the checkpoint, and curvature its power-iteration vector.
    every_step = ProbeConfig(geometry_every=1, optimizer_every=1, curvature_every=1, noise_every=1)
    spec = RunSpec("collect", replace(make_task(budget=BUDGET), probes=every_step), "cosine", seed=2)
    uninterrupted = train_run(spec, digits)
    with pytest.raises(Crash):
        train_run(spec, digits, CrashingCheckpoints(tmp_path, EVERY))
    resumed = train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))
    want = uninterrupted.trajectory.drop(TIMING_COLUMNS)
    assert want.filter(pl.col("step") == CRASH_AT + 1)["grad_cos_prev"].is_not_null().all()
    assert resumed.trajectory.drop(TIMING_COLUMNS).equals(want)


def test_a_checkpoint_holds_model_optimizer_scheduler_probes_rng_and_rows_and_loads_weights_only(digits, tmp_path):
    spec = _spec("plateau")
    with pytest.raises(Crash):
        train_run(spec, digits, CrashingCheckpoints(tmp_path, EVERY))
    payload = torch.load(tmp_path / f"{spec.run_id}.ckpt", weights_only=True)
    assert payload["step"] == CRASH_AT and payload["run_id"] == spec.run_id
    assert {"model", "optimizer", "scheduler", "probes", "rng", "rows"} <= set(payload)
    assert any(state for state in payload["probes"])  # the loss EMA at least
    assert {"torch", "cuda", "numpy", "python"} == set(payload["rng"])
    assert payload["optimizer"]["state"]  # Adam moments


def test_a_finished_run_is_recorded_and_its_checkpoint_removed(digits, tmp_path):
    spec = _spec("cosine")
    store = RunCheckpoints(tmp_path, EVERY)
    result = train_run(spec, digits, store)
    store.save_result(spec, result)
    assert not (tmp_path / f"{spec.run_id}.ckpt").exists()
    summary, trajectory, _ = store.load_result(spec)
    assert summary.equals(result.summary) and trajectory.equals(result.trajectory)


class CountingCheckpoints(RunCheckpoints):
    def save(self, *args) -> None:
        super().save(*args)
        self.saved = getattr(self, "saved", 0) + 1


def test_checkpoints_wait_for_the_minimum_interval_so_short_runs_pay_nothing(digits, tmp_path):
    eager, patient = CountingCheckpoints(tmp_path / "a", EVERY, 0), CountingCheckpoints(tmp_path / "b", EVERY, 3600)
    train_run(_spec("cosine"), digits, eager)
    train_run(_spec("cosine"), digits, patient)
    assert eager.saved == BUDGET // EVERY - 1 and getattr(patient, "saved", 0) == 0


def test_checkpoint_every_zero_writes_nothing(digits, tmp_path):
    train_run(_spec("cosine"), digits, RunCheckpoints(tmp_path / "none", 0))
    assert not (tmp_path / "none").exists()


def _crashed(digits, tmp_path, scheduler="cosine"):
    spec = _spec(scheduler)
    with pytest.raises(Crash):
        train_run(spec, digits, CrashingCheckpoints(tmp_path, EVERY))
    return spec, tmp_path / f"{spec.run_id}.ckpt"


def test_a_truncated_checkpoint_is_refused_naming_the_file(digits, tmp_path):
    spec, path = _crashed(digits, tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"cannot read run checkpoint .*{spec.run_id}.ckpt.*delete it"):
        train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))


def test_another_runs_checkpoint_is_refused(digits, tmp_path):
    spec, path = _crashed(digits, tmp_path)
    other = _spec("step")
    shutil.copy(path, tmp_path / f"{other.run_id}.ckpt")
    with pytest.raises(CheckpointError, match=f"belongs to run '{spec.run_id}', not '{other.run_id}'"):
        train_run(other, digits, RunCheckpoints(tmp_path, EVERY))


def test_a_foreign_file_and_a_pickle_with_code_are_refused(digits, tmp_path, meta_checkpoint):
    spec = _spec("cosine")
    path = tmp_path / f"{spec.run_id}.ckpt"
    shutil.copy(f"{meta_checkpoint}/model.safetensors", path)
    with pytest.raises(CheckpointError, match="cannot read run checkpoint"):
        train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))
    torch.save({"format": "metalr-run-checkpoint", "evil": Crash}, path)  # a class: refused by weights_only
    with pytest.raises(CheckpointError, match="cannot read run checkpoint"):
        train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not a metalr run checkpoint"):
        train_run(spec, digits, RunCheckpoints(tmp_path, EVERY))


def _unusable_checkpoint(directory):
    """A well-formed checkpoint whose learner reads an input this metalr does not compute."""
    model = LSTMMetaLearner(2, hidden=4)
    save_checkpoint(
        model, {"arch": "lstm", "hidden": 4, "layers": 1, "features": ["progress", "tea_leaves"]}, directory
    )
    (directory / "config.json").write_text(
        (directory / "config.json").read_text().replace("{", '{"decision_fraction": 0.1, ', 1)
    )
    return directory


def test_a_run_that_raises_is_a_failed_row_and_the_job_goes_on(tmp_path, smoke_config, digits):
    from metalr.pipeline import train_runs

    data = tmp_path / "digits.npz"
    digits.save(data)
    resume = tmp_path / "resume"
    # A meta-scheduler that asks for an input metalr does not compute: its runs raise, the classic ones train.
    checkpoints = {"meta": str(_unusable_checkpoint(tmp_path / "meta"))}
    train_runs(
        smoke_config, "eval", "digits-mlp", data, tmp_path / "t.parquet", tmp_path / "r.parquet", 1, checkpoints, resume
    )
    runs = pl.read_parquet(tmp_path / "r.parquet")
    failed = runs.filter(pl.col("status") == "failed")
    n_grid = len(smoke_config.evaluate.lr_multipliers)
    assert set(failed["scheduler"]) == {"meta"} and failed.height == smoke_config.evaluate.seeds * n_grid
    assert failed["error"].str.contains("unknown meta-learner inputs").all()
    assert runs.filter(pl.col("status") == "ok").height == runs.height - failed.height
    assert not resume.exists()  # outputs written, resume directory cleared


def test_a_failed_run_is_not_recorded_as_finished_so_a_rerun_tries_it_again(tmp_path, smoke_config, digits):
    from metalr.pipeline import _execute, phase_run_specs

    data = tmp_path / "digits.npz"
    digits.save(data)
    checkpoints = {"meta": str(_unusable_checkpoint(tmp_path / "meta"))}
    meta = next(s for s in phase_run_specs(smoke_config, "eval", "digits-mlp", checkpoints) if s.scheduler == "meta")
    result = _execute(meta, str(data), str(tmp_path), EVERY)
    assert result.summary["status"][0] == "failed"
    assert not list(tmp_path.glob("*.done"))
