"""Every scheduler by name, with a one-line description (``metalr schedulers`` prints them).

Importing this table does not import torch: each builder names its scheduler as
"module.attribute" in ``metalr.schedulers`` and imports it when a run builds one, so
``metalr schedulers`` answers without torch's start-up (tests/test_cli.py checks).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # classic | peer | adaptive | meta
    description: str
    build: Callable[[Optimizer, int, int, int], LRScheduler] | None  # (optimizer, budget, batch_size, seed)
    own_optimizer: bool = False  # the run swaps the task's optimizer for this scheduler's


def _lazy(path: str) -> Any:
    """``"peers.Hypergradient"`` -> metalr.schedulers.peers.Hypergradient, imported now."""
    module, attribute = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"metalr.schedulers.{module}"), attribute)


def _classic(name: str, description: str) -> Entry:
    return Entry(
        name,
        "classic",
        description,
        lambda optimizer, budget, batch_size, seed: _lazy("classic.CLASSIC")[name](optimizer, budget),
    )


def _adaptive(name: str, description: str, cls: str, kind: str = "adaptive") -> Entry:
    return Entry(name, kind, description, lambda optimizer, budget, batch_size, seed: _lazy(cls)(optimizer))


REGISTRY: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        _classic("constant", "the base LR throughout (LambdaLR of 1)"),
        _classic("step", "StepLR: x0.1 every third of the budget"),
        _classic("exponential", "ExponentialLR: decays to 1% of the base LR at the budget"),
        _classic("cosine", "CosineAnnealingLR over the budget, down to 0"),
        _classic("plateau", "ReduceLROnPlateau on validation loss: x0.1 after 2 evaluations without 1% gain"),
        _classic("warmup-cosine", "SequentialLR: LinearLR warmup over 5% of the budget, then cosine"),
        _classic("onecycle", "OneCycleLR peaking at the base LR after 30% of the budget"),
        Entry(
            "schedulefree",
            "peer",
            "Schedule-Free AdamW/SGD (schedulefree package), 5% linear warmup, then no schedule",
            lambda optimizer, budget, batch_size, seed: _lazy("peers.schedule_free_warmup")(optimizer, budget),
            own_optimizer=True,
        ),
        _adaptive(
            "hypergradient",
            "hypergradient descent (Baydin et al. 2018), multiplicative, LR kept positive",
            "peers.Hypergradient",
            kind="peer",
        ),
        _adaptive(
            "curvature",
            "LR from Hessian lambda_max and gradient alignment, capped at c*2/lambda_max, smoothed",
            "adaptive.CurvatureAdaptive",
        ),
        _adaptive(
            "metric",
            "x0.1 when validation loss and accuracy stop improving by 0.01; never raises",
            "adaptive.MetricAdaptive",
        ),
        _adaptive(
            "uncertainty",
            "x1.1 per evaluation while 1 - softmax confidence > 0.05, else x0.9",
            "adaptive.UncertaintyAdaptive",
        ),
        Entry(
            "resource",
            "adaptive",
            "LR from dataset complexity and GPU (or CPU) load and batch size, in [1e-6, 1e-2]",
            lambda optimizer, budget, batch_size, seed: _lazy("adaptive.ResourceAdaptive")(
                optimizer, batch_size=batch_size
            ),
        ),
        Entry(
            "explore",
            "exploration",
            "random log-multiplier walk on cosine (meta-training collection), redrawn every 10% of the budget",
            lambda optimizer, budget, batch_size, seed: _lazy("exploration.ExplorationSchedule")(
                optimizer, budget, seed=seed
            ),
        ),
        Entry("meta", "meta", "the fitted meta-scheduler (needs a checkpoint; added to every evaluation)", None),
    )
}


def is_meta(name: str) -> bool:
    return name == "meta" or name.startswith("meta-")


def owns_optimizer(name: str) -> bool:
    entry = REGISTRY.get(name)
    return entry is not None and entry.own_optimizer
