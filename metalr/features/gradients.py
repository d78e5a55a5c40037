"""Gradient probes: norm, geometry between consecutive steps, and mini-batch noise."""

from __future__ import annotations

import math

import pyarrow as pa
import torch

from metalr.features.base import Probe, StepContext, flat, flat_grad, isolated

_F = pa.float64()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class GradNormProbe(Probe):
    """Global L2 norm of the gradient.

    One concatenation and one norm kernel, yet still ~6% of a 0.3 ms step of the smallest
    default model, hence a cadence (see benchmarks/probe_overhead.py).
    """

    columns = {"grad_norm": _F}

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        grads = [p.grad.reshape(-1) for p in ctx.params if p.grad is not None]
        return {"grad_norm": float(torch.linalg.vector_norm(torch.cat(grads))) if grads else 0.0}


class GradientGeometryProbe(Probe):
    """How consecutive gradients and updates relate, measured every ``every`` steps.

    At a due step t it reports, with g the gradient, θ the weights and Δθ_{t-1} = θ_t − θ_{t-1}:
    - ``grad_cos_prev``: cos(g_t, g_{t-1});
    - ``grad_dot_prev_update``: g_t · Δθ_{t-1} (the hypergradient of the LR, up to sign and scale);
    - ``curv_secant``: (g_t − g_{t-1}) · Δθ_{t-1} / ‖Δθ_{t-1}‖², a free curvature estimate
      along the last update direction;
    - ``upd_ratio``: ‖Δθ_t‖ / ‖θ_t‖, the update-to-weight ratio of this step;
    - ``grad_layer_max`` / ``grad_layer_median``: per-tensor gradient norms, summarised.
    The previous step's gradient and update are snapshotted only when the next step is due.
    """

    columns = {
        "grad_cos_prev": _F,
        "grad_dot_prev_update": _F,
        "curv_secant": _F,
        "upd_ratio": _F,
        "grad_layer_max": _F,
        "grad_layer_median": _F,
    }

    def __init__(self, every: int = 1):
        super().__init__(every)
        self._prev_grad: torch.Tensor | None = None
        self._prev_update: torch.Tensor | None = None
        self._weights_before: torch.Tensor | None = None
        self._out: dict[str, float | None] = {}

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        now, next_due = self.due(ctx.step), self.due(ctx.step + 1)
        if not (now or next_due):
            return {}
        grad = flat_grad(ctx.params)
        self._weights_before = flat(p.detach() for p in ctx.params)
        out: dict[str, float | None] = {}
        if now:
            layer_norms = torch.stack([p.grad.norm() for p in ctx.params if p.grad is not None])
            out["grad_layer_max"] = float(layer_norms.max())
            out["grad_layer_median"] = float(layer_norms.median())
            if self._prev_grad is not None and self._prev_update is not None:
                denom = float(grad.norm() * self._prev_grad.norm())
                out["grad_cos_prev"] = float(grad @ self._prev_grad) / denom if denom > 0 else None
                out["grad_dot_prev_update"] = float(grad @ self._prev_update)
                step_sq = float(self._prev_update @ self._prev_update)
                secant = float((grad - self._prev_grad) @ self._prev_update) / step_sq if step_sq > 0 else None
                out["curv_secant"] = None if secant is None else _finite_or_none(secant)
        self._prev_grad = grad if next_due else None
        self._out = out
        return {}

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        if self._weights_before is None:
            return {}
        after = flat(p.detach() for p in ctx.params)
        update = after - self._weights_before
        out = self._out
        if self.due(ctx.step):
            weight_norm = float(self._weights_before.norm())
            out["upd_ratio"] = float(update.norm()) / weight_norm if weight_norm > 0 else None
        self._prev_update = update if self.due(ctx.step + 1) else None
        self._weights_before, self._out = None, {}
        return out

    def state_dict(self) -> dict:
        # Between steps only the snapshots for the next step are live (a resumed run needs them).
        return {"prev_grad": self._prev_grad, "prev_update": self._prev_update}

    def load_state_dict(self, state: dict) -> None:
        self._prev_grad, self._prev_update = state["prev_grad"], state["prev_update"]


def micro_batch_gradients(ctx: StepContext, micro_batches: int) -> list[torch.Tensor]:
    """Flat gradients of the loss on ``micro_batches`` equal slices of the current batch."""
    size = len(ctx.inputs) // micro_batches
    grads = []
    for i in range(micro_batches):
        part = slice(i * size, (i + 1) * size)
        loss = ctx.loss_fn(ctx.model(ctx.inputs[part]), ctx.targets[part])
        grads.append(flat(torch.autograd.grad(loss, ctx.params, allow_unused=True, materialize_grads=True)))
    return grads


def noise_statistics(grads: list[torch.Tensor], micro_batch_size: int) -> tuple[float, float]:
    """(trace of the per-sample gradient covariance, simple gradient noise scale).

    Micro-batch gradients of size b have covariance Σ/b, so
    tr Σ ≈ b/(k−1) · Σ_i ‖g_i − ḡ‖²; the noise scale B = tr Σ / ‖ḡ‖² (McCandlish et al. 2018).
    """
    stacked = torch.stack(grads)
    mean = stacked.mean(0)
    trace = micro_batch_size * float(((stacked - mean) ** 2).sum()) / (len(grads) - 1)
    mean_sq = float(mean @ mean)
    return trace, trace / mean_sq if mean_sq > 0 else float("inf")


class GradientNoiseProbe(Probe):
    """Gradient noise from the spread of micro-batch gradients of the current batch."""

    columns = {"grad_noise_trace": _F, "grad_noise_scale": _F}

    def __init__(self, every: int = 25, micro_batches: int = 4, seed: int = 0):
        super().__init__(every)
        if micro_batches < 2:
            raise ValueError("GradientNoiseProbe needs at least 2 micro-batches")
        self.micro_batches = micro_batches
        self.seed = seed

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        size = len(ctx.inputs) // self.micro_batches
        if not self.due(ctx.step) or size < 1:
            return {}
        with isolated(ctx.model, self.seed + ctx.step):
            grads = micro_batch_gradients(ctx, self.micro_batches)
        trace, scale = noise_statistics(grads, size)
        return {"grad_noise_trace": _finite_or_none(trace), "grad_noise_scale": _finite_or_none(scale)}
