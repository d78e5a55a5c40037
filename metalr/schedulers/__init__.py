"""Schedulers by name: torch's classic schedules, the published peers, the seeds' adaptive schedulers and
the learned meta-scheduler (``metalr.schedulers.registry``; ``metalr schedulers`` lists them).

The scheduler classes are imported on first use (PEP 562 ``__getattr__``), so the names
and the registry load without torch: ``metalr schedulers`` answers in well under a second.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from metalr.schedulers.registry import DEPLOYMENTS, REGISTRY, is_meta, owns_optimizer, peer_optimizer

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

    from metalr.schedulers.adaptive import CurvatureAdaptive, MetricAdaptive, ResourceAdaptive, UncertaintyAdaptive
    from metalr.schedulers.bounded import BoundedScheduler
    from metalr.schedulers.classic import CLASSIC, ValidationPlateau
    from metalr.schedulers.exploration import ExplorationSchedule
    from metalr.schedulers.meta import MetaScheduler
    from metalr.schedulers.peers import Hypergradient, evaluation_weights, schedule_free_optimizer

_LAZY = {
    "CurvatureAdaptive": "adaptive",
    "MetricAdaptive": "adaptive",
    "ResourceAdaptive": "adaptive",
    "UncertaintyAdaptive": "adaptive",
    "BoundedScheduler": "bounded",
    "CLASSIC": "classic",
    "ValidationPlateau": "classic",
    "ExplorationSchedule": "exploration",
    "MetaScheduler": "meta",
    "Hypergradient": "peers",
    "evaluation_weights": "peers",
    "schedule_free_optimizer": "peers",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"metalr.schedulers.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'metalr.schedulers' has no attribute {name!r}")


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
        from metalr.schedulers.meta import MetaScheduler

        deployment = DEPLOYMENTS.get(name)
        groups = deployment.groups if deployment is not None else None
        return MetaScheduler.from_pretrained(meta_checkpoint, optimizer, budget, groups=groups)
    entry = REGISTRY.get(name)
    if entry is None or entry.build is None:
        raise ValueError(f"unknown scheduler {name!r}; known schedulers: {', '.join(SCHEDULER_NAMES)}")
    return entry.build(optimizer, budget, batch_size, seed)


def hyperparameters(scheduler: LRScheduler) -> dict[str, float | int | str | bool]:
    """A scheduler's settings, as runs.parquet records them (``scheduler_params``).

    Ours report theirs through ``hyperparameters()``; torch's own schedulers have no such
    method, so theirs are the constructor arguments they keep under the same name.
    """
    report = getattr(scheduler, "hyperparameters", None)
    if report is not None:
        return report()
    arguments = inspect.signature(type(scheduler).__init__).parameters
    kept = {name: getattr(scheduler, name, None) for name in arguments if name not in ("self", "last_epoch")}
    return {name: value for name, value in kept.items() if isinstance(value, (int, float, str, bool))}


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
    "hyperparameters",
    "owns_optimizer",
    "peer_optimizer",
    "schedule_free_optimizer",
]
