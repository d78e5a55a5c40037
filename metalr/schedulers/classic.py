"""The classic baselines, as torch's own schedulers with settings scaled to the budget."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

WARMUP_FRACTION = 0.05  # warmup+cosine and WSD: linear warmup over this fraction of the budget
COOLDOWN_FRACTION = 0.2  # WSD: the 1 - sqrt cooldown takes the last fifth of the budget (Hägele et al. 2024)


class _Unit:
    """A picklable ``lambda _: 1.0``, so LambdaLR's state_dict carries it."""

    def __call__(self, _: int) -> float:
        return 1.0


def constant(optimizer: Optimizer, budget: int) -> LRScheduler:
    # Not ConstantLR: its defaults scale the LR by 1/3 for the first 5 steps.
    return LambdaLR(optimizer, _Unit())


def step(optimizer: Optimizer, budget: int) -> LRScheduler:
    return StepLR(optimizer, step_size=math.ceil(budget / 3), gamma=0.1)


def exponential(optimizer: Optimizer, budget: int) -> LRScheduler:
    return ExponentialLR(optimizer, gamma=0.01 ** (1.0 / budget))


def cosine(optimizer: Optimizer, budget: int) -> LRScheduler:
    return CosineAnnealingLR(optimizer, T_max=budget)


def linear(optimizer: Optimizer, budget: int) -> LRScheduler:
    """LinearLR from the base LR down to zero at the budget: update k uses base x (1 - k / budget)."""
    return LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=budget)


class WarmupStableDecay:
    """The warmup-stable-decay factor of update ``k``: (k + 1) / W over the first W = 5% of the
    budget, then 1, then 1 - sqrt((k - s) / C) over the last C = 20%, from s = budget - C.

    A picklable callable, so LambdaLR's state_dict carries it.
    """

    def __init__(self, budget: int):
        self.warmup = max(1, round(WARMUP_FRACTION * budget))
        self.cooldown = max(1, round(COOLDOWN_FRACTION * budget))
        self.decay_start = budget - self.cooldown

    def __call__(self, k: int) -> float:
        if k < self.warmup:
            return (k + 1) / self.warmup
        if k >= self.decay_start:
            return max(0.0, 1.0 - math.sqrt((k - self.decay_start) / self.cooldown))
        return 1.0


def wsd(optimizer: Optimizer, budget: int) -> LRScheduler:
    return LambdaLR(optimizer, WarmupStableDecay(budget))


def warmup_cosine(optimizer: Optimizer, budget: int) -> LRScheduler:
    """LinearLR from 10% to 100% of the base LR over 5% of the budget, then cosine to zero."""
    warmup = max(1, round(WARMUP_FRACTION * budget))
    return SequentialLR(
        optimizer,
        [
            LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup),
            CosineAnnealingLR(optimizer, T_max=budget - warmup),
        ],
        milestones=[warmup],
    )


def one_cycle(optimizer: Optimizer, budget: int) -> LRScheduler:
    """torch's OneCycleLR peaking at the base LR, with its defaults (30% rise, cycled momentum)."""
    peak = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    # +1: the loop steps the scheduler after every update, the last one included, and
    # OneCycleLR refuses to be stepped past total_steps.
    return OneCycleLR(optimizer, max_lr=peak, total_steps=budget + 1)


class ValidationPlateau(ReduceLROnPlateau):
    """ReduceLROnPlateau on validation loss that fits the observe-then-step loop.

    ``observe`` records a validation loss when the features carry one; ``step()`` only
    counts evaluations, so ``patience`` is measured in evaluations, not optimizer steps.
    """

    needs = ("val_loss",)

    def __init__(self, optimizer: Optimizer, patience: int = 2, factor: float = 0.1, threshold: float = 0.01):
        super().__init__(optimizer, mode="min", factor=factor, patience=patience, threshold=threshold)
        self._pending: float | None = None

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        names = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")
        return {name: getattr(self, name) for name in names}

    def observe(self, features: Mapping[str, object]) -> None:
        value = features.get("val_loss")
        if value is not None and math.isfinite(float(value)):
            self._pending = float(value)

    def step(self, metrics: float | None = None, epoch=None) -> None:
        if metrics is None:
            metrics, self._pending = self._pending, None
        if metrics is not None:
            super().step(metrics)


def plateau(optimizer: Optimizer, budget: int) -> LRScheduler:
    return ValidationPlateau(optimizer)


CLASSIC = {
    "constant": constant,
    "step": step,
    "exponential": exponential,
    "cosine": cosine,
    "plateau": plateau,
    "warmup-cosine": warmup_cosine,
    "onecycle": one_cycle,
    "linear": linear,
    "wsd": wsd,
}
