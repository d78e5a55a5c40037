"""The seeds' four adaptive schedulers (../shared/SEEDS.md), parameters as the seeds give them.

Each reads trajectory features (docs/trajectory-schema.md) through ``observe`` and
changes the LR at the next ``step()``; see ``BoundedScheduler`` for the safety contract.
Directions, as tested in tests/test_adaptive_directions.py:

- curvature: sharper landscape (larger lambda_max) -> lower LR; aligned successive gradients -> higher.
- metric: no improvement in validation loss or accuracy -> LR x0.1. It never raises the LR.
- uncertainty: uncertainty above 0.05 -> LR x1.1 per evaluation, below -> x0.9.
- resource: more complex data or more resource pressure -> lower LR; bigger batch -> higher.
"""

from __future__ import annotations

import math

import psutil
import torch
from torch.optim import Optimizer

from metalr.schedulers.bounded import BoundedScheduler, initial_lr

# A relative LR change smaller than this is not worth a trajectory entry (and would only echo noise).
MIN_RELATIVE_CHANGE = 0.01


_TINY = 1e-300
# exp() of more than this overflows a float; a factor beyond it is clamped to the LR bounds anyway.
_MAX_LOG = 700.0


def _safe_exp(log_value: float) -> float:
    return math.exp(max(-_MAX_LOG, min(_MAX_LOG, log_value)))


def _ema(previous: float | None, value: float, beta: float) -> float:
    return value if previous is None else beta * previous + (1 - beta) * value


class CurvatureAdaptive(BoundedScheduler):
    """LR from the loss landscape: lr = base * (lambda_ref / lambda) * (1 + cos_gain * cos), at most c * 2 / lambda.

    ``lambda`` is the smoothed |Hessian top eigenvalue| (``curv_lambda_max``), ``lambda_ref``
    its first value in the run, ``cos`` the smoothed cosine between successive gradients
    (``grad_cos_prev``): positive means steps are too short, negative that they overshoot.
    ``c * 2 / lambda`` is the gradient-descent stability bound with margin ``c``.
    Decides whenever a new eigenvalue arrives (every ``curvature_every`` steps).
    """

    needs = ("curv_lambda_max", "grad_cos_prev")

    def __init__(
        self,
        optimizer: Optimizer,
        c: float = 0.5,
        smoothing: float = 0.5,
        cos_gain: float = 0.5,
        min_lr: float | None = None,
        max_lr: float | None = None,
    ):
        self.c, self.smoothing, self.cos_gain = c, smoothing, cos_gain
        self._base = initial_lr(optimizer)
        self._log_lambda: float | None = None
        self._log_lambda_ref: float | None = None
        self._cos = 0.0
        super().__init__(optimizer, min_lr, max_lr)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        return {**super().hyperparameters(), "c": self.c, "smoothing": self.smoothing, "cos_gain": self.cos_gain}

    def update(self, features: dict[str, float]) -> None:
        if "grad_cos_prev" in features:
            self._cos = _ema(self._cos, max(-1.0, min(1.0, features["grad_cos_prev"])), self.smoothing)
        if "curv_lambda_max" not in features:
            return
        # All in log space: lambda_max may span 1e-300..1e300 within a run, and the ratio of
        # two such values overflows a float (issue 17).
        log_lambda = math.log(max(abs(features["curv_lambda_max"]), 1e-12))
        self._log_lambda = _ema(self._log_lambda, log_lambda, self.smoothing)
        if self._log_lambda_ref is None:
            self._log_lambda_ref = self._log_lambda
        log_target = (
            math.log(self._base)
            + self._log_lambda_ref
            - self._log_lambda
            + math.log(max(1 + self.cos_gain * self._cos, _TINY))
        )
        log_bound = math.log(self.c * 2) - self._log_lambda
        why = (
            f"lambda_max {math.exp(self._log_lambda):.3g} (start {math.exp(self._log_lambda_ref):.3g}), "
            f"grad cos {self._cos:+.2f}"
        )
        if log_target > log_bound:
            log_target, why = log_bound, f"{why}: capped at c*2/lambda_max {_safe_exp(log_bound):.3g}"
        factor = _safe_exp(log_target - math.log(self.current_lr()))
        if abs(factor - 1) > MIN_RELATIVE_CHANGE:
            self.propose(factor, f"curvature {why}: lr x{factor:.3g}")


