"""When a training run has diverged, and why.

A run diverges on a non-finite loss, or when its smoothed training loss or its validation
loss exceeds ``factor`` times its starting value. One batch's spike never counts: the
smoothed loss is an EMA of the lower median of the last three batch losses, so a single
outlier batch (a forecasting window at 50x its series' level) never enters it.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable

# The values of runs.parquet's ``diverged_reason``.
NONFINITE_LOSS = "nonfinite_loss"
TRAIN_LOSS = "train_loss_ema"
VAL_LOSS = "val_loss"
REASONS = (NONFINITE_LOSS, TRAIN_LOSS, VAL_LOSS)


class DivergenceMonitor:
    """Fed every batch loss and every validation loss; answers the reason a run diverged, or None.

    ``start`` fixes the training loss the smoothed loss is compared with (a fork of a run
    compares with the run's start); by default it is the first smoothed value.
    """

    def __init__(self, factor: float, beta: float, start: float | None = None):
        self.factor, self.beta, self.start = factor, beta, start
        self.smoothed: float | None = None
        self.first_val: float | None = None
        self._recent: deque[float] = deque(maxlen=3)

    def train_loss(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return NONFINITE_LOSS
        self._recent.append(loss)
        # The lower median: with two losses so far, a spike in either is still left out.
        robust = statistics.median_low(self._recent)
        self.smoothed = robust if self.smoothed is None else self.beta * self.smoothed + (1 - self.beta) * robust
        if self.start is None:
            self.start = self.smoothed
        return TRAIN_LOSS if self.smoothed > self.factor * self.start else None

    def val_loss(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return NONFINITE_LOSS
        if self.first_val is None:
            self.first_val = loss
        return VAL_LOSS if loss > self.factor * self.first_val else None

    @classmethod
    def replay(cls, rows: Iterable[dict], factor: float, beta: float) -> DivergenceMonitor:
        """The monitor as it stood after ``rows`` (trajectory rows of a resumed run)."""
        monitor = cls(factor, beta)
        for row in rows:
            if row.get("loss_train") is not None:
                monitor.train_loss(row["loss_train"])
            if row.get("val_loss") is not None:
                monitor.val_loss(row["val_loss"])
        return monitor
