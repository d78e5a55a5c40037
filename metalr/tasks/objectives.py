"""Loss and predictions by task kind: cross-entropy, mean squared error, or CTC."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # metalr.tasks.splits needs scikit-learn, a [pipeline] package
    from metalr.tasks.splits import DatasetInfo

Batch = dict[str, torch.Tensor]


def forward(model: nn.Module, batch: Batch):
    """The model's output on a batch; CTC models read the columns they name in ``model.inputs``."""
    names = getattr(model, "inputs", ("X",))
    return model(*(batch[name] for name in names))


def loss_from_output(output, batch: Batch, info: DatasetInfo) -> torch.Tensor:
    if info.kind == "classification":
        return nn.functional.cross_entropy(output, batch["y"].long())
    if info.kind == "regression":
        return nn.functional.mse_loss(output, batch["y"])
    log_probs, frames = output
    return nn.functional.ctc_loss(
        log_probs.transpose(0, 1), batch["y"], frames, batch["M"], blank=0, zero_infinity=True
    )


def batch_loss(model: nn.Module, batch: Batch, info: DatasetInfo) -> torch.Tensor:
    return loss_from_output(forward(model, batch), batch, info)


def target_loss(info: DatasetInfo):
    """``loss(output, targets)`` for probes that recompute the loss on (sub-)batches."""

    def loss(output, targets: torch.Tensor) -> torch.Tensor:
        return loss_from_output(output, {"y": targets}, info)

    return loss
