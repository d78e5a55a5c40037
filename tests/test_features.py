"""Probe correctness against known answers, and the guarantee that probes never change training."""

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from conftest import make_task
from torch import nn

from metalr.config import ModelSpec, ProbeConfig
from metalr.features import PROBE_TYPES, StepContext, isolated
from metalr.features.curvature import hutchinson_trace, lanczos, make_hvp
from metalr.features.gradients import micro_batch_gradients, noise_statistics
from metalr.features.uncertainty import confidence_and_entropy, mc_dropout_variance
from metalr.tasks import prepare_dataset
from metalr.train import RunSpec, train_run
from metalr.trajectories import TIMING_COLUMNS


def _quadratic():
    # Indefinite, non-diagonal: A = Q diag(-5, 3, 1) Qᵀ for a fixed rotation Q.
    q, _ = torch.linalg.qr(torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64))
    a = q @ torch.diag(torch.tensor([-5.0, 3.0, 1.0], dtype=torch.float64)) @ q.T
    x = nn.Parameter(torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64))
    return a, x, 0.5 * x @ a @ x


def test_lanczos_finds_the_largest_magnitude_eigenvalue_of_an_indefinite_quadratic():
    a, x, loss = _quadratic()
    eigen = lanczos(make_hvp(loss, [x]), torch.ones(3, dtype=torch.float64), tol=1e-6)
    assert eigen.value == pytest.approx(-5.0, rel=1e-6)
    assert eigen.iterations <= 3 and eigen.residual <= 1e-6
    torch.testing.assert_close(a @ eigen.vector, eigen.value * eigen.vector)


def test_hutchinson_trace_of_the_quadratic_is_within_its_stated_error():
    _, x, loss = _quadratic()
    trace, stderr = hutchinson_trace(make_hvp(loss, [x]), x.detach(), 2000, torch.Generator().manual_seed(0))
    assert abs(trace - (-1.0)) <= 4 * stderr
    assert 0 < stderr < 0.5


def _mlp_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    inputs, targets = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in params]

    def loss_of(flat_params):
        pieces = torch.split(flat_params, sizes)
        state = {n: piece.view(p.shape) for n, piece, p in zip(names, pieces, params, strict=True)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, state, (inputs,)), targets)

    flat_params = torch.cat([p.detach().reshape(-1) for p in params])
    dense = torch.autograd.functional.hessian(loss_of, flat_params)
    loss = nn.functional.cross_entropy(model(inputs), targets)
    return dense, make_hvp(loss, params), flat_params.numel()


def test_lanczos_meets_its_stated_residual_against_the_dense_hessian_of_a_small_mlp():
    dense, hvp, size = _mlp_hessian()
    eigenvalues = torch.linalg.eigvalsh(dense)
    expected = float(eigenvalues[eigenvalues.abs().argmax()])
    start = torch.randn(size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eigen = lanczos(hvp, start, tol=0.01, max_iters=size)
    assert eigen.residual <= 0.01
    assert abs(eigen.value - expected) <= eigen.residual * abs(eigen.value)
    # The residual is the true one, not a bookkeeping figure.
    true_residual = float((dense @ eigen.vector - eigen.value * eigen.vector).norm()) / abs(eigen.value)
    assert true_residual == pytest.approx(eigen.residual, rel=0.05, abs=1e-6)


def test_hutchinson_trace_matches_the_dense_hessian_of_a_small_mlp_within_its_stated_error():
    dense, hvp, size = _mlp_hessian()
    generator = torch.Generator().manual_seed(2)
    trace, stderr = hutchinson_trace(hvp, torch.zeros(size, dtype=torch.float64), 3000, generator)
    assert abs(trace - float(torch.trace(dense))) <= 4 * stderr


def test_gradient_noise_matches_hand_computed_per_sample_gradients_of_a_linear_model():
    torch.manual_seed(3)
    model = nn.Linear(3, 1, bias=False).double()
    inputs, targets = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    ctx = StepContext(
        1, model, list(model.parameters()), None, nn.MSELoss(), inputs, targets, 0.0, 0.0, None, inputs, targets
    )
    # Per-sample gradient of (w·x − y)² is 2 (w·x − y) x; a micro-batch gradient is their mean.
    residual = inputs @ model.weight.detach().T - targets
    per_sample = 2 * residual * inputs
    micro = per_sample.view(4, 2, 3).mean(1)
    expected_trace = 2 * float(((micro - micro.mean(0)) ** 2).sum()) / 3
    expected_scale = expected_trace / float(micro.mean(0) @ micro.mean(0))
    trace, scale = noise_statistics(micro_batch_gradients(ctx, 4), micro_batch_size=2)
    assert trace == pytest.approx(expected_trace, rel=1e-9)
    assert scale == pytest.approx(expected_scale, rel=1e-9)


def test_mc_dropout_variance_is_exactly_zero_without_dropout_and_positive_with_it():
    inputs = torch.randn(32, 6)
    for p, positive in ((0.0, False), (0.5, True)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, 3))
        variance = mc_dropout_variance(model, inputs, passes=8, classification=True)
        assert (variance > 0) if positive else (variance == 0.0)
    assert mc_dropout_variance(nn.Linear(6, 3), inputs, 8, True) is None


