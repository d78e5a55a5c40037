"""Two published self-tuning peers: Schedule-Free AdamW and hypergradient descent."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import schedulefree
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler

from metalr.schedulers.bounded import BoundedScheduler

# --- Schedule-Free (Defazio et al. 2024; the AlgoPerf self-tuning track's winner) -------------

SCHEDULE_FREE_WARMUP = 0.05  # fraction of the budget, as in the AlgoPerf submission's linear warmup


def is_schedule_free(optimizer: Optimizer) -> bool:
    return "train_mode" in optimizer.param_groups[0] and callable(getattr(optimizer, "eval", None))


def schedule_free_optimizer(
    kind: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0
) -> Optimizer:
    """The Schedule-Free counterpart of a task's optimizer, in train mode.

    Adam and AdamW tasks get ``AdamWScheduleFree`` (decoupled weight decay), SGD tasks
    ``SGDScheduleFree`` with the task's momentum 0.9. Its own warmup is off: the
    ``schedulefree`` scheduler below does the same linear warmup on ``lr``, so the
    trajectory's ``lr`` column shows the LR each update really used.
    """
    if kind == "sgd":
        optimizer = schedulefree.SGDScheduleFree(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        optimizer = schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=weight_decay)
    optimizer.train()
    return optimizer


def schedule_free_warmup(optimizer: Optimizer, budget: int) -> LRScheduler:
    """Linear warmup over 5% of the budget, then constant: the schedule Schedule-Free wants.

    The same values as the optimizer's own ``warmup_steps`` ((k + 1) / W for update k < W).
    """
    if not is_schedule_free(optimizer):
        raise ValueError(
            "the 'schedulefree' scheduler needs a Schedule-Free optimizer: build it with "
            "metalr.schedulers.peers.schedule_free_optimizer(...)"
        )
    warmup = max(1, round(SCHEDULE_FREE_WARMUP * budget))
    # LinearLR cannot take total_iters=0; one warmup step means no warmup at all.
    return LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1))


@contextlib.contextmanager
def evaluation_weights(optimizer: Optimizer) -> Iterator[None]:
    """Inside: the model holds the weights to evaluate or save (Schedule-Free's averaged x);
    after: the training weights again. A no-op for every other optimizer."""
    switch = is_schedule_free(optimizer) and optimizer.param_groups[0]["train_mode"]
    if switch:
        optimizer.eval()
    try:
        yield
    finally:
        if switch:
            optimizer.train()


def on_evaluation_weights(hook: Callable, due: Callable[[int], bool], optimizer: Optimizer) -> Callable:
    """A probe hook that runs on the evaluation weights on the steps it is ``due``."""

    def wrapped(ctx):
        if not due(ctx.step):
            return hook(ctx)
        with evaluation_weights(optimizer):
            return hook(ctx)

    return wrapped


# --- Hypergradient descent (Baydin et al. 2018) -----------------------------------------------


class Hypergradient(BoundedScheduler):
    """Multiplicative hypergradient descent: lr_t = lr_{t-1} * (1 + beta * cos(g_t, -d_{t-1})).

    ``g_t`` is this update's gradient and ``d_{t-1}`` the previous update (the parameters'
    actual change, so it works for any optimizer: SGD, momentum, Adam). d(loss)/d(lr) is
    proportional to -g_t . d_{t-1}: when the new gradient still points along the last step,
    the step was too short and the LR grows; when it points back, the LR shrinks. The cosine
    form (Baydin et al.'s multiplicative rule) makes ``beta`` a per-step relative change,
    independent of the gradient's scale. The LR is clamped to [min_lr, max_lr], min_lr > 0,
    so it can never reach zero or go negative. Reads the optimizer's parameters and
    gradients on every ``step()``: call it after ``optimizer.step()`` and before zeroing them.
    """

    def __init__(
        self, optimizer: Optimizer, beta: float = 0.02, min_lr: float | None = None, max_lr: float | None = None
    ):
        self.beta = beta
        self._params: list[torch.Tensor] | None = None  # parameters after the previous update
        self._update: list[torch.Tensor] | None = None  # the previous update
        super().__init__(optimizer, min_lr, max_lr)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        return {**super().hyperparameters(), "beta": self.beta}

    def _tensors(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def update(self, features: dict[str, float]) -> None:
        del features  # reads the optimizer, not the trajectory

    def step(self, epoch: int | None = None) -> None:
        if self._step_count > 0:  # not the constructor's initial step: an update has happened
            self._hypergradient()
        super().step(epoch)

    @torch.no_grad()
    def _hypergradient(self) -> None:
        params = self._tensors()
        now = [p.detach().clone() for p in params]
        if self._update is not None and all(p.grad is not None for p in params):
            dot = sum(float((p.grad * -u).sum()) for p, u in zip(params, self._update, strict=True))
            g_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))
            u_norm = math.sqrt(sum(float(u.pow(2).sum()) for u in self._update))
            cosine = self.finite(dot / (g_norm * u_norm) if g_norm * u_norm != 0 else 0.0, "gradient cosine")
            if cosine is not None:
                factor = 1 + self.beta * max(-1.0, min(1.0, cosine))
                self.propose(factor, f"hypergradient cos(g, -prev update) {cosine:+.3f}: lr x{factor:.4f}")
        if self._params is not None:
            update = [n - p for n, p in zip(now, self._params, strict=True)]
            # A non-finite update would poison every later cosine: forget it instead.
            finite = all(bool(torch.isfinite(u).all()) for u in update)
            self._update = update if finite else None
            if not finite:
                self.finite(math.inf, "parameter update")
        self._params = now
