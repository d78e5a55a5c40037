"""Loss and task metric on a held-back split, without touching training state."""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn

from metalr.features.base import Probe, StepContext
from metalr.tasks.datasets import DatasetInfo


@torch.no_grad()
def evaluate_split(model: nn.Module, X: torch.Tensor, y: torch.Tensor, info: DatasetInfo) -> dict[str, float]:
    """Return {"loss": ..., metric: ...}; the metric is ``acc`` or ``mae`` (in the data's units).

    The model is put in eval mode (no dropout, BatchNorm running stats frozen) and
    restored afterwards, so evaluation never changes what training does next.
    """
    was_training = model.training
    model.eval()
    try:
        out = model(X)
        if info.kind == "classification":
            loss = nn.functional.cross_entropy(out, y)
            metric = (out.argmax(-1) == y).float().mean()
        else:
            loss = nn.functional.mse_loss(out, y)
            metric = (out - y).abs().mean() * info.target_scale
    finally:
        model.train(was_training)
    return {"loss": float(loss), info.metric: float(metric)}


def trivial_metric(y_train, y_test, info: DatasetInfo) -> float:
    """The metric of a predictor that ignores its input (majority class / train mean)."""
    if info.kind == "classification":
        majority = torch.bincount(torch.as_tensor(y_train)).argmax()
        return float((torch.as_tensor(y_test) == majority).float().mean())
    mean = torch.as_tensor(y_train).float().mean()
    return float((torch.as_tensor(y_test) - mean).abs().mean() * info.target_scale)


class ValidationProbe(Probe):
    """``val_loss`` and the task metric (``val_acc`` or ``val_mae``) on the whole validation
    split, every ``every`` steps and at the last step of the budget."""

    columns = {"val_loss": pa.float64(), "val_acc": pa.float64(), "val_mae": pa.float64()}

    def __init__(self, every: int, budget: int):
        super().__init__(every)
        self.budget = budget

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.budget

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        result = evaluate_split(ctx.model, ctx.X_val, ctx.y_val, ctx.info)
        return {"val_loss": result["loss"], f"val_{ctx.info.metric}": result[ctx.info.metric]}
