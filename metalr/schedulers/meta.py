"""The learned scheduler: a drop-in ``LRScheduler`` driven by a fitted meta-learner."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.meta.checkpoint import load_checkpoint
from metalr.meta.inputs import (
    INPUT_FEATURES,
    MAX_LOG_MULT,
    MAX_LOG_STEP,
    OBSERVED_COLUMNS,
    InputBuilder,
    cosine_factor,
    decision_interval,
    feature_indices,
)

logger = logging.getLogger(__name__)


class MetaScheduler(LRScheduler):
    """lr = base_lr * cosine(progress) * exp(a), with ``a`` chosen by the meta-learner.

    Call ``observe(features)`` after each optimizer step (the features of that step), then
    ``step()``. Every ``decision_every`` steps the learner reads the run so far and picks a
    new log-multiplier ``a``, bounded by |a| <= ln 10 and by a x2 change per decision.

    A decision whose normalised input lies more than ``fallback_z`` meta-training standard
    deviations from the mean is out of distribution. Such decisions are always counted
    (``fallback_rate``); with ``fallback=True`` the scheduler then heads back to plain cosine
    (a -> 0, still at most x2 per decision) and logs why.
    """

    needs = OBSERVED_COLUMNS

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
    ):
        self.learner = learner.eval()
        self.budget = budget
        self.decision_every = decision_every
        self.feature_index = feature_indices(features)
        self.fallback_z = fallback_z
        self.fallback = fallback
        self.log_mult = 0.0
        self.decisions = 0
        self.ood_decisions = 0
        self.change_reason: str | None = None
        self._recurrent = None
        base_lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        self.inputs = InputBuilder(base_lr=base_lr, budget=budget)
        super().__init__(optimizer, last_epoch)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, optimizer: Optimizer, budget: int, fallback: bool = True
    ) -> MetaScheduler:
        """The scheduler of the checkpoint in directory ``path`` (``model.safetensors`` + ``config.json``)."""
        learner, config = load_checkpoint(path)
        device = optimizer.param_groups[0]["params"][0].device
        return cls(
            optimizer,
            learner.to(device),
            budget,
            decision_interval(budget, config["decision_fraction"]),
            tuple(config["features"]),
            fallback_z=config.get("fallback_z", 6.0),
            fallback=fallback,
        )

    @property
    def fallback_rate(self) -> float:
        """Fraction of decisions so far whose inputs were out of distribution."""
        return self.ood_decisions / self.decisions if self.decisions else 0.0

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        """Its settings and its decision counters (the fallback rate is ood_decisions / decisions)."""
        settings = {"budget": self.budget, "decision_every": self.decision_every, "fallback_z": self.fallback_z}
        counters = {"decisions": self.decisions, "ood_decisions": self.ood_decisions}
        return {**settings, "fallback": self.fallback, **counters}

    def observe(self, features: Mapping[str, object]) -> None:
        self.inputs.update(features)

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

    @torch.no_grad()
    def _decide(self) -> None:
        device = self.learner.input_mean.device
        vector = self.inputs.decision_vector()[self.feature_index]
        z = np.abs((vector - self.learner.input_mean.cpu().numpy()) / self.learner.input_std.cpu().numpy())
        tensor = torch.as_tensor(vector, device=device).view(1, 1, -1)
        proposal, self._recurrent = self.learner(tensor, self._recurrent)
        proposal = float(proposal.item())
        self.decisions += 1
        reason = f"meta decision a={proposal:+.2f}"
        if z.max() > self.fallback_z:
            self.ood_decisions += 1
            if self.fallback:
                worst = int(z.argmax())
                reason = f"meta fallback to cosine: input {worst} at {z[worst]:.1f} sd (> {self.fallback_z:g})"
                logger.info(reason)
                proposal = 0.0
        limited = min(max(proposal, self.log_mult - MAX_LOG_STEP), self.log_mult + MAX_LOG_STEP)
        self.log_mult = min(max(limited, -MAX_LOG_MULT), MAX_LOG_MULT)
        self.change_reason = reason

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "learner", "inputs", "_recurrent")}
        state["inputs"] = self.inputs.state_dict()
        state["recurrent"] = None if self._recurrent is None else _to_cpu(self._recurrent)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.inputs.load_state_dict(state.pop("inputs"))
        recurrent = state.pop("recurrent")
        device = self.learner.input_mean.device
        self._recurrent = None if recurrent is None else _to_device(recurrent, device)
        self.__dict__.update(state)


def _to_cpu(state):
    """The learner's carried state (a tensor, or a tuple of them for the LSTM) on the CPU."""
    return state.cpu() if isinstance(state, torch.Tensor) else [t.cpu() for t in state]


def _to_device(state, device):
    return state.to(device) if isinstance(state, torch.Tensor) else tuple(t.to(device) for t in state)
