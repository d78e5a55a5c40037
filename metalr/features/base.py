"""The probe interface: what a probe sees of a training step, and when it runs.

A probe is a small object with one job. The training loop calls its hooks at fixed
points of every step; the probe decides from its cadence whether to measure, and returns
a dict of trajectory columns. Probes must never change training: they do not draw from
the training RNG, update BatchNorm statistics, or leave gradients behind
(``isolated`` below makes that easy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import torch
from torch import nn

if TYPE_CHECKING:  # metalr.tasks.splits needs scikit-learn, a [pipeline] package
    from metalr.tasks.splits import DatasetInfo


@dataclass
class StepContext:
    """Everything about the current step that a probe may read."""

    step: int
    model: nn.Module
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor
    loss: float
    lr: float
    info: DatasetInfo
    X_val: torch.Tensor  # validation inputs as the model sees them (after the input transform)
    y_val: torch.Tensor
    step_time_s: float = 0.0
    val_split: dict[str, torch.Tensor] | None = None  # every column of the validation split


class Probe:
    """Base class. Subclasses set ``columns`` and override the hooks they need."""

    columns: ClassVar[dict[str, pa.DataType]] = {}

    def __init__(self, every: int = 1):
        if every < 1:
            raise ValueError(f"{type(self).__name__}: cadence 'every' must be >= 1, got {every}")
        self.every = every

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        """Gradients of this step are in ``.grad``; the optimizer has not stepped yet."""
        return {}

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        """The optimizer has stepped; the step's timing is known."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state

    @classmethod
    def hooks(cls, probes: list[Probe], name: str) -> list:
        """Bound ``name`` hooks of the probes that override it, so the loop skips no-ops."""
        return [getattr(p, name) for p in probes if getattr(type(p), name) is not getattr(Probe, name)]


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def flat_grad(params: list[nn.Parameter]) -> torch.Tensor:
    return flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])


@contextlib.contextmanager
def isolated(model: nn.Module, seed: int) -> Iterator[None]:
    """Run extra forward passes without touching training state.

    The global RNG is forked and seeded (so dropout in a probe is reproducible and the
    training RNG stream is untouched), every buffer (BatchNorm running statistics) is
    restored afterwards, and the train/eval mode of every module is restored.
    """
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    modes = {m: m.training for m in model.modules()}
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), torch.backends.cudnn.flags(enabled=False):
        torch.manual_seed(seed)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
            for module, mode in modes.items():
                module.train(mode)
