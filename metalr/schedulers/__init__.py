"""Schedulers by name: torch's classic schedules and the learned meta-scheduler."""

from __future__ import annotations

from pathlib import Path

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.schedulers.classic import CLASSIC, ValidationPlateau
from metalr.schedulers.exploration import ExplorationSchedule
from metalr.schedulers.meta import MetaScheduler

META = "meta"
EXPLORE = "explore"
SCHEDULER_NAMES = (*CLASSIC, EXPLORE, META)


def is_meta(name: str) -> bool:
    """The fitted meta-scheduler and its variants (other architectures, controls, ablations)."""
    return name == META or name.startswith(META + "-")


def build_scheduler(
    name: str, optimizer: Optimizer, budget: int, meta_checkpoint: str | Path | None = None, seed: int = 0
) -> LRScheduler:
    """Build scheduler ``name`` for a run of ``budget`` optimizer steps (``seed``: randomised schedules)."""
    if is_meta(name):
        if meta_checkpoint is None:
            raise ValueError(f"the {name!r} scheduler needs a fitted checkpoint (meta_checkpoint)")
        return MetaScheduler.from_pretrained(meta_checkpoint, optimizer, budget)
    if name == EXPLORE:
        return ExplorationSchedule(optimizer, budget, seed=seed)
    if name not in CLASSIC:
        raise ValueError(f"unknown scheduler {name!r}; known schedulers: {', '.join(SCHEDULER_NAMES)}")
    return CLASSIC[name](optimizer, budget)


__all__ = [
    "CLASSIC",
    "EXPLORE",
    "META",
    "ExplorationSchedule",
    "is_meta",
    "SCHEDULER_NAMES",
    "MetaScheduler",
    "ValidationPlateau",
    "build_scheduler",
]
