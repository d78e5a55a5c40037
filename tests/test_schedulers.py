import math
import warnings

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, ReduceLROnPlateau, SequentialLR

from metalr.meta.inputs import INPUT_FEATURES, MAX_LOG_MULT, MAX_LOG_STEP
from metalr.meta.model import LSTMMetaLearner
from metalr.schedulers import MetaScheduler, build_scheduler, evaluation_weights


def _optimizer(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, steps, features=None):
    out = []
    for t in range(1, steps + 1):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        if hasattr(scheduler, "observe"):
            scheduler.observe((features or {}) | {"step": t, "lr": out[-1]})
        scheduler.step()
    return out


def test_constant_keeps_the_base_lr_from_the_first_step():
    assert _lrs(build_scheduler("constant", _optimizer(), 20), 20) == [0.1] * 20


def test_step_decays_tenfold_every_third_of_the_budget():
    lrs = _lrs(build_scheduler("step", _optimizer(), 30), 30)
    assert lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.01) and lrs[20] == pytest.approx(0.001)


def test_exponential_reaches_one_percent_of_the_base_at_the_budget():
    scheduler = build_scheduler("exponential", _optimizer(), 50)
    _lrs(scheduler, 50)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.01)


def test_plateau_cuts_the_lr_after_two_evaluations_without_improvement():
    scheduler = build_scheduler("plateau", _optimizer(), 100)
    for value in (1.0, 0.5, 0.499, 0.4995, 0.4999):
        scheduler.observe({"val_loss": value})
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.01)


def test_plateau_counts_evaluations_not_optimizer_steps():
    scheduler = build_scheduler("plateau", _optimizer(), 100)
    scheduler.observe({"val_loss": 1.0})
    scheduler.step()
    for _ in range(50):  # steps without a validation loss change nothing
        scheduler.observe({"val_loss": None})
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1)


def test_unknown_scheduler_lists_the_known_ones():
    with pytest.raises(ValueError, match="cosine.*meta"):
        build_scheduler("warp", _optimizer(), 10)


def _meta(optimizer, budget=60, every=6, bias=0.0):
    learner = LSTMMetaLearner(len(INPUT_FEATURES), hidden=4)
    torch.nn.init.constant_(learner.head.bias, bias)
    return MetaScheduler(optimizer, learner, budget=budget, decision_every=every)


def test_untrained_meta_scheduler_is_exactly_torch_cosine():
    budget = 60
    meta = _lrs(_meta(_optimizer()), budget, {"loss_ema": 1.0, "grad_norm": 1.0})
    reference = _lrs(CosineAnnealingLR(_optimizer(), T_max=budget), budget)
    assert meta == pytest.approx(reference, rel=1e-12, abs=1e-15)


def test_meta_scheduler_changes_at_most_twofold_per_decision_and_at_most_tenfold_overall():
    scheduler = _meta(_optimizer(), bias=10.0)  # the learner asks for the maximum every time
    _lrs(scheduler, 60)
    assert scheduler.log_mult == pytest.approx(MAX_LOG_MULT)
    fresh = _meta(_optimizer(), bias=10.0)
    _lrs(fresh, 6)
    assert fresh.log_mult == pytest.approx(MAX_LOG_STEP)


def test_meta_scheduler_state_dict_round_trips_mid_run():
    torch.manual_seed(0)
    first = _meta(_optimizer(), bias=0.3)
    torch.nn.init.normal_(first.learner.head.weight)
    features = {"loss_ema": 2.0, "grad_norm": 3.0, "val_loss": 1.5}
    _lrs(first, 25, features)
    state = first.state_dict()
    second = _meta(_optimizer(), bias=0.3)
    second.learner.load_state_dict(first.learner.state_dict())
    second.optimizer.param_groups[0]["lr"] = first.optimizer.param_groups[0]["lr"]
    second.load_state_dict(state)
    assert _lrs(second, 20, features) == _lrs(first, 20, features)


