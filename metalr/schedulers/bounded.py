"""The shared contract of every feature-driven scheduler: observe, decide, stay in bounds.

``observe(features)`` reads the features the scheduler ``needs`` (NaN and inf are ignored,
counted in ``ignored_inputs`` and logged) and may propose an LR change; the next ``step()``
applies it. ``get_lr`` has no side effects (peeking at it changes nothing) and is chainable,
like torch's own schedulers: it multiplies each group's current LR, so a ``SequentialLR``
warmup hands over the LR it reached. The result is always finite and within
``[min_lr, max_lr]``, whatever was observed. At a ``SequentialLR`` milestone it starts
from the base LR, like torch's own schedulers.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping
from typing import ClassVar

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

log = logging.getLogger("metalr.schedulers")

# Default bounds relative to the base LR, for schedulers whose seed gives none.
DEFAULT_MIN_FACTOR = 1e-3
DEFAULT_MAX_FACTOR = 10.0


def initial_lr(optimizer: Optimizer) -> float:
    group = optimizer.param_groups[0]
    return float(group.get("initial_lr", group["lr"]))


class BoundedScheduler(LRScheduler, abc.ABC):
    """Base class: subclasses implement ``update(features)`` and call ``propose``."""

    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, optimizer: Optimizer, min_lr: float | None = None, max_lr: float | None = None, last_epoch: int = -1
    ):
        base = initial_lr(optimizer)
        self.min_lr = float(base * DEFAULT_MIN_FACTOR if min_lr is None else min_lr)
        self.max_lr = float(base * DEFAULT_MAX_FACTOR if max_lr is None else max_lr)
        if not (math.isfinite(self.min_lr) and math.isfinite(self.max_lr) and 0 < self.min_lr <= self.max_lr):
            raise ValueError(f"need 0 < min_lr <= max_lr, both finite; got {self.min_lr}, {self.max_lr}")
        self.ignored_inputs = 0  # public: runs.parquet's scheduler_params shows it
        self.change_reason: str | None = None
        self._factor = 1.0  # proposed since the last step(), applied by the next
        self._reason: str | None = None
        super().__init__(optimizer, last_epoch)

    # --- observation -------------------------------------------------------------------
    def observe(self, features: Mapping[str, object]) -> None:
        """Read this step's features; missing (None) ones are simply absent."""
        clean = {}
        for name in self.needs:
            value = features.get(name)
            if value is None:
                continue
            number = self.finite(value, name)
            if number is not None:
                clean[name] = number
        if clean:
            self.update(clean)

    def finite(self, value: object, name: str) -> float | None:
        """``value`` as a float, or None (ignored, counted and logged) when it is NaN, inf or not a number."""
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if math.isfinite(number):
            return number
        self.ignored_inputs += 1
        # The first time at warning level, then quietly: a diverging run may send thousands.
        level = logging.WARNING if self.ignored_inputs == 1 else logging.DEBUG
        log.log(
            level,
            "%s ignored non-finite %s=%r (%d ignored so far)",
            type(self).__name__,
            name,
            value,
            self.ignored_inputs,
        )
        return None

    @abc.abstractmethod
    def update(self, features: dict[str, float]) -> None:
        """Decide from finite features; call ``propose`` to change the LR at the next step."""

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        """The settings runs.parquet records (``scheduler_params``), with the count of ignored inputs."""
        return {"min_lr": self.min_lr, "max_lr": self.max_lr, "ignored_inputs": self.ignored_inputs}

    def propose(self, factor: float, reason: str) -> None:
        """Multiply the LR by ``factor`` at the next ``step()`` (clamped to the bounds there)."""
        if not (math.isfinite(factor) and factor > 0):
            self.finite(math.nan, "factor")
            return
        self._factor *= factor
        self._reason = reason

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # --- the LRScheduler side ------------------------------------------------------------
    def clamp(self, lr: float) -> float:
        if not math.isfinite(lr):
            return self.min_lr
        return min(max(lr, self.min_lr), self.max_lr)

    def _get_closed_form_lr(self) -> list[float]:
        """Where torch restarts a scheduler (a ``SequentialLR`` milestone): from the base LR.

        Decisions observed while an earlier scheduler of the sequence held the LR were
        relative to its LR, so they are dropped; what was learnt from them (best losses,
        smoothed statistics) is kept.
        """
        self._factor, self._reason, self.change_reason = 1.0, None, None
        return [self.clamp(base) for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        """Each group's LR times the pending factor, clamped; the factor itself is consumed by ``step()``."""
        return [self.clamp(float(group["lr"]) * self._factor) for group in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        old = [float(group["lr"]) for group in self.optimizer.param_groups]
        factor, reason = self._factor, self._reason
        super().step(epoch)
        self._factor, self._reason = 1.0, None
        if epoch is not None:  # torch's closed form (a SequentialLR milestone) set the LR and the reason
            return
        new = [float(group["lr"]) for group in self.optimizer.param_groups]
        if new == old:
            self.change_reason = None
        elif reason is None:
            self.change_reason = f"lr clamped to [{self.min_lr:.3g}, {self.max_lr:.3g}]"
        else:
            clamped = new[0] != old[0] * factor
            self.change_reason = reason + (f" (held at bound {new[0]:.3g})" if clamped else "")