def test_confidence_and_entropy_of_hand_made_logits():
    logits = torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]])
    confidence, entropy = confidence_and_entropy(logits)
    assert confidence == pytest.approx((0.5 + 0.75) / 2)
    expected_entropy = (np.log(2) + -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))) / 2
    assert entropy == pytest.approx(expected_entropy)


def test_isolated_restores_batchnorm_statistics_rng_and_modes():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    with isolated(model, seed=7):
        model.eval()
        model[1].train()
        model(torch.randn(8, 4))
    assert torch.rand(1) == expected_draw
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())


FAMILIES = [
    ("digits", "mlp", 0.3),
    ("digits", "cnn", 0.0),
    ("sunspots", "lstm", 0.2),
    ("synthtext", "bilstm", 0.0),
    ("synthtext", "bert", 0.1),
    ("synthtext", "gpt2", 0.1),
    # At dropout 0, CPU attention would pick a kernel with no double backward: the curvature
    # probe must still run.
    ("synthtext", "bert", 0.0),
    ("sunspots", "transformer", 0.1),
]


@pytest.mark.parametrize(("dataset", "family", "dropout"), FAMILIES)
def test_training_losses_are_bit_identical_with_every_probe_on_or_off(dataset, family, dropout):
    data = prepare_dataset(dataset, 0, 0.15, 0.15)
    every_step = ProbeConfig(
        geometry_every=1, optimizer_every=1, noise_every=3, curvature_every=3, uncertainty_every=2, resources_every=1
    )
    task = replace(
        make_task(dataset=dataset, family=family, budget=12, val_every=4),
        model=ModelSpec(family, width=8, dropout=dropout),
        probes=every_step,
    )
    on = train_run(RunSpec("collect", task, "cosine", 0), data)
    off = train_run(RunSpec("collect", replace(task, probes=ProbeConfig(enabled=False)), "cosine", 0), data)
    assert on.trajectory["curv_lambda_max"].null_count() < 12  # the probes really ran
    assert on.trajectory["loss_train"].to_list() == off.trajectory["loss_train"].to_list()
    assert on.summary["test_metric"][0] == off.summary["test_metric"][0]


def test_every_feature_group_fires_at_least_ten_times_per_run_at_default_cadences(repo):
    from metalr.config import load_config

    config = load_config(repo / "config" / "config.yaml")
    task = config.tasks["digits-mlp-00"]  # the first variant of the default config's digits-mlp family
    result = train_run(RunSpec("collect", task, "cosine", 0), prepare_dataset(task.dataset, 0, 0.15, 0.15))
    counts = result.trajectory.select(pl.all().is_not_null().sum()).row(0, named=True)
    for prefix in ("loss_", "grad_", "upd_", "curv_", "val_", "unc_", "res_", "opt_"):
        fired = max(v for k, v in counts.items() if k.startswith(prefix))
        assert fired >= 10, (prefix, fired)


def test_timing_columns_are_the_only_ones_that_differ_between_identical_runs(digits):
    task = make_task(budget=20, val_every=5)
    a, b = (train_run(RunSpec("collect", task, "cosine", 0), digits).trajectory for _ in range(2))
    assert a.drop(TIMING_COLUMNS).equals(b.drop(TIMING_COLUMNS))


def test_probe_columns_do_not_collide():
    names = [c for t in PROBE_TYPES for c in t.columns]
    assert len(names) == len(set(names))
