"""Always-on probes that cost next to nothing: train loss and its EMA."""

from __future__ import annotations

import pyarrow as pa

from metalr.ema import LossEMA
from metalr.features.base import Probe, StepContext


class LossProbe(Probe):
    """``loss_train`` (this mini-batch) and ``loss_ema`` (bias-corrected EMA, factor ``beta``)."""

    columns = {"loss_train": pa.float64(), "loss_ema": pa.float64()}

    def __init__(self, beta: float = 0.9):
        super().__init__(1)
        self.ema = LossEMA(beta)

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        return {"loss_train": ctx.loss, "loss_ema": self.ema.update(ctx.loss)}

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)
