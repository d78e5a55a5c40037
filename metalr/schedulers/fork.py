"""The branching expert's fork schedule: hold an LR, then anneal it with cosine to 0 at the budget.

Not a registered scheduler: forks continue a source run's snapshot through the training loop
(``metalr.train.run_loop``) with this schedule in place of the source's.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def fork_lr(step: int, start: int, lr0: float, hold: int, budget: int) -> float:
    """The LR of a fork's update ``step``: lr0 for ``hold`` updates, then cosine from lr0 to 0 at ``budget``."""
    end = start + hold
    if step <= end or budget <= end:
        return lr0
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * (step - end) / (budget - end)))


class HoldThenAnneal(LRScheduler):
    """``fork_lr`` as a scheduler for a loop that resumes after update ``start``."""

    def __init__(self, optimizer: Optimizer, start: int, lr0: float, hold: int, budget: int) -> None:
        self.start, self.lr0, self.hold, self.budget = start, lr0, hold, budget
        for group in optimizer.param_groups:
            group["initial_lr"] = lr0  # the snapshot's optimizer carries the source schedule's
        super().__init__(optimizer, last_epoch=-1)

    def get_lr(self) -> list[float]:
        # last_epoch counts this scheduler's steps; the optimizer's next update is start + 1 + last_epoch.
        lr = fork_lr(self.start + 1 + self.last_epoch, self.start, self.lr0, self.hold, self.budget)
        return [lr for _ in self.optimizer.param_groups]

    def hyperparameters(self) -> dict:
        return {"start": self.start, "lr0": self.lr0, "hold": self.hold, "budget": self.budget}