def test_meta_scheduler_composes_with_a_sequential_warmup():
    optimizer = _optimizer()
    warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)
    meta = _meta(optimizer, budget=55)
    chained = SequentialLR(optimizer, [warmup, meta], milestones=[5])
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        chained.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.1)
    assert all(math.isfinite(x) and x > 0 for x in lrs)


# --- every registered scheduler -----------------------------------------------------------------

import io  # noqa: E402

from metalr.schedulers import (  # noqa: E402
    ADAPTIVE,
    REGISTRY,
    SCHEDULER_NAMES,
    is_meta,
    owns_optimizer,
    peer_optimizer,
)

BUILT = [name for name in SCHEDULER_NAMES if not name.startswith("meta")]
OWNERS = [name for name in BUILT if owns_optimizer(name)]


def _setup(name, lr=1e-3, budget=60):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(3, 2))]
    optimizer = peer_optimizer(name, torch.optim.Adam(params, lr=lr, weight_decay=1e-4), "adam")
    return optimizer, build_scheduler(name, optimizer, budget, batch_size=32)


def _features(t):
    """A synthetic stream that gives every adaptive scheduler something to act on."""
    return {
        "val_loss": 1.0 / (1 + t) if t < 20 else 0.05 + 0.001 * (t % 3),
        "val_acc": min(0.9, 0.05 * t),
        "unc_confidence": 0.6 + 0.015 * t,
        "unc_mc_var": 0.01 * (t % 7),
        "curv_lambda_max": 5.0 + t,
        "grad_cos_prev": math.sin(t),
        "res_samples_per_s": 1000.0 / (1 + t % 5),
        "res_cpu_rss_mb": 300.0 + t,
        "res_data_classes": 10,
        "res_data_features": 64,
    }


def _drive(optimizer, scheduler, steps, start=0, peek=False):
    """Deterministic updates (gradients from the step index), observe, step; the LR of every update.

    With ``peek``, ``get_lr()`` is also called before and after each ``observe``, as a user might.
    """
    lrs = []
    params = optimizer.param_groups[0]["params"]
    for t in range(start, start + steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        for i, p in enumerate(params):
            p.grad = torch.sin(torch.arange(p.numel(), dtype=p.dtype).view(p.shape) + t + i) + 0.1 * p.detach()
        optimizer.step()
        if peek:
            _peek(scheduler)
        if hasattr(scheduler, "observe"):
            scheduler.observe(_features(t))
        if peek:
            _peek(scheduler)
        scheduler.step()
    return lrs


def _peek(scheduler):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own schedulers point to get_last_lr(); the call is the point here
        try:
            scheduler.get_lr()
        except NotImplementedError:  # torch's SequentialLR and ReduceLROnPlateau have no get_lr to peek at
            assert isinstance(scheduler, (SequentialLR, ReduceLROnPlateau)), type(scheduler)


def _registered(name):
    """Every registered scheduler on the same synthetic problem; the meta-scheduler with an untrained
    learner whose head asks for a change, so that its decisions move the LR."""
    if not is_meta(name):
        return _setup(name)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.randn(4))], lr=1e-3)
    return optimizer, _meta(optimizer, bias=0.5)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_peeking_at_get_lr_changes_nothing_for_every_registered_scheduler(name):
    """torch's contract: get_lr() has no side effects; the LR sequence is the same with and without peeks."""
    plain = _drive(*_registered(name), 50)
    assert _drive(*_registered(name), 50, peek=True) == plain
    if name != "constant":  # the feature stream made it act, so a lost proposal would show
        assert len(set(plain)) > 1


def _resumed(name, optimizer, scheduler):
    """A fresh optimizer and scheduler of ``name``, on a copy of the parameters, loaded from the
    originals' state_dicts through torch.save and a weights-only load, as the run checkpoints do."""
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh_optimizer, fresh = _setup(name)
    with torch.no_grad():
        for p, q in zip(fresh_optimizer.param_groups[0]["params"], optimizer.param_groups[0]["params"], strict=True):
            p.copy_(q)
    fresh_optimizer.load_state_dict(saved["optimizer"])
    fresh.load_state_dict(saved["scheduler"])
    return fresh_optimizer, fresh


