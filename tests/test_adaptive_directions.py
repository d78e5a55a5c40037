"""Each adaptive scheduler moves in its documented direction on synthetic feature streams."""

from __future__ import annotations

import pytest
import torch

from metalr.schedulers import CurvatureAdaptive, MetricAdaptive, ResourceAdaptive, UncertaintyAdaptive


def _optimizer(lr=1e-3):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _run(scheduler, stream):
    """Feed the stream one step at a time; the LR after each step."""
    lrs = []
    for features in stream:
        scheduler.optimizer.step()
        scheduler.observe(features)
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_curvature_lowers_the_lr_as_the_landscape_sharpens_and_raises_it_as_it_flattens():
    rising = _run(CurvatureAdaptive(_optimizer()), [{"curv_lambda_max": 1.0 + t} for t in range(10)])
    falling = _run(CurvatureAdaptive(_optimizer()), [{"curv_lambda_max": 10.0 - t} for t in range(10)])
    assert rising[-1] < rising[0] and all(b <= a for a, b in zip(rising, rising[1:], strict=False))
    assert falling[-1] > falling[0]


def test_curvature_raises_the_lr_when_successive_gradients_agree_and_lowers_it_when_they_flip():
    stream = [{"curv_lambda_max": 2.0}] * 5
    agree = _run(CurvatureAdaptive(_optimizer()), [f | {"grad_cos_prev": 0.8} for f in stream])
    flip = _run(CurvatureAdaptive(_optimizer()), [f | {"grad_cos_prev": -0.8} for f in stream])
    assert agree[-1] > 1e-3 > flip[-1]


def test_curvature_never_exceeds_c_times_the_stability_bound():
    scheduler = CurvatureAdaptive(_optimizer(lr=0.5), c=0.5, max_lr=10.0)
    lrs = _run(scheduler, [{"curv_lambda_max": 4.0, "grad_cos_prev": 1.0}] * 5)
    assert lrs[-1] == pytest.approx(0.5 * 2 / 4.0)


def test_metric_cuts_tenfold_when_validation_stops_improving_and_never_raises():
    scheduler = MetricAdaptive(_optimizer())
    improving = [{"val_loss": 1.0 - 0.1 * t, "val_acc": 0.1 * t} for t in range(5)]
    assert _run(scheduler, improving) == [1e-3] * 5
    stalled = _run(scheduler, [{"val_loss": 0.6, "val_acc": 0.4}])
    assert stalled == [pytest.approx(1e-4)]
    worse = _run(scheduler, [{"val_loss": 5.0, "val_acc": 0.0}, {"val_loss": 0.1, "val_acc": 0.99}])
    assert worse[0] == pytest.approx(1e-5) and worse[1] == pytest.approx(1e-5)  # a recovery does not raise it


def test_metric_counts_an_accuracy_gain_as_improvement_even_if_the_loss_stalls():
    scheduler = MetricAdaptive(_optimizer())
    stream = [{"val_loss": 0.5, "val_acc": 0.5 + 0.05 * t} for t in range(5)]
    assert _run(scheduler, stream) == [1e-3] * 5


def test_metric_ignores_steps_without_an_evaluation():
    scheduler = MetricAdaptive(_optimizer())
    assert _run(scheduler, [{"val_loss": 1.0}] + [{"val_loss": None, "val_acc": None}] * 20) == [1e-3] * 21


def test_rising_uncertainty_raises_the_lr_and_low_uncertainty_lowers_it():
    confidences = [0.99, 0.98, 0.97, 0.80, 0.70, 0.60]  # uncertainty 0.01 .. 0.40
    lrs = _run(UncertaintyAdaptive(_optimizer()), [{"unc_confidence": c} for c in confidences])
    assert lrs[:3] == pytest.approx([0.9e-3, 0.81e-3, 0.729e-3])
    assert lrs[3:] == pytest.approx([0.729e-3 * 1.1, 0.729e-3 * 1.1**2, 0.729e-3 * 1.1**3])


def test_uncertainty_from_mc_dropout_variance():
    lrs = _run(UncertaintyAdaptive(_optimizer(), source="mc_dropout"), [{"unc_mc_var": 0.2}, {"unc_mc_var": 0.01}])
    assert lrs == pytest.approx([1.1e-3, 0.99e-3])


def _resource_lr(features, batch_size=64, device_lr=1e-3):
    scheduler = ResourceAdaptive(_optimizer(device_lr), batch_size=batch_size, smoothing=0.0, tolerance=0.0)
    return _run(scheduler, [features])[-1], scheduler


BASE = {"res_data_classes": 10, "res_data_features": 64, "res_samples_per_s": 1000.0, "res_cpu_rss_mb": 500.0}


def test_resource_aware_lowers_the_lr_for_more_complex_data():
    simple, _ = _resource_lr(BASE | {"res_data_classes": 2, "res_data_features": 8})
    complex_, _ = _resource_lr(BASE | {"res_data_classes": 1000, "res_data_features": 3 * 224 * 224})
    assert complex_ < simple


def test_resource_aware_lowers_the_lr_under_gpu_load_and_reads_the_gpu_when_there_is_one():
    idle, scheduler = _resource_lr(BASE | {"res_gpu_util": 5.0})
    busy, _ = _resource_lr(BASE | {"res_gpu_util": 95.0})
    assert busy < idle and scheduler.path == "gpu"


def test_resource_aware_on_cpu_lowers_the_lr_when_throughput_drops_or_memory_fills():
    scheduler = ResourceAdaptive(_optimizer(), smoothing=0.0, tolerance=0.0)
    fast, slow = _run(scheduler, [BASE, BASE | {"res_samples_per_s": 100.0}])
    assert slow < fast and scheduler.path == "cpu"
    light, _ = _resource_lr(BASE | {"res_cpu_rss_mb": 100.0})
    heavy, _ = _resource_lr(BASE | {"res_cpu_rss_mb": 1e9})
    assert heavy < light


def test_resource_aware_raises_the_lr_for_a_bigger_batch_within_the_seeds_bounds():
    small, _ = _resource_lr(BASE, batch_size=16)
    large, _ = _resource_lr(BASE, batch_size=256)
    assert large == pytest.approx(small * 4)  # square-root scaling: 16x the batch, 4x the LR
    huge, scheduler = _resource_lr(BASE, batch_size=2**20)
    assert huge == scheduler.max_lr == 1e-2
