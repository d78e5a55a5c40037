"""The learned scheduler: a drop-in ``LRScheduler`` driven by a fitted meta-learner."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.ema import LossEMA
from metalr.meta.checkpoint import load_checkpoint
from metalr.meta.inputs import (
    FEATURE_SOURCES,
    GROUP_COLUMNS,
    INPUT_FEATURES,
    MAX_LOG_MULT,
    MAX_LOG_STEP,
    OBSERVED_COLUMNS,
    InputBuilder,
    cosine_factor,
    decision_interval,
)
from metalr.meta.pretrained import pretrained_path

logger = logging.getLogger(__name__)

# Keys of a pipeline trajectory row that are neither probe columns nor read by the inputs.
_ROW_KEYS = frozenset({"run_id", "epoch", "progress", "lr_change_reason", "lr_change", "res_step_time_s", "loss"})
# Attributes that state_dict() leaves out: objects, and what __init__ derives from the checkpoint.
_NOT_STATE = frozenset(
    {
        "optimizer",
        "learner",
        "inputs",
        "_recurrent",
        "tracker",
        "_loss_ema",
        "_known",
        "_unsupplied_for",
        "_unsupplied_mask",
        "needs",
        "groups",
    }
)


def _clamp(value: float, low: float, high: float) -> float:
    """``value`` within [low, high]; NaN, which min/max would let through, counts as 0 (plain cosine)."""
    if math.isnan(value):
        value = 0.0
    return min(max(value, low), high)


class MetaScheduler(LRScheduler):
    """lr = base_lr * cosine(progress) * exp(a), with ``a`` chosen by the meta-learner.

    Call ``observe(...)`` after each optimizer step, then ``step()``. ``observe`` takes a
    mapping of trajectory columns (a pipeline row) and/or keywords; ``loss=`` (this batch's
    loss) feeds the loss EMA, and the step and LR default to the scheduler's own. With
    ``attach(model)`` (or ``from_pretrained(..., model=model)``) the gradient inputs are
    measured for you by a ``FeatureTracker``; ``observe_validation(loss)`` adds validation.
    Every ``decision_every`` steps the learner reads the run so far and picks a new
    log-multiplier ``a``, bounded by |a| <= ln 10 and by a x2 change per decision.

    A decision whose normalised input lies more than ``fallback_z`` meta-training standard
    deviations from the mean is out of distribution; inputs whose columns the run has not
    supplied yet hold their not-yet-seen value and are not checked (the check is on values, not
    on absence). Such decisions are always counted (``fallback_rate``); with ``fallback=True``
    the scheduler then heads back to plain cosine (a -> 0, still at most x2 per decision) and
    logs why, as a WARNING naming the input and its z the first time in a run.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        learner: nn.Module,
        budget: int,
        decision_every: int,
        features: tuple[str, ...] = INPUT_FEATURES,
        fallback_z: float = 6.0,
        fallback: bool = True,
        last_epoch: int = -1,
        loss_ema_beta: float = 0.9,
        groups: Sequence[str] | None = None,
    ):
        self.learner = learner.eval()
        self.budget = budget
        self.decision_every = decision_every
        if budget < 1 or decision_every < 1:
            raise ValueError(f"MetaScheduler: budget and decision_every must be >= 1, got {budget}, {decision_every}")
        self.features = tuple(features)
        self.fallback_z = fallback_z
        self.fallback = fallback
        self.log_mult = 0.0
        self.decisions = 0
        self.ood_decisions = 0
        self.warned_fallback = False
        self.warned_keys: list[str] = []
        self.change_reason: str | None = None
        self._recurrent = None
        self.learner.numpy_decider()  # the numpy copy of the weights, taken now rather than at the first decision
        self._known = frozenset(OBSERVED_COLUMNS) | _ROW_KEYS
        self._unsupplied_for, self._unsupplied_mask = -1, None
        self.tracker = None
        self._loss_ema = LossEMA(loss_ema_beta)
        base_lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        self.groups = None if groups is None else tuple(groups)
        unknown = sorted(set(self.groups or ()) - set(GROUP_COLUMNS))
        if unknown:
            raise ValueError(
                f"MetaScheduler: unknown input group(s) {unknown} in groups=; known: {', '.join(GROUP_COLUMNS)}"
            )
        supplied = None if groups is None else [c for g in self.groups for c in GROUP_COLUMNS[g]]
        self.inputs = InputBuilder(base_lr=base_lr, budget=budget, features=self.features, supplied=supplied)
        # What an evaluation run computes probes for: the columns this scheduler reads.
        self.needs = ("step", *self.inputs.columns)
        super().__init__(optimizer, last_epoch)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        optimizer: Optimizer,
        budget: int,
        fallback: bool = True,
        model: nn.Module | None = None,
        groups: Sequence[str] | None = None,
    ) -> MetaScheduler:
        """The scheduler of a checkpoint: a directory ``path`` (``model.safetensors`` + ``config.json``),
        or the name of one shipped with metalr (``"default"``). With ``model``, it is ``attach``-ed.
        ``groups`` (e.g. ``("loss",)``) keeps only those input groups' columns of what it observes."""
        learner, config = load_checkpoint(pretrained_path(path))
        device = optimizer.param_groups[0]["params"][0].device
        scheduler = cls(
            optimizer,
            learner.to(device),
            budget,
            decision_interval(budget, config["decision_fraction"]),
            tuple(config["features"]),
            fallback_z=config.get("fallback_z", 6.0),
            fallback=fallback,
            groups=groups,
        )
        if model is not None:
            scheduler.attach(model)
        return scheduler

    def attach(self, model: nn.Module, every: int = 1):
        """Measure the gradient inputs of ``model`` at each optimizer step (a ``FeatureTracker``)."""
        from metalr.features.tracker import FeatureTracker  # pyarrow-typed probes: only for own loops

        if self.tracker is not None:
            self.tracker.close()
        self.tracker = FeatureTracker(model, self.optimizer, every)
        return self.tracker

    @property
    def fallback_rate(self) -> float:
        """Fraction of decisions so far whose inputs were out of distribution, in [0, 1]."""
        return self.ood_decisions / self.decisions if self.decisions else 0.0

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        """Its settings and its decision counters (the fallback rate is ood_decisions / decisions)."""
        settings = {"budget": self.budget, "decision_every": self.decision_every, "fallback_z": self.fallback_z}
        counters = {"decisions": self.decisions, "ood_decisions": self.ood_decisions}
        return {**settings, "fallback": self.fallback, **counters}

    def observe(self, features: Mapping[str, object] | None = None, /, **values: object) -> None:
        """The features of the update just made: a mapping of trajectory columns and/or keywords.

        ``loss`` (the batch loss) feeds the loss EMA unless ``loss_ema`` is given; ``step`` and
        ``lr`` default to the scheduler's own; an attached tracker adds the gradient columns.
        Unknown names are ignored with one warning naming them.
        """
        row = features if features is not None else {}
        if not self._known.issuperset(row) or not self._known.issuperset(values):
            self._warn_unknown([*row, *values])
        # A pipeline row carries step, lr and the loss EMA: nothing to add, so no copy per step.
        complete = "step" in row and "lr" in row and ("loss" not in row or "loss_ema" in row)
        if values or self.tracker is not None or not complete:
            row = {**row, **values}
            if self.tracker is not None:
                row = {**self.tracker.pop(), **row}
            row.setdefault("step", self.last_epoch + 1)
            row.setdefault("lr", self.get_last_lr()[0])
            loss = row.get("loss")
            if loss is not None and "loss_ema" not in row:
                try:
                    loss = float(loss)
                except (TypeError, ValueError):
                    loss = math.nan
                if math.isfinite(loss):
                    row["loss_train"], row["loss_ema"] = loss, self._loss_ema.update(loss)
        self.inputs.update(row)

    def observe_validation(self, loss: float, metric: float | None = None) -> None:
        """A validation loss (and optionally a metric, kept as ``last_val_metric``) measured now."""
        self.inputs.update({"val_loss": loss})
        self.last_val_metric = metric

    def _warn_unknown(self, keys: list[str]) -> None:
        # Every probe column is a name a pipeline row may carry (pyarrow-typed: loaded late).
        from metalr.features import probe_columns

        self._known = self._known | frozenset(probe_columns())
        unknown = sorted({k for k in keys if k not in self._known})
        if unknown:
            # Known from now on: warned once, and off the per-step path.
            self._known = self._known | frozenset(unknown)
            self.warned_keys += unknown
            logger.warning(
                "MetaScheduler.observe: ignoring unknown feature(s) %s; known: loss, %s",
                ", ".join(unknown),
                ", ".join(OBSERVED_COLUMNS),
            )

    def get_lr(self) -> list[float]:
        factor = cosine_factor(self.last_epoch + 1, self.budget) * math.exp(self.log_mult)
        return [base * factor for base in self.base_lrs]

    def step(self, epoch=None) -> None:
        # last_epoch counts completed updates once super().step() ran; decide before it.
        upcoming = self.last_epoch + 1
        self.change_reason = None
        if upcoming > 0 and upcoming % self.decision_every == 0:
            self._decide()
        super().step(epoch)

    def _unsupplied(self) -> np.ndarray | None:
        """Mask of the inputs whose columns no observation has supplied yet; None when there are none."""
        seen = self.inputs.first
        if self._unsupplied_for != len(seen):  # columns are only ever added
            self._unsupplied_for = len(seen)
            mask = np.array([not all(c in seen for c in FEATURE_SOURCES.get(f, ())) for f in self.features])
            self._unsupplied_mask = mask if mask.any() else None
        return self._unsupplied_mask

    def _decide(self) -> None:
        vector = self.inputs.decision_vector()
        # The learner's numpy copy (no GPU sync, no torch dispatch); its normalised inputs are the
        # z-scores of the out-of-distribution check, finite as the vector is clipped and std > 0.
        decider = self.learner.numpy_decider()
        normalised = decider.normalise(vector)
        z = np.abs(normalised)
        unsupplied = self._unsupplied()
        if unsupplied is not None:
            z[unsupplied] = 0.0
        proposal, self._recurrent = decider.decide_normalised(normalised, self._recurrent)
        self.decisions += 1
        reason = f"meta decision a={proposal:+.2f}"
        worst_z = float(z.max())
        if worst_z > self.fallback_z or not math.isfinite(proposal):
            worst = int(z.argmax())
            self.ood_decisions += 1
            if self.fallback or not math.isfinite(proposal):
                name = self.features[worst]
                reason = (
                    f"meta fallback to cosine: input {name} = {vector[worst]:.3g} at {worst_z:.1f} sd "
                    f"from meta-training (> {self.fallback_z:g})"
                    if worst_z > self.fallback_z
                    else f"meta fallback to cosine: non-finite proposal {proposal}"
                )
                if not self.warned_fallback:
                    self.warned_fallback = True
                    logger.warning("%s; further fallbacks in this run are counted in fallback_rate", reason)
                proposal = 0.0
        limited = _clamp(proposal, self.log_mult - MAX_LOG_STEP, self.log_mult + MAX_LOG_STEP)
        self.log_mult = _clamp(limited, -MAX_LOG_MULT, MAX_LOG_MULT)
        self.change_reason = reason

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}
        state["inputs"] = self.inputs.state_dict()
        state["loss_ema"] = self._loss_ema.state_dict()
        state["recurrent"] = None if self._recurrent is None else _to_tensors(self._recurrent)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.inputs.load_state_dict(state.pop("inputs"))
        self._loss_ema.load_state_dict(state.pop("loss_ema"))
        recurrent = state.pop("recurrent")
        self._recurrent = None if recurrent is None else _to_arrays(recurrent)
        self.__dict__.update(state)


def _to_tensors(state):
    """The learner's carried state (numpy arrays, or nested tuples of them: LSTM, Transformer cache)
    as CPU tensors, which a weights-only ``torch.load`` of a run checkpoint accepts."""
    if isinstance(state, np.ndarray):
        return torch.from_numpy(state.copy())
    return tuple(_to_tensors(part) for part in state)


def _to_arrays(state):
    """``_to_tensors`` undone: float32 arrays, as ``learner.decide`` carries them."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().numpy().astype(np.float32)
    return tuple(_to_arrays(part) for part in state)