@pytest.mark.parametrize("name", BUILT)
def test_a_state_dict_saved_mid_run_continues_with_an_identical_lr_sequence(name):
    optimizer, scheduler = _setup(name)
    before = _drive(optimizer, scheduler, 25)
    fresh_optimizer, fresh = _resumed(name, optimizer, scheduler)
    expected = _drive(optimizer, scheduler, 30, start=25)
    assert _drive(fresh_optimizer, fresh, 30, start=25) == expected
    if name != "constant":  # the stream made the scheduler act, so its state had something to carry
        assert len(set(before + expected)) > 1


@pytest.mark.parametrize("name", OWNERS)
def test_a_peer_that_owns_the_optimizer_resumes_with_identical_parameter_updates(name):
    X = torch.randn(128, 8, generator=torch.Generator().manual_seed(1))
    y = (X[:, 0] > 0).long()

    def build():
        model, task_optimizer = _net_optimizer(lr=1e-2)
        optimizer = peer_optimizer(name, task_optimizer, "adam")
        return model, optimizer, build_scheduler(name, optimizer, 60)

    def train(model, optimizer, scheduler, steps):
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()

    model, optimizer, scheduler = build()
    start = [p.detach().clone() for p in model.parameters()]
    train(model, optimizer, scheduler, 25)
    buffer = io.BytesIO()  # through torch.save and a weights-only load, as the run checkpoints do
    torch.save([part.state_dict() for part in (model, optimizer, scheduler)], buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = build()
    for part, state in zip(resumed, saved, strict=True):
        part.load_state_dict(state)
    train(model, optimizer, scheduler, 30)
    train(*resumed, 30)
    for original, copy, first in zip(model.parameters(), resumed[0].parameters(), start, strict=True):
        assert torch.equal(original, copy)
        assert not torch.equal(original, first)  # the optimizer moved them: the comparison has teeth


@pytest.mark.parametrize("name", [*ADAPTIVE, "hypergradient"])
def test_adaptive_schedulers_compose_with_a_sequential_warmup(name):
    optimizer, adaptive = _setup(name, lr=1e-3)
    warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)
    chained = SequentialLR(optimizer, [warmup, adaptive], milestones=[5])
    lrs = _drive(optimizer, _Observing(chained, adaptive), 40)
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[5] == pytest.approx(1e-3)  # the warmup hands over the base LR
    assert all(math.isfinite(x) and adaptive.min_lr <= x <= adaptive.max_lr for x in lrs)
    assert len(set(lrs[6:])) > 1, "the adaptive scheduler acted after the warmup"


class _Observing:
    """SequentialLR does not forward observe(): feed the adaptive scheduler directly."""

    def __init__(self, chained, adaptive):
        self.chained, self.adaptive = chained, adaptive

    def observe(self, features):
        self.adaptive.observe(features)

    def step(self):
        self.chained.step()


def test_warmup_cosine_warms_up_over_five_percent_then_follows_cosine():
    lrs = _lrs(build_scheduler("warmup-cosine", _optimizer(), 100), 100)
    assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.1)
    assert lrs[5:] == pytest.approx(_lrs(CosineAnnealingLR(_optimizer(), T_max=95), 95))


def test_one_cycle_peaks_at_the_base_lr_after_thirty_percent():
    lrs = _lrs(build_scheduler("onecycle", _optimizer(), 100), 100)
    assert max(lrs) == pytest.approx(0.1, rel=1e-3) and 25 <= lrs.index(max(lrs)) <= 35
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 1e-4


def test_schedule_free_needs_its_own_optimizer():
    with pytest.raises(ValueError, match="schedule_free_optimizer"):
        build_scheduler("schedulefree", _optimizer(), 10)


@pytest.mark.parametrize("name", ["prodigy", "dadapt-adam", "mechanic"])
def test_a_learning_rate_free_peer_refuses_the_tasks_plain_optimizer_and_names_the_fix(name):
    with pytest.raises(ValueError, match=rf"{name}.*got SGD.*peer_optimizer\('{name}'"):
        build_scheduler(name, _optimizer(), 10)


