"""The loss EMA, shared by the pipeline's loss probe and the MetaScheduler's ``observe(loss=...)``.

Its own module, free of the probes' imports, so the scheduler loads without the pipeline's stack.
"""

from __future__ import annotations


class LossEMA:
    """Bias-corrected exponential moving average of the train loss."""

    def __init__(self, beta: float = 0.9):
        self.beta = beta
        self._avg = 0.0
        self._count = 0

    def update(self, loss: float) -> float:
        self._count += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        return self._avg / (1 - self.beta**self._count)

    def state_dict(self) -> dict:
        return {"avg": self._avg, "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self._avg, self._count = state["avg"], state["count"]
