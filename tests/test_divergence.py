"""Divergence means divergence: a real outlier in the data is no explosion, a x1000 LR is."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import make_task

from metalr.config import DatasetSpec
from metalr.divergence import NONFINITE_LOSS, TRAIN_LOSS, VAL_LOSS, DivergenceMonitor
from metalr.schedulers import META, SCHEDULER_NAMES
from metalr.tasks import prepare_dataset
from metalr.train import RunSpec, train_run

LEVEL = 100.0


@pytest.fixture(scope="module")
def weekly_with_one_outlier(tmp_path_factory):
    """Six weekly series around a level of 100; one training-part value of the first is 50x the level."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("weekly") / "weekly.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["series", "value"])
        for series in range(6):
            weeks = np.arange(160)
            values = LEVEL * (1 + 0.1 * np.sin(2 * np.pi * weeks / 52)) + rng.normal(0, 2, len(weeks)).cumsum() * 0.3
            if series == 0:
                values[40] = 50 * LEVEL  # a data error or a real event: one window's target
            writer.writerows([series, v] for v in values)
    # Errors relative to each window's level, as sMAPE counts them (and as M4 configs scale).
    columns = {"id": "series", "value": "value"}
    spec = DatasetSpec("weekly", "csv", "timeseries", path=str(path), columns=columns, scale="level")
    return prepare_dataset(spec, 0, 0.15, 0.15)


def _forecast_task():
    return make_task("weekly-mlp", "weekly", budget=150, val_every=15, batch_size=16)


def test_the_outlier_window_makes_batch_losses_far_above_the_first(weekly_with_one_outlier):
    # The premise: the old rule (one batch loss above 10x the first) marked this run diverged.
    rows = train_run(RunSpec("eval", _forecast_task(), "cosine", 0), weekly_with_one_outlier).rows
    losses = [row["loss_train"] for row in rows]
    assert max(losses) > 10 * losses[0]


@pytest.mark.parametrize("scheduler", [s for s in SCHEDULER_NAMES if s != META])
def test_every_scheduler_finishes_on_a_series_with_one_outlier_window(weekly_with_one_outlier, scheduler):
    result = train_run(RunSpec("eval", _forecast_task(), scheduler, 0), weekly_with_one_outlier)
    assert result.row["status"] == "ok", (result.row["diverged_reason"], result.row["steps_done"])
    assert result.row["diverged_reason"] is None
    assert result.row["steps_done"] == _forecast_task().budget_steps


def test_a_thousandfold_learning_rate_still_diverges_on_that_series(weekly_with_one_outlier):
    result = train_run(RunSpec("eval", _forecast_task(), "constant", 0, lr_multiplier=1000.0), weekly_with_one_outlier)
    assert result.row["status"] == "diverged"
    assert result.row["diverged_reason"] in (NONFINITE_LOSS, TRAIN_LOSS, VAL_LOSS)
    assert result.row["steps_done"] < _forecast_task().budget_steps
    assert result.summary["diverged_reason"][0] == result.row["diverged_reason"]  # a runs.parquet column


def test_one_spike_never_counts_two_in_a_row_and_a_rising_loss_do():
    monitor = DivergenceMonitor(factor=10, beta=0.9)
    assert [monitor.train_loss(x) for x in (1.0, 1e9, 1.0, 1.0, 1e12, 1.0)] == [None] * 6
    monitor = DivergenceMonitor(factor=10, beta=0.9)
    reasons = [monitor.train_loss(1.0 * 1.5**k) for k in range(40)]
    assert TRAIN_LOSS in reasons and reasons.index(TRAIN_LOSS) > 5
    assert DivergenceMonitor(10, 0.9).train_loss(float("nan")) == NONFINITE_LOSS


def test_validation_loss_above_the_factor_times_its_first_value_diverges():
    monitor = DivergenceMonitor(factor=10, beta=0.9)
    assert monitor.val_loss(2.0) is None and monitor.val_loss(19.0) is None
    assert monitor.val_loss(21.0) == VAL_LOSS
