"""What the meta-learner sees: per-run normalised inputs, built the same way offline and online.

Both the dataset builder (reading Parquet rows) and the MetaScheduler (reading live
features) feed one ``InputBuilder`` step by step, so training and deployment cannot drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

INPUT_FEATURES = (
    "progress",  # step / budget
    "log_loss_rel",  # log(loss EMA / first loss EMA)
    "loss_slope",  # log(loss EMA / loss EMA at the previous decision)
    "log_grad_rel",  # log(grad norm / first grad norm)
    "log_val_rel",  # log(last val loss / first val loss), 0 before the first evaluation
    "val_seen",  # 1 once a validation loss has been observed
    "log_lr_rel",  # log(current LR / base LR)
)
MAX_LOG_MULT = math.log(10.0)  # |a| <= ln 10
MAX_LOG_STEP = math.log(2.0)  # at most x2 change per decision
_CLIP = 10.0
_EPS = 1e-12


def cosine_factor(update: int, budget: int) -> float:
    """The default schedule's multiplier for optimizer update ``update`` (1-based).

    Identical to ``CosineAnnealingLR(T_max=budget)`` stepped once per update.
    """
    return 0.5 * (1.0 + math.cos(math.pi * (update - 1) / budget))


def decision_interval(budget: int, fraction: float) -> int:
    return max(1, round(budget * fraction))


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _log_ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0
    return math.log(max(a, _EPS) / max(b, _EPS))


class InputBuilder:
    """Turns a stream of per-step features into the meta-learner's input vectors."""

    def __init__(self, base_lr: float, budget: int):
        self.base_lr = base_lr
        self.budget = budget
        self.state: dict[str, float | None] = dict.fromkeys(
            ("step", "loss0", "loss", "loss_ref", "grad0", "grad", "val0", "val", "lr"), None
        )

    def update(self, features: Mapping[str, object]) -> None:
        s = self.state
        s["step"] = _finite(features.get("step")) or s["step"]
        loss = _finite(features.get("loss_ema"))
        if loss is not None:
            s["loss"] = loss
            s["loss0"] = s["loss0"] if s["loss0"] is not None else loss
            s["loss_ref"] = s["loss_ref"] if s["loss_ref"] is not None else loss
        grad = _finite(features.get("grad_norm"))
        if grad is not None:
            s["grad"] = grad
            s["grad0"] = s["grad0"] if s["grad0"] is not None else grad
        val = _finite(features.get("val_loss"))
        if val is not None:
            s["val"] = val
            s["val0"] = s["val0"] if s["val0"] is not None else val
        lr = _finite(features.get("lr"))
        if lr is not None:
            s["lr"] = lr

    def decision_vector(self) -> np.ndarray:
        """The input for a decision now; also resets the reference for the loss slope."""
        s = self.state
        vector = np.array(
            [
                (s["step"] or 0.0) / self.budget,
                _log_ratio(s["loss"], s["loss0"]),
                _log_ratio(s["loss"], s["loss_ref"]),
                _log_ratio(s["grad"], s["grad0"]),
                _log_ratio(s["val"], s["val0"]),
                0.0 if s["val"] is None else 1.0,
                _log_ratio(s["lr"], self.base_lr),
            ],
            dtype=np.float32,
        )
        s["loss_ref"] = s["loss"]
        return np.clip(vector, -_CLIP, _CLIP)

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: Mapping[str, float | None]) -> None:
        self.state = dict(state)