class MetricAdaptive(BoundedScheduler):
    """Cuts the LR by ``factor`` when an evaluation improves neither validation loss (relatively)
    nor validation accuracy (absolutely) by ``threshold`` over the best so far, ``patience``
    evaluations in a row. It never raises the LR: after a cut, a worse validation loss is
    what the cut is meant to wait out, and raising would undo the plateau it detected."""

    needs = ("val_loss", "val_acc")

    def __init__(
        self,
        optimizer: Optimizer,
        factor: float = 0.1,
        threshold: float = 0.01,
        patience: int = 1,
        min_lr: float | None = None,
        max_lr: float | None = None,
    ):
        self.factor, self.threshold, self.patience = factor, threshold, patience
        self._best_loss = math.inf
        self._best_acc = -math.inf
        self._bad = 0
        super().__init__(optimizer, min_lr, max_lr)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        settings = {"factor": self.factor, "threshold": self.threshold, "patience": self.patience}
        return {**super().hyperparameters(), **settings}

    def update(self, features: dict[str, float]) -> None:
        if "val_loss" not in features:  # not an evaluation step
            return
        loss, acc = features["val_loss"], features.get("val_acc")
        loss_better = loss < self._best_loss * (1 - self.threshold) if self._best_loss > 0 else loss < self._best_loss
        acc_better = acc is not None and acc > self._best_acc + self.threshold
        first = self._best_loss == math.inf
        self._best_loss = min(self._best_loss, loss)
        if acc is not None:
            self._best_acc = max(self._best_acc, acc)
        if first or loss_better or acc_better:
            self._bad = 0
            return
        self._bad += 1
        if self._bad >= self.patience:
            self._bad = 0
            shown = "" if acc is None else f", val_acc {acc:.4g} (best {self._best_acc:.4g})"
            self.propose(
                self.factor,
                f"metric: no {self.threshold:g} improvement, val_loss {loss:.4g} (best {self._best_loss:.4g})"
                f"{shown}: lr x{self.factor:g}",
            )


class UncertaintyAdaptive(BoundedScheduler):
    """Per evaluation: uncertainty above ``threshold`` -> LR x(1 + step) to explore, below -> x(1 - step).

    ``source="confidence"`` measures uncertainty as 1 - mean max-softmax probability
    (``unc_confidence``, any classifier); ``"mc_dropout"`` as the MC-dropout variance
    (``unc_mc_var``, models with dropout).
    """

    needs = ("unc_confidence", "unc_mc_var")
    SOURCES = ("confidence", "mc_dropout")

    def __init__(
        self,
        optimizer: Optimizer,
        threshold: float = 0.05,
        step: float = 0.1,
        source: str = "confidence",
        min_lr: float | None = None,
        max_lr: float | None = None,
    ):
        if source not in self.SOURCES:
            raise ValueError(f"uncertainty source must be one of {self.SOURCES}, got {source!r}")
        self.threshold, self.step_size, self.source = threshold, step, source
        super().__init__(optimizer, min_lr, max_lr)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        settings = {"threshold": self.threshold, "step_size": self.step_size, "source": self.source}
        return {**super().hyperparameters(), **settings}

    def update(self, features: dict[str, float]) -> None:
        if self.source == "confidence":
            if "unc_confidence" not in features:
                return
            name, value = "1-confidence", 1.0 - features["unc_confidence"]
        else:
            if "unc_mc_var" not in features:
                return
            name, value = "mc_var", features["unc_mc_var"]
        high = value > self.threshold
        factor = 1 + self.step_size if high else 1 - self.step_size
        relation = ">" if high else "<="
        self.propose(factor, f"uncertainty {name} {value:.3g} {relation} {self.threshold:g}: lr x{factor:g}")


# Scales that map dataset descriptors and batch size to [0, 1]: an ImageNet-sized input and
# 1000 classes count as fully complex; batch 64 is the seeds' reference batch size.
_MAX_FEATURES = 3 * 224 * 224
_MAX_CLASSES = 1000
REFERENCE_BATCH = 64


def _unit_log(value: float, top: float) -> float:
    return min(1.0, math.log1p(max(value, 0.0)) / math.log1p(top))