def test_linear_decays_from_the_base_lr_to_zero_at_the_budget():
    lrs = _lrs(build_scheduler("linear", _optimizer(), 50), 50)
    assert lrs == pytest.approx([0.1 * (1 - k / 50) for k in range(50)], rel=1e-9)


def test_wsd_warms_up_over_five_percent_holds_then_cools_down_as_one_minus_sqrt_over_the_last_fifth():
    scheduler = build_scheduler("wsd", _optimizer(), 100)
    lrs = _lrs(scheduler, 100)
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:81] == pytest.approx([0.1] * 76)
    assert lrs[80:] == pytest.approx([0.1 * (1 - math.sqrt(j / 20)) for j in range(20)])
    scheduler.optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-15)  # zero at the budget


def _net_optimizer(kind="adam", lr=1e-3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    make = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(kind)
    if make is None:
        return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    return model, make(model.parameters(), lr=lr, weight_decay=1e-4)


def test_the_base_lr_grid_scales_prodigys_d_coef_and_d_adaptations_lr_at_their_lr_one_convention():
    prodigy = peer_optimizer("prodigy", _net_optimizer()[1], "adam", lr_multiplier=10.0)
    assert prodigy.param_groups[0]["lr"] == 1.0 and prodigy.param_groups[0]["d_coef"] == 10.0
    assert prodigy.param_groups[0]["weight_decay"] == 1e-4
    dadapt = peer_optimizer("dadapt-adam", _net_optimizer()[1], "adam", lr_multiplier=0.1)
    assert dadapt.param_groups[0]["lr"] == 0.1 and dadapt.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_mechanic_wraps_the_tasks_own_optimizer_with_its_settings(kind):
    _, task_optimizer = _net_optimizer(kind, lr=3e-3)
    mechanic = peer_optimizer("mechanic", task_optimizer, kind)
    assert isinstance(mechanic, type(task_optimizer))
    ours, theirs = mechanic.param_groups[0], task_optimizer.param_groups[0]
    assert {k: v for k, v in ours.items() if k != "params"} == {k: v for k, v in theirs.items() if k != "params"}
    assert ours["params"] == theirs["params"]


@pytest.mark.parametrize("name", OWNERS)
def test_each_peer_that_owns_the_optimizer_trains_a_small_network(name):
    """Each learns a separable problem from the task's Adam at LR 0.01 (Prodigy and D-Adaptation at lr = 1)."""
    model, task_optimizer = _net_optimizer(lr=1e-2)
    optimizer = peer_optimizer(name, task_optimizer, "adam")
    scheduler = build_scheduler(name, optimizer, 200)
    X = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
    y = (X[:, 0] + X[:, 1] > 0).long()
    losses = []
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    with evaluation_weights(optimizer):
        final = torch.nn.functional.cross_entropy(model(X), y).item()
    assert final < 0.5 * losses[0], (name, losses[0], final)


def test_names_starting_with_meta_are_routed_to_the_meta_scheduler():
    for name in ("meta", "meta-gru"):
        with pytest.raises(ValueError, match="fitted checkpoint"):
            build_scheduler(name, _optimizer(), 10)


def test_every_registered_scheduler_has_a_description_and_a_config_name():
    from metalr.config import config_schema

    schema = config_schema()
    names = schema["$defs"]["scheduler_name"]["enum"]
    assert set(names) == {name for name, entry in REGISTRY.items() if entry.kind != "meta"}
    assert all(entry.description for entry in REGISTRY.values())


def test_metalr_schedulers_lists_every_name_once_with_its_description(capsys):
    from metalr.cli import main

    assert main(["schedulers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(REGISTRY)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_hypergradient_lr_stays_positive_however_hard_the_gradients_oppose():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    scheduler = build_scheduler("hypergradient", optimizer, 100)
    p = optimizer.param_groups[0]["params"][0]
    for t in range(2000):  # gradients flip sign every step: every cosine is -1
        p.grad = torch.full((3,), 1.0 if t % 2 else -1.0)
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(scheduler.min_lr) and scheduler.min_lr > 0
