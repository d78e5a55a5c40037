"""Schedulers by name: torch's classic schedules, the published peers, the seeds' adaptive schedulers and
the learned meta-scheduler (``metalr.schedulers.registry``; ``metalr schedulers`` lists them)."""

from __future__ import annotations

from pathlib import Path

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.schedulers.adaptive import CurvatureAdaptive, MetricAdaptive, ResourceAdaptive, UncertaintyAdaptive
from metalr.schedulers.bounded import BoundedScheduler
from metalr.schedulers.classic import CLASSIC, ValidationPlateau
from metalr.schedulers.exploration import ExplorationSchedule
from metalr.schedulers.meta import MetaScheduler
from metalr.schedulers.peers import Hypergradient, evaluation_weights, schedule_free_optimizer
from metalr.schedulers.registry import REGISTRY, is_meta, owns_optimizer, peer_optimizer

META = "meta"
SCHEDULER_NAMES = tuple(REGISTRY)
# Schedulers that read timing or memory features (res_*): their runs differ between machines
# and between otherwise identical runs, like the timing columns themselves.
MACHINE_DEPENDENT = ("resource", "meta-plus-resources")
ADAPTIVE = tuple(name for name, entry in REGISTRY.items() if entry.kind == "adaptive")


def build_scheduler(
    name: str,
    optimizer: Optimizer,
    budget: int,
    meta_checkpoint: str | Path | None = None,
    *,
    batch_size: int = 64,
    seed: int = 0,
) -> LRScheduler:
    """Build scheduler ``name`` for a run of ``budget`` optimizer steps.

    ``batch_size`` is read only by the resource-aware scheduler, ``seed`` only by the
    randomised exploration schedule. The peers that own the optimizer (``owns_optimizer``:
    schedulefree, prodigy, dadapt-adam, mechanic) need it from ``peer_optimizer``; names
    starting with "meta" load ``meta_checkpoint``.
    """
    if is_meta(name):
        if meta_checkpoint is None:
            raise ValueError(f"the {name!r} scheduler needs a fitted checkpoint (meta_checkpoint)")
        return MetaScheduler.from_pretrained(meta_checkpoint, optimizer, budget)
    entry = REGISTRY.get(name)
    if entry is None or entry.build is None:
        raise ValueError(f"unknown scheduler {name!r}; known schedulers: {', '.join(SCHEDULER_NAMES)}")
    return entry.build(optimizer, budget, batch_size, seed)


__all__ = [
    "ADAPTIVE",
    "MACHINE_DEPENDENT",
    "CLASSIC",
    "META",
    "ExplorationSchedule",
    "is_meta",
    "REGISTRY",
    "SCHEDULER_NAMES",
    "BoundedScheduler",
    "CurvatureAdaptive",
    "Hypergradient",
    "MetaScheduler",
    "MetricAdaptive",
    "ResourceAdaptive",
    "UncertaintyAdaptive",
    "ValidationPlateau",
    "build_scheduler",
    "evaluation_weights",
    "owns_optimizer",
    "peer_optimizer",
    "schedule_free_optimizer",
]
