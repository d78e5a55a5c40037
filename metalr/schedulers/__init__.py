"""Schedulers by name: torch's classic schedules and the learned meta-scheduler."""

from __future__ import annotations

from pathlib import Path

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.schedulers.classic import CLASSIC, ValidationPlateau
from metalr.schedulers.meta import MetaScheduler

META = "meta"
SCHEDULER_NAMES = (*CLASSIC, META)


def build_scheduler(
    name: str, optimizer: Optimizer, budget: int, meta_checkpoint: str | Path | None = None
) -> LRScheduler:
    """Build scheduler ``name`` for a run of ``budget`` optimizer steps."""
    if name == META:
        if meta_checkpoint is None:
            raise ValueError("the 'meta' scheduler needs a fitted checkpoint (meta_checkpoint)")
        return MetaScheduler.from_pretrained(meta_checkpoint, optimizer, budget)
    if name not in CLASSIC:
        raise ValueError(f"unknown scheduler {name!r}; known schedulers: {', '.join(SCHEDULER_NAMES)}")
    return CLASSIC[name](optimizer, budget)


__all__ = ["CLASSIC", "META", "SCHEDULER_NAMES", "MetaScheduler", "ValidationPlateau", "build_scheduler"]
