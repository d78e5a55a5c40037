import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from metalr.meta.inputs import INPUT_FEATURES, MAX_LOG_MULT, MAX_LOG_STEP
from metalr.meta.model import LSTMMetaLearner
from metalr.schedulers import MetaScheduler, build_scheduler


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
