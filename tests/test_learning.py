"""Short real training runs on ../shared/data reach asserted quality (each well under 60 s on 1 CPU thread).

The tasks are the ones declared in config/shared-data.yaml, with a test-sized budget and a
single evaluation at the end; the thresholds are the issue's, far above the trivial scores.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from metalr.config import ProbeConfig, load_config
from metalr.tasks import prepare_dataset
from metalr.train import RunSpec, train_run

SHARED = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


def _run(task_id: str, budget: int, monkeypatch, **protocol) -> dict:
    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root
    config = load_config(REPO / "config" / "shared-data.yaml")
    # Probes off: these tests measure learning, and the probes never change training.
    task = dataclasses.replace(
        config.tasks[task_id], budget_steps=budget, val_every=budget, probes=ProbeConfig(enabled=False), **protocol
    )
    data = prepare_dataset(config.dataset(task.dataset), config.split_seed, config.val_fraction, config.test_fraction)
    row = train_run(RunSpec("collect", task, "cosine", 0), data).summary.row(0, named=True)
    assert row["status"] == "ok", row["error"]
    return row


def test_sst2_bilstm_beats_the_majority_class_by_far(monkeypatch):
    row = _run("sst2-bilstm", 1000, monkeypatch)
    assert row["trivial_test_metric"] == pytest.approx(0.56, abs=0.02)
    assert row["test_acc"] >= 0.70


def test_imdb_bilstm_accuracy(monkeypatch):
    row = _run("imdb-bilstm", 500, monkeypatch)
    assert row["test_acc"] >= 0.65


def test_adult_mlp_auc(monkeypatch):
    row = _run("adult-mlp", 400, monkeypatch)
    assert row["metric"] == "auc" and row["trivial_test_metric"] == pytest.approx(0.5)
    assert row["test_auc"] >= 0.85


def test_cifar10_subset_cnn_accuracy(monkeypatch):
    row = _run("cifar10-cnn", 700, monkeypatch)
    assert row["test_acc"] >= 0.30 and row["test_top5"] > row["test_acc"]


def _seasonal_naive_smape(season: int = 24, horizon: int = 48) -> float:
    """sMAPE (%) of repeating each series' last ``season`` values, on the M4 test horizon."""
    train = pd.read_csv(SHARED / "m4" / "Hourly-train.csv").drop(columns="V1").to_numpy(float)
    test = pd.read_csv(SHARED / "m4" / "Hourly-test.csv").drop(columns="V1").to_numpy(float)
    scores = []
    for history, future in zip(train, test, strict=True):
        history, actual = history[~np.isnan(history)], future[~np.isnan(future)][:horizon]
        forecast = np.resize(history[-season:], horizon)
        scores.append(np.mean(2 * np.abs(forecast - actual) / (np.abs(forecast) + np.abs(actual))))
    return 100 * float(np.mean(scores))


def test_m4_hourly_forecast_beats_seasonal_naive_on_the_same_series(monkeypatch):
    row = _run("m4-hourly-mlp", 3000, monkeypatch)
    # The test split is exactly M4's 48-step test horizon of all 414 series.
    assert row["metric"] == "smape"
    assert row["test_smape"] < _seasonal_naive_smape()
