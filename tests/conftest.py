from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metalr.config import ModelSpec, TaskSpec, load_config
from metalr.tasks import prepare_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_config():
    return load_config(REPO / "config" / "smoke.yaml")


@pytest.fixture(scope="session")
def digits():
    return prepare_dataset("digits", 0, 0.15, 0.15)


def make_task(task_id="digits-mlp", dataset="digits", family="mlp", budget=40, val_every=10, **protocol) -> TaskSpec:
    fields = {"optimizer": "adam", "batch_size": 32, "base_lr": 1e-3, "weight_decay": 0.0} | protocol
    return TaskSpec(task_id, dataset, ModelSpec(family, width=16), budget_steps=budget, val_every=val_every, **fields)
