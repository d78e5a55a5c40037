"""Published self-tuning peers: Schedule-Free, Prodigy, D-Adaptation Adam and Mechanic, which
own the optimizer, and hypergradient descent, which only sets the LR."""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import math
from collections.abc import Callable, Iterable, Iterator

import schedulefree
import torch
from dadaptation import DAdaptAdam
from mechanic_pytorch import is_mechanized, mechanize
from prodigyopt import Prodigy
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler

from metalr.schedulers.bounded import BoundedScheduler

# --- Schedule-Free (Defazio et al. 2024; the AlgoPerf self-tuning track's winner) -------------

SCHEDULE_FREE_WARMUP = 0.05  # fraction of the budget, as in the AlgoPerf submission's linear warmup


def is_schedule_free(optimizer: Optimizer) -> bool:
    return "train_mode" in optimizer.param_groups[0] and callable(getattr(optimizer, "eval", None))


def schedule_free_optimizer(
    kind: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0
) -> Optimizer:
    """The Schedule-Free counterpart of a task's optimizer, in train mode.

    Adam and AdamW tasks get ``AdamWScheduleFree`` (decoupled weight decay), SGD tasks
    ``SGDScheduleFree`` with the task's momentum 0.9. Its own warmup is off: the
    ``schedulefree`` scheduler below does the same linear warmup on ``lr``, so the
    trajectory's ``lr`` column shows the LR each update really used.
    """
    if kind == "sgd":
        optimizer = schedulefree.SGDScheduleFree(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        optimizer = schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=weight_decay)
    optimizer.train()
    return optimizer


def schedule_free_warmup(optimizer: Optimizer, budget: int) -> LRScheduler:
    """Linear warmup over 5% of the budget, then constant: the schedule Schedule-Free wants.

    The same values as the optimizer's own ``warmup_steps`` ((k + 1) / W for update k < W).
    """
    if not is_schedule_free(optimizer):
        raise ValueError(
            "the 'schedulefree' scheduler needs a Schedule-Free optimizer: build it with "
            "metalr.schedulers.peers.schedule_free_optimizer(...)"
        )
    warmup = max(1, round(SCHEDULE_FREE_WARMUP * budget))
    # LinearLR cannot take total_iters=0; one warmup step means no warmup at all.
    return LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1))


# --- Learning-rate-free peers: Prodigy, D-Adaptation Adam, Mechanic ----------------------------


def _quiet() -> contextlib.AbstractContextManager:
    # Prodigy and D-Adaptation print "Using decoupled weight decay" on every build: one line per run.
    return contextlib.redirect_stdout(io.StringIO())


def prodigy_optimizer(
    params: Iterable[torch.nn.Parameter], d_coef: float = 1.0, weight_decay: float = 0.0
) -> Optimizer:
    """Prodigy (Mishchenko & Defazio 2024) at its documented lr = 1.

    ``d_coef`` is the knob its README says to turn to force a larger or smaller estimate, so
    the base-LR grid scales it. Weight decay is decoupled (Prodigy's default, and
    Schedule-Free's above), which also leaves ``p.grad`` as the backward pass wrote it.
    """
    with _quiet():
        return Prodigy(params, lr=1.0, d_coef=d_coef, weight_decay=weight_decay, decouple=True)


def dadapt_adam_optimizer(
    params: Iterable[torch.nn.Parameter], lr: float = 1.0, weight_decay: float = 0.0
) -> Optimizer:
    """D-Adaptation Adam (Defazio & Mishchenko 2023). Its README says to leave lr at 1 and that
    lr scales the adapted step size directly, so the base-LR grid scales ``lr``.
    Decoupled weight decay, as for Prodigy."""
    with _quiet():
        return DAdaptAdam(params, lr=lr, weight_decay=weight_decay, decouple=True)


