"""The learned scheduler: a drop-in ``LRScheduler`` driven by a fitted meta-learner."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from metalr.meta.checkpoint import load_checkpoint
from metalr.meta.inputs import MAX_LOG_MULT, MAX_LOG_STEP, InputBuilder, cosine_factor, decision_interval


class MetaScheduler(LRScheduler):
    """lr = base_lr * cosine(progress) * exp(a), with ``a`` chosen by the meta-learner.

    Call ``observe(features)`` after each optimizer step (the features of that step), then
    ``step()``. Every ``decision_every`` steps the learner reads the run so far and picks a
    new log-multiplier ``a``, bounded by |a| <= ln 10 and by a x2 change per decision.
    """

    needs = ("loss_ema", "grad_norm", "val_loss", "lr")

    def __init__(
        self,
        optimizer: Optimizer,
        learner: nn.Module,
        budget: int,
        decision_every: int,
        last_epoch: int = -1,
    ):
        self.learner = learner.eval()
        self.budget = budget
        self.decision_every = decision_every
        self.log_mult = 0.0
        self._recurrent = None
        base_lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        self.inputs = InputBuilder(base_lr=base_lr, budget=budget)
        super().__init__(optimizer, last_epoch)

    @classmethod
    def from_pretrained(cls, path: str | Path, optimizer: Optimizer, budget: int) -> MetaScheduler:
        learner, config = load_checkpoint(path)
        device = optimizer.param_groups[0]["params"][0].device
        return cls(optimizer, learner.to(device), budget, decision_interval(budget, config["decision_fraction"]))

    def observe(self, features: Mapping[str, object]) -> None:
        self.inputs.update(features)

    def get_lr(self) -> list[float]:
        factor = cosine_factor(self.last_epoch + 1, self.budget) * math.exp(self.log_mult)
        return [base * factor for base in self.base_lrs]

    def step(self, epoch=None) -> None:
        # last_epoch counts completed updates once super().step() ran; decide before it.
        upcoming = self.last_epoch + 1
        if upcoming > 0 and upcoming % self.decision_every == 0:
            self._decide()
        super().step(epoch)

    @torch.no_grad()
    def _decide(self) -> None:
        device = next(self.learner.parameters()).device
        vector = torch.as_tensor(self.inputs.decision_vector(), device=device).view(1, 1, -1)
        proposal, self._recurrent = self.learner(vector, self._recurrent)
        proposal = float(proposal.item())
        limited = min(max(proposal, self.log_mult - MAX_LOG_STEP), self.log_mult + MAX_LOG_STEP)
        self.log_mult = min(max(limited, -MAX_LOG_MULT), MAX_LOG_MULT)

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "learner", "inputs", "_recurrent")}
        state["inputs"] = self.inputs.state_dict()
        state["recurrent"] = None if self._recurrent is None else [t.cpu() for t in self._recurrent]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.inputs.load_state_dict(state.pop("inputs"))
        recurrent = state.pop("recurrent")
        device = next(self.learner.parameters()).device
        self._recurrent = None if recurrent is None else tuple(t.to(device) for t in recurrent)
        self.__dict__.update(state)
