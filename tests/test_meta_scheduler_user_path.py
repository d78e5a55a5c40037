"""The MetaScheduler in a user's own loop: measured inputs, warnings that name things, fallback on values."""

from __future__ import annotations

import logging
from dataclasses import asdict

import pytest
import torch
from meta_fixtures import TEST_META

from metalr.features.tracker import FeatureTracker
from metalr.meta.checkpoint import save_checkpoint
from metalr.meta.inputs import INPUT_FEATURES
from metalr.meta.model import ARCHITECTURES
from metalr.schedulers import MetaScheduler


def _optimizer(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _checkpoint(path, far: dict[str, float]):
    """An untrained checkpoint whose meta-training mean of each input in ``far`` is that value (std 1)."""
    model = ARCHITECTURES["lstm"](len(INPUT_FEATURES), 8, 1)
    for name, mean in far.items():
        model.input_mean[INPUT_FEATURES.index(name)] = mean
    save_checkpoint(model, {**asdict(TEST_META), "features": list(INPUT_FEATURES)}, path)
    return path


def test_unknown_observe_keys_warn_once_naming_them(tmp_path, caplog):
    scheduler = MetaScheduler.from_pretrained(_checkpoint(tmp_path, {}), _optimizer(), 50)
    with caplog.at_level(logging.WARNING, logger="metalr.schedulers.meta"):
        for _ in range(3):
            scheduler.optimizer.step()
            scheduler.observe({"grad_nrom": 1.0}, loss=0.5, val_los=2.0)
            scheduler.step()
    warnings = [r.getMessage() for r in caplog.records if "unknown" in r.getMessage()]
    assert len(warnings) == 1 and "grad_nrom" in warnings[0] and "val_los" in warnings[0]
    assert scheduler.warned_keys == ["grad_nrom", "val_los"]


def test_inputs_never_supplied_do_not_trigger_fallback_but_far_values_do_with_one_named_warning(tmp_path, caplog):
    # Not-yet-seen unc_confidence reads 0, 100 sd from this checkpoint's mean.
    path = _checkpoint(tmp_path, {"unc_confidence": 100.0})
    scheduler = MetaScheduler.from_pretrained(path, _optimizer(), 50)
    with caplog.at_level(logging.WARNING, logger="metalr.schedulers.meta"):
        for step in range(1, 26):
            scheduler.optimizer.step()
            scheduler.observe(loss=1.0 / step)
            scheduler.step()
        assert scheduler.decisions == 5 and scheduler.fallback_rate == 0.0
        for _ in range(25):
            scheduler.optimizer.step()
            scheduler.observe(loss=0.1, unc_confidence=0.9)  # now supplied, and far from the mean
            scheduler.step()
    assert scheduler.decisions == 10 and scheduler.fallback_rate == pytest.approx(0.5)
    warnings = [r for r in caplog.records if "fallback" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "unc_confidence" in warnings[0].getMessage() and "99.1 sd" in warnings[0].getMessage()


def test_the_tracker_measures_what_the_pipeline_probes_record():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = FeatureTracker(model, optimizer)
    grads, measured = [], []
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        optimizer.step()
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        grads.append((grad.clone(), (after - before).norm() / before.norm()))
        measured.append(tracker.pop())
    for (grad, ratio), row in zip(grads, measured, strict=True):
        assert row["grad_norm"] == pytest.approx(float(grad.norm()), rel=1e-6)
        assert row["upd_ratio"] == pytest.approx(float(ratio), rel=1e-5)
    cosine = torch.nn.functional.cosine_similarity(grads[2][0], grads[1][0], dim=0)
    assert "grad_cos_prev" not in measured[0]
    assert measured[2]["grad_cos_prev"] == pytest.approx(float(cosine), rel=1e-5)
    tracker.close()
    optimizer.step()
    assert tracker.pop() == {}  # hooks removed