def mechanic_optimizer(optimizer: Optimizer) -> Optimizer:
    """Mechanic (Cutkosky, Defazio & Mehta 2023) around ``optimizer``: the same class, parameter
    groups and settings, whose updates Mechanic rescales by a scale it learns online.

    Unlike ``mechanic_pytorch.mechanize``'s own class, its ``state_dict`` round-trips into a
    fresh optimizer (see ``_mechanized``). Build it before any step of ``optimizer``.
    """
    groups = [dict(group) for group in optimizer.param_groups]
    # defaults can hold settings the constructor does not take (AdamW's decoupled_weight_decay);
    # the groups carry every setting anyway.
    accepted = inspect.signature(type(optimizer).__init__).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    return _mechanized(type(optimizer))(groups, **defaults)


@functools.cache
def _mechanized(base: type[Optimizer]) -> type[Optimizer]:
    class Mechanized(mechanize(base)):
        # Mechanic keeps each parameter's reference point in optimizer.state["_mechanic"][param],
        # keyed by the parameter tensor itself: a saved state would key a resumed run's lookups
        # by tensors that no longer exist. Keyed by position here, as torch keys its own state.
        def state_dict(self) -> dict:
            state = super().state_dict()
            mechanic = state["state"].get("_mechanic")
            if mechanic is not None:
                position = {id(p): i for i, p in enumerate(_parameters(self))}
                mechanic = {position[id(k)] if isinstance(k, torch.Tensor) else k: v for k, v in mechanic.items()}
                state["state"] = {**state["state"], "_mechanic": mechanic}
            return state

        def load_state_dict(self, state_dict: dict) -> None:
            super().load_state_dict(state_dict)
            mechanic = self.state.get("_mechanic")
            if mechanic is not None:
                params = _parameters(self)
                self.state["_mechanic"] = {k: v for k, v in mechanic.items() if not isinstance(k, int)} | {
                    params[k]: {name: t.to(params[k]) for name, t in v.items()}
                    for k, v in mechanic.items()
                    if isinstance(k, int)
                }

    Mechanized.__name__ = Mechanized.__qualname__ = f"Mechanic{base.__name__}"
    return Mechanized