class ResourceAdaptive(BoundedScheduler):
    """lr = base * sqrt(batch / 64) * 10^(0.5 - s), s = w_c * complexity + w_r * pressure, in [1e-6, 1e-2].

    complexity (0..1): log-scaled number of classes and input features (``res_data_*``).
    pressure (0..1): on a GPU, utilisation (``res_gpu_util``) and memory in use
    (``res_gpu_mem_mb`` / device memory); on CPU, the slowdown against the run's best
    throughput (``res_samples_per_s``) and resident memory (``res_cpu_rss_mb`` / RAM).
    Complex data and a busy machine call for smaller steps; a bigger batch for a larger one
    (square-root scaling). ``s`` is smoothed, and the LR moves only when its target differs by
    more than ``tolerance``, so timing noise does not make it jitter. ``path`` records which
    resources it read. Timing features make its runs machine-dependent.
    """

    needs = (
        "res_gpu_util",
        "res_gpu_mem_mb",
        "res_samples_per_s",
        "res_cpu_rss_mb",
        "res_data_classes",
        "res_data_features",
    )

    def __init__(
        self,
        optimizer: Optimizer,
        batch_size: int = REFERENCE_BATCH,
        complexity_weight: float = 0.5,
        resource_weight: float = 0.5,
        smoothing: float = 0.8,
        tolerance: float = 0.1,
        min_lr: float = 1e-6,
        max_lr: float = 1e-2,
    ):
        self.batch_size, self.complexity_weight, self.resource_weight = batch_size, complexity_weight, resource_weight
        self.smoothing, self.tolerance = smoothing, tolerance
        self.path = "none"
        self._base = initial_lr(optimizer)
        self._ram_mb = psutil.virtual_memory().total / 2**20
        device = optimizer.param_groups[0]["params"][0].device
        self._gpu_mb = torch.cuda.get_device_properties(device).total_memory / 2**20 if device.type == "cuda" else 0.0
        self._best_throughput = 0.0
        self._score: float | None = None
        super().__init__(optimizer, min_lr, max_lr)

    def hyperparameters(self) -> dict[str, float | int | str | bool]:
        settings = {
            "batch_size": self.batch_size,
            "complexity_weight": self.complexity_weight,
            "resource_weight": self.resource_weight,
            "smoothing": self.smoothing,
            "tolerance": self.tolerance,
            "path": self.path,  # which resources it read: gpu, cpu or none
        }
        return {**super().hyperparameters(), **settings}

    def _pressure(self, f: dict[str, float]) -> tuple[float, str] | None:
        if "res_gpu_util" in f or "res_gpu_mem_mb" in f:
            self.path = "gpu"
            parts = []
            if "res_gpu_util" in f:
                parts.append(("gpu util", f["res_gpu_util"] / 100))
            if "res_gpu_mem_mb" in f and self._gpu_mb > 0:
                parts.append(("gpu mem", f["res_gpu_mem_mb"] / self._gpu_mb))
        elif "res_samples_per_s" in f or "res_cpu_rss_mb" in f:
            self.path = "cpu"
            parts = []
            if "res_samples_per_s" in f and f["res_samples_per_s"] > 0:
                self._best_throughput = max(self._best_throughput, f["res_samples_per_s"])
                parts.append(("cpu slowdown", 1 - f["res_samples_per_s"] / self._best_throughput))
            if "res_cpu_rss_mb" in f:
                parts.append(("rss", f["res_cpu_rss_mb"] / self._ram_mb))
        else:
            return None
        if not parts:
            return None
        values = [min(1.0, max(0.0, v)) for _, v in parts]
        return sum(values) / len(values), ", ".join(f"{n} {v:.2f}" for (n, _), v in zip(parts, values, strict=True))

    def update(self, features: dict[str, float]) -> None:
        pressure = self._pressure(features)
        if pressure is None or "res_data_features" not in features:
            return
        complexity = 0.5 * _unit_log(features.get("res_data_classes", 0.0), _MAX_CLASSES) + 0.5 * _unit_log(
            features["res_data_features"], _MAX_FEATURES
        )
        total = self.complexity_weight + self.resource_weight
        score = (self.complexity_weight * complexity + self.resource_weight * pressure[0]) / total
        self._score = _ema(self._score, score, self.smoothing)
        target = self._base * math.sqrt(self.batch_size / REFERENCE_BATCH) * 10 ** (0.5 - self._score)
        factor = self.clamp(target) / self.current_lr()
        if abs(factor - 1) > self.tolerance:
            self.propose(
                factor,
                f"resource ({self.path}) complexity {complexity:.2f}, {pressure[1]}, batch {self.batch_size}: "
                f"lr x{factor:.3g}",
            )
