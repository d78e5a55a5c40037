"""The pipeline's gradient probes, run on a user's own model and optimizer.

``FeatureTracker`` hooks the optimizer's step (``register_step_pre_hook`` sees this step's
gradients and the weights before the update, ``register_step_post_hook`` the weights after
it), so a user's loop needs no extra calls: the gradient norm, the update-to-weight ratio
and the cosine between consecutive gradients come from the very probe classes a pipeline
run records them with (``GradNormProbe``, ``GradientGeometryProbe``), and λ_max through a
closure from the curvature probe's power iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from metalr.features.base import StepContext, flat
from metalr.features.curvature import lanczos, make_hvp, twice_differentiable
from metalr.features.gradients import GradientGeometryProbe, GradNormProbe


class FeatureTracker:
    """Trajectory columns of a live run: ``grad_norm``, ``upd_ratio``, ``grad_cos_prev`` (and more
    of the geometry probe's), plus ``curv_lambda_max``/``curv_lr_lambda`` when ``curvature`` is called.

    ``every`` is the probes' cadence in optimizer steps (1: every step). ``pop()`` hands over
    what was measured since the last ``pop()``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, every: int = 1):
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("FeatureTracker: the model has no parameters that require gradients")
        self.optimizer = optimizer
        self.probes = [GradNormProbe(every), GradientGeometryProbe(every)]
        # The probes read only the step and the parameters; the data fields stay empty.
        self._ctx = StepContext(
            step=0,
            model=model,
            params=self.params,
            optimizer=optimizer,
            loss_fn=None,
            inputs=None,
            targets=None,
            loss=math.nan,
            lr=optimizer.param_groups[0]["lr"],
            info=None,
            X_val=None,
            y_val=None,
        )
        self._pending: dict[str, float | None] = {}
        self._curvature_vector: torch.Tensor | None = None
        self._handles = [
            optimizer.register_step_pre_hook(self._before_update),
            optimizer.register_step_post_hook(self._after_update),
        ]

    @property
    def step(self) -> int:
        """Optimizer steps seen so far."""
        return self._ctx.step

    def _before_update(self, optimizer, args, kwargs) -> None:
        self._ctx.step += 1
        self._ctx.lr = optimizer.param_groups[0]["lr"]
        for probe in self.probes:
            self._pending.update(probe.after_backward(self._ctx))

    def _after_update(self, optimizer, args, kwargs) -> None:
        for probe in self.probes:
            self._pending.update(probe.after_update(self._ctx))

    def curvature(self, closure: Callable[[], torch.Tensor], tol: float = 0.01, max_iters: int = 20) -> float:
        """λ_max of the Hessian of ``closure()`` (a loss on a batch, built with autograd on) by
        warm-started Lanczos, as the pipeline's probe (relative residual ``tol``, at most
        ``max_iters`` Hessian-vector products); also queues ``curv_lr_lambda`` = lr × λ_max."""
        with twice_differentiable():
            loss = closure()
        hvp = make_hvp(loss, self.params)
        start = self._curvature_vector
        if start is None:
            start = torch.randn(flat(p.detach() for p in self.params).shape, device=self.params[0].device)
        eigen = lanczos(hvp, start, tol, max_iters)
        eigenvalue, self._curvature_vector = eigen.value, eigen.vector
        lr = self.optimizer.param_groups[0]["lr"]
        finite = math.isfinite(eigenvalue)
        self._pending["curv_lambda_max"] = eigenvalue if finite else None
        self._pending["curv_lr_lambda"] = lr * eigenvalue if finite else None
        return eigenvalue

    def pop(self) -> dict[str, float | None]:
        pending, self._pending = self._pending, {}
        return pending

    def close(self) -> None:
        """Remove the optimizer hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