# The peers that replace the task's optimizer: how each is built from the task's (its
# parameters, LR and weight decay, the task's optimizer kind and the base-LR multiplier of
# the grid), and how a scheduler recognises it.
def _parameters(optimizer: Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _settings(optimizer: Optimizer) -> tuple[list[torch.Tensor], float, float]:
    group = optimizer.param_groups[0]
    return _parameters(optimizer), group["lr"], group["weight_decay"]


def replace_with_schedule_free(optimizer: Optimizer, kind: str, lr_multiplier: float) -> Optimizer:
    params, lr, weight_decay = _settings(optimizer)
    return schedule_free_optimizer(kind, params, lr, weight_decay)  # the grid scales the task's LR itself


def replace_with_prodigy(optimizer: Optimizer, kind: str, lr_multiplier: float) -> Optimizer:
    params, _, weight_decay = _settings(optimizer)
    return prodigy_optimizer(params, d_coef=lr_multiplier, weight_decay=weight_decay)


def replace_with_dadapt_adam(optimizer: Optimizer, kind: str, lr_multiplier: float) -> Optimizer:
    params, _, weight_decay = _settings(optimizer)
    return dadapt_adam_optimizer(params, lr=lr_multiplier, weight_decay=weight_decay)


def replace_with_mechanic(optimizer: Optimizer, kind: str, lr_multiplier: float) -> Optimizer:
    return mechanic_optimizer(optimizer)  # wraps the task's own optimizer at the grid's LR


_RECOGNISE: dict[str, tuple[Callable[[Optimizer], bool], str]] = {
    "prodigy": (lambda o: isinstance(o, Prodigy), "a Prodigy optimizer (prodigy_optimizer)"),
    "dadapt-adam": (lambda o: isinstance(o, DAdaptAdam), "a D-Adaptation Adam optimizer (dadapt_adam_optimizer)"),
    "mechanic": (is_mechanized, "a Mechanic-wrapped optimizer (mechanic_optimizer)"),
}


def owned_cosine(name: str, optimizer: Optimizer, budget: int) -> LRScheduler:
    """CosineAnnealingLR over the budget on the lr of peer ``name``'s own optimizer: the schedule
    Prodigy's README recommends, D-Adaptation's says to keep, and Mechanic's paper runs under."""
    recognise, needs = _RECOGNISE[name]
    if not recognise(optimizer):
        raise ValueError(
            f"the {name!r} scheduler needs {needs}, got {type(optimizer).__name__}: build it with "
            f"metalr.schedulers.peer_optimizer({name!r}, optimizer, kind)"
        )
    return CosineAnnealingLR(optimizer, T_max=budget)


@contextlib.contextmanager
def evaluation_weights(optimizer: Optimizer) -> Iterator[None]:
    """Inside: the model holds the weights to evaluate or save (Schedule-Free's averaged x);
    after: the training weights again. A no-op for every other optimizer."""
    switch = is_schedule_free(optimizer) and optimizer.param_groups[0]["train_mode"]
    if switch:
        optimizer.eval()
    try:
        yield
    finally:
        if switch:
            optimizer.train()


def on_evaluation_weights(hook: Callable, due: Callable[[int], bool], optimizer: Optimizer) -> Callable:
    """A probe hook that runs on the evaluation weights on the steps it is ``due``."""

    def wrapped(ctx):
        if not due(ctx.step):
            return hook(ctx)
        with evaluation_weights(optimizer):
            return hook(ctx)

    return wrapped


# --- Hypergradient descent (Baydin et al. 2018) -----------------------------------------------


class Hypergradient(BoundedScheduler):
    """Multiplicative hypergradient descent: lr_t = lr_{t-1} * (1 + beta * cos(g_t, -d_{t-1})).

    ``g_t`` is this update's gradient and ``d_{t-1}`` the previous update (the parameters'
    actual change, so it works for any optimizer: SGD, momentum, Adam). d(loss)/d(lr) is
    proportional to -g_t . d_{t-1}: when the new gradient still points along the last step,
    the step was too short and the LR grows; when it points back, the LR shrinks. The cosine
    form (Baydin et al.'s multiplicative rule) makes ``beta`` a per-step relative change,
    independent of the gradient's scale. The LR is clamped to [min_lr, max_lr], min_lr > 0,
    so it can never reach zero or go negative. Reads the optimizer's parameters and
    gradients on every ``step()``: call it after ``optimizer.step()`` and before zeroing them.
    """

    def __init__(
        self, optimizer: Optimizer, beta: float = 0.02, min_lr: float | None = None, max_lr: float | None = None
    ):
        self.beta = beta
        self._params: list[torch.Tensor] | None = None  # parameters after the previous update
        self._update: list[torch.Tensor] | None = None  # the previous update
        super().__init__(optimizer, min_lr, max_lr)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        return {**super().hyperparameters(), "beta": self.beta}

    def _tensors(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def update(self, features: dict[str, float]) -> None:
        del features  # reads the optimizer, not the trajectory

    def step(self, epoch: int | None = None) -> None:
        if self._step_count > 0:  # not the constructor's initial step: an update has happened
            self._hypergradient()
        super().step(epoch)

    @torch.no_grad()
    def _hypergradient(self) -> None:
        params = self._tensors()
        now = [p.detach().clone() for p in params]
        if self._update is not None and all(p.grad is not None for p in params):
            dot = sum(float((p.grad * -u).sum()) for p, u in zip(params, self._update, strict=True))
            g_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))
            u_norm = math.sqrt(sum(float(u.pow(2).sum()) for u in self._update))
            cosine = self.finite(dot / (g_norm * u_norm) if g_norm * u_norm != 0 else 0.0, "gradient cosine")
            if cosine is not None:
                factor = 1 + self.beta * max(-1.0, min(1.0, cosine))
                self.propose(factor, f"hypergradient cos(g, -prev update) {cosine:+.3f}: lr x{factor:.4f}")
        if self._params is not None:
            update = [n - p for n, p in zip(now, self._params, strict=True)]
            # A non-finite update would poison every later cosine: forget it instead.
            finite = all(bool(torch.isfinite(u).all()) for u in update)
            self._update = update if finite else None
            if not finite:
                self.finite(math.inf, "parameter update")
        self._params = now
