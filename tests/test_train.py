import polars as pl
import pytest
from conftest import make_task

from metalr.train import RunSpec, train_run
from metalr.trajectories import REQUIRED_TRAJECTORY_COLUMNS, TIMING_COLUMNS


def _run(digits, scheduler="cosine", seed=0, **protocol):
    return train_run(RunSpec("collect", make_task(**protocol), scheduler, seed), digits)


def test_a_run_logs_one_row_per_step_up_to_the_budget(digits):
    result = _run(digits)
    traj, row = result.trajectory, result.summary.row(0, named=True)
    assert traj["step"].to_list() == list(range(1, 41))
    assert row["status"] == "ok" and row["steps_done"] == 40
    assert traj.select(REQUIRED_TRAJECTORY_COLUMNS).null_count().sum_horizontal()[0] == 0
    assert 0.0 <= row["test_metric"] <= 1.0


def test_validation_is_logged_every_val_every_steps(digits):
    traj = _run(digits).trajectory
    assert traj.filter(pl.col("val_loss").is_not_null())["step"].to_list() == [10, 20, 30, 40]
    assert traj["val_mae"].null_count() == traj.height


def test_the_seed_fixes_weights_and_data_order_whatever_the_scheduler(digits):
    cosine, constant, other_seed = (_run(digits, "cosine", 0), _run(digits, "constant", 0), _run(digits, "cosine", 1))
    # The first update uses the same LR for both schedulers, so the first two losses agree.
    assert cosine.trajectory["loss_train"][:2].to_list() == constant.trajectory["loss_train"][:2].to_list()
    assert cosine.trajectory["loss_train"][0] != other_seed.trajectory["loss_train"][0]


def test_same_spec_gives_identical_trajectories_except_timing(digits):
    a, b = _run(digits).trajectory.drop(TIMING_COLUMNS), _run(digits).trajectory.drop(TIMING_COLUMNS)
    assert a.equals(b)


def test_a_diverging_run_stops_and_keeps_its_partial_trajectory(digits):
    result = _run(digits, "constant", optimizer="sgd", base_lr=50.0)
    row = result.summary.row(0, named=True)
    assert row["status"] == "diverged"
    assert 0 < row["steps_done"] < 40
    assert result.trajectory.height == row["steps_done"]
    assert row["test_metric"] is None and row["trivial_test_metric"] == pytest.approx(0.1, abs=0.02)


def test_lr_column_is_the_lr_each_update_used(digits):
    traj = _run(digits, "step").trajectory
    assert traj["lr"][0] == pytest.approx(1e-3) and traj["lr"][-1] == pytest.approx(1e-5)
