"""Curvature probes: Hessian-vector products, power iteration for λ_max, Hutchinson trace."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import torch

from metalr.features.base import Probe, StepContext, flat, isolated

HVP = Callable[[torch.Tensor], torch.Tensor]


def twice_differentiable():
    """A context for the forward pass of a loss that ``make_hvp`` differentiates twice.

    On CPU, scaled-dot-product attention without dropout (BERT, GPT-2 at dropout 0) picks a
    flash kernel whose backward has no derivative; the math kernel has one.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


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


@dataclass(frozen=True)
class Eigen:
    """A Ritz pair and how far it can be trusted.

    ``residual`` is ‖Hv − λv‖ / |λ|: some eigenvalue of H lies within ``residual`` × |λ| of λ.
    """

    value: float
    vector: torch.Tensor
    residual: float
    iterations: int


def lanczos(hvp: HVP, start: torch.Tensor, tol: float = 0.01, max_iters: int = 20) -> Eigen:
    """The largest-magnitude eigenvalue (signed) of the symmetric operator ``hvp``, by Lanczos.

    Stops as soon as the Ritz residual bound |β_k s_k| falls to ``tol`` × |λ|, or after
    ``max_iters`` HVPs. Warm-started from the previous probe's vector, one or two HVPs
    usually meet 1%. Full reorthogonalisation keeps the basis orthogonal in float32; the
    basis holds up to ``max_iters`` vectors of the parameters' size.
    """
    basis = [start / start.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for k in range(max_iters):
        w = hvp(basis[-1])
        alphas.append(float(basis[-1] @ w))
        stacked = torch.stack(basis)
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if k:
            off = torch.tensor(betas, dtype=torch.float64)
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        values, vectors = torch.linalg.eigh(tridiagonal)
        top = int(values.abs().argmax())
        value, s = float(values[top]), vectors[:, top]
        residual = abs(beta * float(s[-1])) / abs(value) if value else math.inf
        if not math.isfinite(value) or residual <= tol or beta <= 1e-12 * max(abs(value), 1.0):
            break
        basis.append(w / beta)
        betas.append(beta)
    vector = torch.stack(basis[: len(alphas)]).T @ s.to(stacked)
    return Eigen(value, vector / vector.norm(), residual, len(alphas))


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
    """λ_max by warm-started Lanczos to a stated tolerance, and the Hutchinson trace, on a sub-batch.

    ``curv_lambda_max`` is the largest-magnitude Hessian eigenvalue (signed), iterated until
    its relative residual ``curv_lambda_residual`` is at most ``tol`` or ``max_iters`` HVPs
    were spent (``curv_lambda_iters``); ``curv_trace`` the Hutchinson trace estimate
    (``hutchinson_samples`` HVPs) and ``curv_lr_lambda`` = lr × λ_max, the edge-of-stability
    indicator (≈ 2 at the edge for SGD).
    """

    columns = {
        "curv_lambda_max": pa.float64(),
        "curv_lambda_residual": pa.float64(),
        "curv_lambda_iters": pa.int32(),
        "curv_trace": pa.float64(),
        "curv_lr_lambda": pa.float64(),
    }

    def __init__(
        self,
        every: int = 25,
        sub_batch: int = 32,
        tol: float = 0.01,
        max_iters: int = 20,
        hutchinson_samples: int = 1,
        seed: int = 0,
    ):
        super().__init__(every)
        self.sub_batch, self.tol, self.max_iters = sub_batch, tol, max_iters
        self.hutchinson_samples, self.seed = hutchinson_samples, seed
        self._vector: torch.Tensor | None = None
        self._generator = torch.Generator().manual_seed(seed)

    def after_backward(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        with isolated(ctx.model, self.seed + ctx.step), twice_differentiable():
            loss = ctx.loss_fn(ctx.model(ctx.inputs[: self.sub_batch]), ctx.targets[: self.sub_batch])
            hvp = make_hvp(loss, ctx.params)
            size = sum(p.numel() for p in ctx.params)
            if self._vector is None:
                self._vector = torch.randn(size, generator=self._generator).to(ctx.inputs.device)
            eigen = lanczos(hvp, self._vector, self.tol, self.max_iters)
            eigenvalue = eigen.value
            if torch.isfinite(eigen.vector).all():
                self._vector = eigen.vector
            trace, _ = hutchinson_trace(hvp, self._vector, self.hutchinson_samples, self._generator)
        return {
            "curv_lambda_max": eigenvalue if math.isfinite(eigenvalue) else None,
            "curv_lambda_residual": eigen.residual if math.isfinite(eigen.residual) else None,
            "curv_lambda_iters": eigen.iterations,
            "curv_trace": trace if math.isfinite(trace) else None,
            "curv_lr_lambda": ctx.lr * eigenvalue if math.isfinite(eigenvalue) else None,
        }

    def state_dict(self) -> dict:
        return {"vector": self._vector, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._vector = state["vector"]
        self._generator.set_state(state["generator"])
