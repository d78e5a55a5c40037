"""Every scheduler through the real Snakemake pipeline (tests/configs/all-schedulers.yaml)."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from conftest import REPO, SharedPipeline, run_smoke_pipeline
from torch import nn, optim
from torch.optim import lr_scheduler as torch_lr

from metalr.config import load_config
from metalr.schedulers import ADAPTIVE, REGISTRY, build_scheduler
from metalr.trajectories import scan_trajectories

CONFIG = REPO / "tests" / "configs" / "all-schedulers.yaml"
CLASSIC_NAMES = [name for name, entry in REGISTRY.items() if entry.kind == "classic"]
LEARNING_RATE_FREE = ("prodigy", "dadapt-adam", "mechanic")


@pytest.fixture(scope="module")
def _all_schedulers(tmp_path_factory) -> SharedPipeline:
    def run():
        workdir = tmp_path_factory.mktemp("all-schedulers")
        results = run_smoke_pipeline(workdir, "--resources", "gpu=1", configfile=CONFIG)
        runs = pl.read_parquet(results / "runs.parquet")
        trajectories = scan_trajectories(results).collect()
        return runs, trajectories.join(runs.select("run_id", "scheduler", "budget_steps", "base_lr"), on="run_id")

    return SharedPipeline("all-schedulers", run)


@pytest.fixture
def pipeline(_all_schedulers):
    return _all_schedulers.get()


def test_the_config_selects_every_registered_scheduler():
    config = load_config(CONFIG)
    every = {name for name, entry in REGISTRY.items() if entry.kind != "meta"}
    assert set(config.collect.schedulers) == every
    assert set(config.evaluate.schedulers) == every


def test_the_pipeline_runs_every_scheduler_it_is_given_by_name(pipeline):
    runs, _ = pipeline
    for phase in ("collect", "metaval", "eval"):
        done = runs.filter(pl.col("phase") == phase)
        assert set(done["scheduler"]) >= set(load_config(CONFIG).collect.schedulers), phase
    assert "failed" not in runs["status"].to_list()
    # Only a learning-rate-free peer may stop on the divergence rule: D-Adaptation Adam at lr = 1
    # overshoots on breast cancer's 60 steps (its estimate d outgrows the stable step), a result.
    assert set(runs.filter(pl.col("status") == "diverged")["scheduler"]) <= set(LEARNING_RATE_FREE)


def _reference(name: str, base_lr: float, budget: int, val_losses: list[float | None]) -> list[float]:
    """torch's own classes with the documented settings (README), stepped once per update."""
    opt = optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    if name == "constant":
        sched = torch_lr.LambdaLR(opt, lambda _: 1.0)
    elif name == "step":
        sched = torch_lr.StepLR(opt, step_size=math.ceil(budget / 3), gamma=0.1)
    elif name == "exponential":
        sched = torch_lr.ExponentialLR(opt, gamma=0.01 ** (1 / budget))
    elif name == "cosine":
        sched = torch_lr.CosineAnnealingLR(opt, T_max=budget)
    elif name == "plateau":
        sched = torch_lr.ReduceLROnPlateau(opt, factor=0.1, threshold=0.01, patience=2)
    elif name == "linear":
        sched = torch_lr.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=budget)
    elif name == "wsd":
        warm, cool = round(0.05 * budget), round(0.2 * budget)

        def wsd(k: int) -> float:
            if k < warm:
                return (k + 1) / warm
            return 1.0 if k < budget - cool else 1 - ((k - (budget - cool)) / cool) ** 0.5

        sched = torch_lr.LambdaLR(opt, wsd)
    elif name == "warmup-cosine":
        warm = round(0.05 * budget)
        parts = [torch_lr.LinearLR(opt, 0.1, 1.0, warm), torch_lr.CosineAnnealingLR(opt, T_max=budget - warm)]
        sched = torch_lr.SequentialLR(opt, parts, milestones=[warm])
    else:
        sched = torch_lr.OneCycleLR(opt, max_lr=base_lr, total_steps=budget + 1)
    lrs = []
    for val_loss in val_losses:
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if name != "plateau":
            sched.step()
        elif val_loss is not None:
            sched.step(val_loss)
    return lrs


@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_the_lr_column_equals_torchs_reference_sequence(pipeline, name):
    _, trajectories = pipeline
    runs = trajectories.filter((pl.col("scheduler") == name) & (pl.col("phase") == "collect"))
    assert runs.height
    for _, run in runs.sort("step").group_by("run_id"):
        budget, base_lr = run["budget_steps"][0], run["base_lr"][0]
        assert run.height == budget
        expected = _reference(name, base_lr, budget, run["val_loss"].to_list())
        assert run["lr"].to_list() == pytest.approx(expected, rel=1e-12, abs=0)
    # The comparison saw the schedule move; plateau's cut depends on the run's validation losses
    # (torch's class gets the same ones above), and tests/test_schedulers.py makes it cut.
    if name not in ("constant", "plateau"):
        assert runs["lr"].n_unique() > 1


@pytest.mark.parametrize("name", ADAPTIVE)
def test_each_adaptive_scheduler_changes_the_lr_from_real_features_with_a_reason(pipeline, name):
    _, trajectories = pipeline
    needs = build_scheduler(name, optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3), 10).needs
    runs = trajectories.filter((pl.col("scheduler") == name) & (pl.col("phase") == "collect")).sort("step")
    changes = runs.filter(pl.col("lr_change_reason").is_not_null())
    assert changes.height >= 1, f"{name} never changed the LR"
    by_step = {row["step"]: row for row in runs.iter_rows(named=True)}
    for change in changes.iter_rows(named=True):
        assert change["lr_change_reason"].startswith(name)
        assert change["lr_change"] == pytest.approx(change["lr"] / by_step[change["step"] - 1]["lr"])
        observed = by_step[change["step"] - 1]  # the step whose features the scheduler observed
        assert any(observed[feature] is not None for feature in needs), (name, change["step"])


@pytest.mark.parametrize("name", LEARNING_RATE_FREE)
def test_a_learning_rate_free_peer_trains_with_its_own_optimizer_under_cosine_on_its_lr_convention(pipeline, name):
    """Prodigy at lr 1 (the grid scales d_coef), D-Adaptation at lr = the grid's multiplier,
    Mechanic at the task's base LR: each under CosineAnnealingLR over the budget."""
    runs, trajectories = pipeline
    collected = trajectories.filter((pl.col("scheduler") == name) & (pl.col("phase") == "collect"))
    collected = collected.join(runs.select("run_id", "lr_multiplier"), on="run_id")
    assert collected.height
    for _, run in collected.sort("step").group_by("run_id"):
        peak = {"prodigy": 1.0, "dadapt-adam": run["lr_multiplier"][0], "mechanic": run["base_lr"][0]}[name]
        budget = run["budget_steps"][0]
        expected = [peak * (1 + math.cos(math.pi * k / budget)) / 2 for k in range(run.height)]
        assert run["lr"].to_list() == pytest.approx(expected, rel=1e-9)
