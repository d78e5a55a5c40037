"""Property tests: whatever the features (NaN and inf included), the LR stays finite and in bounds."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from meta_fixtures import fitted_checkpoint

from metalr.meta.inputs import CORE_FEATURES, FEATURE_GROUPS, INPUT_FEATURES, OBSERVED_COLUMNS, cosine_factor
from metalr.meta.model import ARCHITECTURES
from metalr.schedulers import ADAPTIVE, MetaScheduler, build_scheduler

FEATURES = sorted(
    {
        name
        for adaptive in ADAPTIVE
        for name in build_scheduler(adaptive, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), 10).needs
    }
)
values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 1e-308]),
    st.integers(min_value=-(2**40), max_value=2**40),
)
streams = st.lists(st.dictionaries(st.sampled_from(FEATURES), values), min_size=1, max_size=40)
base_lrs = st.floats(min_value=1e-7, max_value=10.0)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(ADAPTIVE), stream=streams, base_lr=base_lrs)
def test_adaptive_lr_is_finite_and_within_bounds_for_any_feature_stream(name, stream, base_lr):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = build_scheduler(name, optimizer, 100, batch_size=32)
    non_finite = 0
    for features in stream:
        optimizer.step()
        scheduler.observe(features)
        scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert math.isfinite(lr) and scheduler.min_lr <= lr <= scheduler.max_lr
        non_finite += sum(
            1 for k, v in features.items() if k in scheduler.needs and v is not None and not math.isfinite(float(v))
        )
    assert scheduler.ignored_inputs == non_finite


gradients = st.lists(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(grads=gradients, base_lr=base_lrs)
def test_hypergradient_lr_is_finite_positive_and_within_bounds_for_any_gradients(grads, base_lr):
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = build_scheduler("hypergradient", optimizer, 100)
    for grad in grads:
        param.grad = torch.tensor(grad)
        optimizer.step()
        scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert math.isfinite(lr) and 0 < scheduler.min_lr <= lr <= scheduler.max_lr


def test_ignored_inputs_are_logged_and_counted(caplog):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_scheduler("uncertainty", optimizer, 100)
    with caplog.at_level(logging.DEBUG, logger="metalr.schedulers"):
        for value in (math.nan, math.inf, 0.9):
            optimizer.step()
            scheduler.observe({"unc_confidence": value})
            scheduler.step()
    assert scheduler.ignored_inputs == 2
    assert "ignored non-finite unc_confidence=nan" in caplog.text
    assert optimizer.param_groups[0]["lr"] == 1e-3 * 1.1  # the finite value still counted


# Magnitudes that overflow a ratio or a square (1e300 / 1e-12, (1e300)**2) and the non-finite ones.
EXTREMES = [1e300, -1e300, 1e-300, -1e-300, 1e-12, 1e12, 1e308, math.nan, math.inf, -math.inf, 0.0]
extreme_streams = st.lists(
    st.dictionaries(st.sampled_from(FEATURES), st.sampled_from(EXTREMES)), min_size=1, max_size=30
)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(ADAPTIVE), warmup=st.integers(0, 3), stream=extreme_streams, base_lr=base_lrs)
def test_adaptive_schedulers_never_raise_on_extreme_features_before_and_after_a_change(name, warmup, stream, base_lr):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = build_scheduler(name, optimizer, 100, batch_size=32)
    # Ordinary features first, so the extremes also arrive after the scheduler's first decisions.
    ordinary = {feature: 0.5 for feature in FEATURES}
    for features in [ordinary] * warmup + stream:
        optimizer.step()
        scheduler.observe(features)
        scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert math.isfinite(lr) and scheduler.min_lr <= lr <= scheduler.max_lr


@pytest.mark.parametrize("sequence", [(1e300,) + (1e-12,) * 8, (1e-300,) + (1e300,) * 8, (1e308, 1e-308) * 4])
def test_curvature_scheduler_survives_lambda_max_jumping_across_600_orders_of_magnitude(sequence):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_scheduler("curvature", optimizer, 100)
    for value in sequence:
        optimizer.step()
        scheduler.observe({"curv_lambda_max": value, "grad_cos_prev": 0.5})
        scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert math.isfinite(lr) and scheduler.min_lr <= lr <= scheduler.max_lr
    assert scheduler.ignored_inputs == 0  # every value was finite, so every one was used


# The MetaScheduler: every column its inputs read (and the ``loss`` keyword), at any magnitude.
META_COLUMNS = (*OBSERVED_COLUMNS, "loss")
extremes = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 1e-300, -1e-300, 1e308, -1e308, 0.0]),
)


@pytest.fixture(scope="module")
def meta_checkpoints(tmp_path_factory) -> dict[str, Path]:
    # Random weights so proposals move; a decision every 2 of the 20 steps, so streams of up to
    # 30 observations cover the steps before the first decision and many after it.
    root = tmp_path_factory.mktemp("meta")
    return {
        arch: fitted_checkpoint(root / arch, random_weights=True, arch=arch, decision_fraction=0.1)
        for arch in sorted(ARCHITECTURES)
    }


def _assert_meta_lr_in_bounds(scheduler: MetaScheduler, base_lr: float) -> None:
    lr = scheduler.optimizer.param_groups[0]["lr"]
    cosine = base_lr * cosine_factor(scheduler.last_epoch + 1, scheduler.budget)
    assert math.isfinite(lr) and math.isfinite(scheduler.log_mult)
    assert cosine / 10 * (1 - 1e-9) <= lr <= cosine * 10 * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(
    arch=st.sampled_from(sorted(ARCHITECTURES)),
    stream=st.lists(st.dictionaries(st.sampled_from(META_COLUMNS), extremes), min_size=1, max_size=30),
    base_lr=base_lrs,
    as_keywords=st.booleans(),
)
def test_meta_scheduler_never_raises_on_extreme_features(meta_checkpoints, arch, stream, base_lr, as_keywords):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = MetaScheduler.from_pretrained(meta_checkpoints[arch], optimizer, 20)
    for features in stream:
        optimizer.step()
        if as_keywords:
            scheduler.observe(**features)
        else:
            scheduler.observe(features)
        scheduler.step()
        _assert_meta_lr_in_bounds(scheduler, base_lr)
    assert 0.0 <= scheduler.fallback_rate <= 1.0


def test_meta_scheduler_survives_grad_norm_1e308_observed_twice(meta_checkpoints):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = MetaScheduler.from_pretrained(meta_checkpoints["lstm"], optimizer, 20)
    for step in range(1, 21):
        optimizer.step()
        scheduler.observe({"step": step, "loss_ema": 1.0, "grad_norm": 1e308 if step <= 2 else 1.0})
        scheduler.step()
        _assert_meta_lr_in_bounds(scheduler, 1e-3)
    assert scheduler.decisions == 10


def test_meta_scheduler_reads_a_nan_proposal_as_cosine(meta_checkpoints):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = MetaScheduler.from_pretrained(meta_checkpoints["gru"], optimizer, 20)
    with torch.no_grad():
        scheduler.learner.head.bias.fill_(math.nan)
    for step in range(1, 21):
        optimizer.step()
        scheduler.observe(loss=1.0 / step)
        scheduler.step()
        assert scheduler.log_mult == 0.0
        _assert_meta_lr_in_bounds(scheduler, 1e-3)
    assert scheduler.fallback_rate == 1.0


def test_a_loss_only_deployment_reads_only_the_loss_and_never_falls_back_for_what_it_lacks(meta_checkpoints):
    def run(groups, extra):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        scheduler = MetaScheduler.from_pretrained(meta_checkpoints["lstm"], optimizer, 40, groups=groups)
        lrs, reasons = [], []
        for step in range(1, 41):
            optimizer.step()
            scheduler.observe(loss=1.0 / step, **extra)
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
            reasons.append(scheduler.change_reason or "")
        return scheduler, lrs, reasons

    deployed, lrs, reasons = run(("loss",), {"grad_norm": 1e300, "val_loss": 1e300, "unc_confidence": 1e300})
    assert set(deployed.needs) == {"step", "lr", "loss_ema"}
    assert not {"grad_norm", "val_loss", "unc_confidence"} & set(deployed.inputs.first)
    plain, plain_lrs, _ = run(None, {})  # the same model given the loss alone
    assert lrs == plain_lrs and deployed.fallback_rate == plain.fallback_rate
    absent = [f for f in INPUT_FEATURES if f not in (*CORE_FEATURES, *FEATURE_GROUPS["loss"], "has_loss")]
    assert deployed.decisions > 0 and not any(f"input {name} " in r for r in reasons for name in absent)


def test_a_misspelt_input_group_is_refused_naming_the_known_ones(meta_checkpoints):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match=r"unknown input group\(s\) \['valdation'\].*known: loss, gradients"):
        MetaScheduler.from_pretrained(meta_checkpoints["lstm"], optimizer, 40, groups=("loss", "valdation"))
