"""Randomised exploration schedules for meta-training collection."""

from __future__ import annotations

import math

import numpy as np
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.meta.inputs import MAX_LOG_MULT, cosine_factor


class ExplorationSchedule(LRScheduler):
    """lr = base * cosine(progress) * exp(a_k), with a_k a random walk redrawn every ``segment`` of the budget.

    Collected with it, the meta-learner's training runs visit LRs that are too high and too
    low for a while, so the branching expert can label how to recover from such states.
    The walk is drawn once from ``seed`` and kept in ``state_dict``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        budget: int,
        seed: int = 0,
        segment: float = 0.1,
        sigma: float = 0.7,
        last_epoch: int = -1,
    ):
        self.budget = budget
        self.segment_steps = max(1, round(segment * budget))
        rng = np.random.default_rng(seed)
        walk = np.cumsum(rng.normal(0.0, sigma, size=math.ceil(budget / self.segment_steps) + 1))
        self.log_mults = [float(v) for v in np.clip(walk - walk[0], -MAX_LOG_MULT, MAX_LOG_MULT)]
        self.change_reason = "exploration: random log-multiplier walk"
        super().__init__(optimizer, last_epoch)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        return {"budget": self.budget, "segment_steps": self.segment_steps}

    def get_lr(self) -> list[float]:
        update = self.last_epoch + 1
        factor = cosine_factor(update, self.budget) * math.exp(self.log_mults[(update - 1) // self.segment_steps])
        return [base * factor for base in self.base_lrs]
