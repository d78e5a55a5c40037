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
    # For a peer that owns the optimizer: the optimizer the run trains with in place of the task's,
    # from (the task's optimizer, its kind, the base-LR multiplier of the grid).
    optimizer: Callable[[Optimizer, str, float], Optimizer] | None = None


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


def _replace(path: str) -> Callable[[Optimizer, str, float], Optimizer]:
    return lambda optimizer, kind, lr_multiplier: _lazy(path)(optimizer, kind, lr_multiplier)


def _owner(name: str, description: str, replace: str) -> Entry:
    return Entry(
        name,
        "peer",
        description,
        lambda optimizer, budget, batch_size, seed: _lazy("peers.owned_cosine")(name, optimizer, budget),
        optimizer=_replace(replace),
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
        _classic("linear", "LinearLR from the base LR down to 0 at the budget (linear decay to zero)"),
        _classic("wsd", "warmup-stable-decay (LambdaLR): 5% linear warmup, constant, 1-sqrt cooldown in the last 20%"),
        Entry(
            "schedulefree",
            "peer",
            "owns the optimizer: Schedule-Free AdamW/SGD (schedulefree), 5% linear warmup, then no schedule",
            lambda optimizer, budget, batch_size, seed: _lazy("peers.schedule_free_warmup")(optimizer, budget),
            optimizer=_replace("peers.replace_with_schedule_free"),
        ),
        _owner(
            "prodigy",
            "owns the optimizer: Prodigy (prodigyopt) at lr 1 with cosine; the base-LR grid scales d_coef",
            "peers.replace_with_prodigy",
        ),
        _owner(
            "dadapt-adam",
            "owns the optimizer: D-Adaptation Adam (dadaptation) at lr 1 with cosine; the base-LR grid scales lr",
            "peers.replace_with_dadapt_adam",
        ),
        _owner(
            "mechanic",
            "owns the optimizer: Mechanic (mechanic-pytorch) wrapping the task's optimizer, cosine on its LR",
            "peers.replace_with_mechanic",
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


@dataclass(frozen=True)
class Deployment:
    """A fitted meta-learner variant run with fewer input groups than it reads, as a user's loop
    that computes only some of them would run it: evaluated as its own variant, never fitted."""

    source: str  # the fitted variant whose checkpoint it runs
    groups: tuple[str, ...]  # the input groups it is given
    about: str


LOSS_ONLY = "meta-loss-only"
DEPLOYMENTS = {
    LOSS_ONLY: Deployment("meta", ("loss",), "the main model given only the training loss (no other probe)"),
}


def owns_optimizer(name: str) -> bool:
    entry = REGISTRY.get(name)
    return entry is not None and entry.optimizer is not None


def peer_optimizer(name: str, optimizer: Optimizer, kind: str, lr_multiplier: float = 1.0) -> Optimizer:
    """The optimizer peer ``name`` trains with in place of ``optimizer`` (the task's, of ``kind``
    adam | adamw | sgd, not yet stepped); ``lr_multiplier`` is the base-LR grid's point, which
    Prodigy applies to d_coef and D-Adaptation to lr. Every other scheduler keeps ``optimizer``."""
    entry = REGISTRY.get(name)
    if entry is None or entry.optimizer is None:
        return optimizer
    return entry.optimizer(optimizer, kind, lr_multiplier)
