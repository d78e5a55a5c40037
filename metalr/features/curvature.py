"""Curvature probes: Hessian-vector products, power iteration for λ_max, Hutchinson trace."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyarrow as pa
import torch

from metalr.features.base import Probe, StepContext, flat, isolated

HVP = Callable[[torch.Tensor], torch.Tensor]


def make_hvp(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> HVP:
    """Hessian-vector products of ``loss`` w.r.t. ``params`` (flat vectors in, flat out).

    Double backward through one forward graph; nothing accumulates into ``.grad``.
    """
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True, materialize_grads=True)
    shapes = [p.shape for p in params]

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        pieces = list(torch.split(vector, [math.prod(s) for s in shapes]))
        tangents = [piece.view(shape) for piece, shape in zip(pieces, shapes, strict=True)]
        products = torch.autograd.grad(
            grads, params, tangents, retain_graph=True, allow_unused=True, materialize_grads=True
        )
        return flat(products).detach()

    return hvp


def power_iteration(hvp: HVP, start: torch.Tensor, iterations: int) -> tuple[float, torch.Tensor]:
    """Largest-magnitude eigenvalue (signed, as a Rayleigh quotient) and its vector.

    Each iteration costs one HVP. Warm-start from the previous vector to converge across
    calls with only a couple of iterations each.
    """
    vector = start / start.norm()
    eigenvalue = 0.0
    for _ in range(iterations):
        product = hvp(vector)
        eigenvalue = float(vector @ product)
        norm = product.norm()
        if not torch.isfinite(norm) or norm == 0:
            break
        vector = product / norm
    return eigenvalue, vector


def hutchinson_trace(hvp: HVP, like: torch.Tensor, samples: int, generator: torch.Generator) -> tuple[float, float]:
    """Unbiased trace estimate mean(zᵀHz) over Rademacher z, and its standard error.

    ``like`` is any flat vector with the parameters' size, dtype and device. The standard
    error is the sample standard deviation over sqrt(samples); NaN with a single sample.
    """
    values = []
    for _ in range(samples):
        z = torch.randint(0, 2, like.shape, generator=generator).to(like) * 2 - 1
        values.append(float(z @ hvp(z)))
    mean = sum(values) / samples
    if samples < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (samples - 1)
    return mean, math.sqrt(variance / samples)


class CurvatureProbe(Probe):
    """λ_max by warm-started power iteration and the Hutchinson trace, on a sub-batch.

    ``curv_lambda_max`` is the largest-magnitude Hessian eigenvalue estimate (``power_iters``
    HVPs per probe, warm-started), ``curv_trace`` the Hutchinson trace estimate
    (``hutchinson_samples`` HVPs) and ``curv_lr_lambda`` = lr × λ_max, the edge-of-stability
    indicator (≈ 2 at the edge for SGD).
    """

    columns = {"curv_lambda_max": pa.float64(), "curv_trace": pa.float64(), "curv_lr_lambda": pa.float64()}

    def __init__(
        self, every: int = 25, sub_batch: int = 32, power_iters: int = 2, hutchinson_samples: int = 1, seed: int = 0
    ):
        super().__init__(every)
        self.sub_batch, self.power_iters, self.hutchinson_samples, self.seed = (
            sub_batch,
            power_iters,
            hutchinson_samples,
            seed,
        )
        self._vector: torch.Tensor | None = None
        self._generator = torch.Generator().manual_seed(seed)

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        with isolated(ctx.model, self.seed + ctx.step):
            loss = ctx.loss_fn(ctx.model(ctx.inputs[: self.sub_batch]), ctx.targets[: self.sub_batch])
            hvp = make_hvp(loss, ctx.params)
            size = sum(p.numel() for p in ctx.params)
            if self._vector is None:
                self._vector = torch.randn(size, generator=self._generator).to(ctx.inputs.device)
            eigenvalue, self._vector = power_iteration(hvp, self._vector, self.power_iters)
            trace, _ = hutchinson_trace(hvp, self._vector, self.hutchinson_samples, self._generator)
        return {
            "curv_lambda_max": eigenvalue if math.isfinite(eigenvalue) else None,
            "curv_trace": trace if math.isfinite(trace) else None,
            "curv_lr_lambda": ctx.lr * eigenvalue if math.isfinite(eigenvalue) else None,
        }

    def state_dict(self) -> dict:
        return {"vector": self._vector, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._vector = state["vector"]
        self._generator.set_state(state["generator"])
