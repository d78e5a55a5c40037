"""Loss and task metric on a held-back split, without touching training state."""

from __future__ import annotations

import torch
from torch import nn

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
