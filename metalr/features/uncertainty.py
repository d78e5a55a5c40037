"""Uncertainty probes: softmax confidence, predictive entropy, MC-dropout variance."""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn

from metalr.features.base import Probe, StepContext, isolated

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def confidence_and_entropy(logits: torch.Tensor) -> tuple[float, float]:
    """Mean max-softmax probability and mean predictive entropy (nats) over a batch of logits."""
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    return float(probs.max(-1).values.mean()), float(-(probs * log_probs).sum(-1).mean())


@torch.no_grad()
def mc_dropout_variance(model: nn.Module, inputs: torch.Tensor, passes: int, classification: bool) -> float | None:
    """Variance across ``passes`` stochastic forward passes with only dropout switched on.

    Averaged over examples and outputs (softmax probabilities for classifiers, predictions
    for regressors). None when the model has no dropout layer. BatchNorm stays in eval mode.
    """
    dropouts = [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
    if not dropouts:
        return None
    model.eval()
    for m in dropouts:
        m.train()
    outputs = []
    for _ in range(passes):
        out = model(inputs)
        outputs.append(torch.softmax(out, -1) if classification else out)
    return float(torch.stack(outputs).var(0, unbiased=False).mean())


class UncertaintyProbe(Probe):
    """On the first ``examples`` validation examples: ``unc_confidence``, ``unc_entropy``
    (classification only) and ``unc_mc_var`` (MC dropout with the model's own dropout
    rates, ``passes`` passes)."""

    columns = {"unc_confidence": pa.float64(), "unc_entropy": pa.float64(), "unc_mc_var": pa.float64()}

    def __init__(self, every: int = 30, examples: int = 256, passes: int = 8, seed: int = 0):
        super().__init__(every)
        self.examples, self.passes, self.seed = examples, passes, seed

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        classification = ctx.info.kind == "classification"
        inputs = ctx.X_val[: self.examples]
        out: dict[str, float | None] = {}
        with isolated(ctx.model, self.seed + ctx.step):
            if classification:
                ctx.model.eval()
                with torch.no_grad():
                    out["unc_confidence"], out["unc_entropy"] = confidence_and_entropy(ctx.model(inputs))
            out["unc_mc_var"] = mc_dropout_variance(ctx.model, inputs, self.passes, classification)
        return out
