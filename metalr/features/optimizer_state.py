"""Optimizer-state probe: Adam's moments or SGD's momentum buffer, summarised."""

from __future__ import annotations

import pyarrow as pa
import torch

from metalr.features.base import Probe, StepContext


class OptimizerStateProbe(Probe):
    """``opt_momentum_norm``: L2 norm of the first moment (Adam ``exp_avg``, SGD
    ``momentum_buffer``); ``opt_second_moment_mean``: mean of Adam's ``exp_avg_sq``."""

    columns = {"opt_momentum_norm": pa.float64(), "opt_second_moment_mean": pa.float64()}

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        first, second = [], []
        for state in ctx.optimizer.state.values():
            momentum = state.get("exp_avg", state.get("momentum_buffer"))
            if momentum is not None:
                first.append(momentum)
            if "exp_avg_sq" in state:
                second.append(state["exp_avg_sq"])
        return {
            "opt_momentum_norm": float(torch.nn.utils.get_total_norm(first)) if first else None,
            "opt_second_moment_mean": float(torch.cat([s.reshape(-1) for s in second]).mean()) if second else None,
        }
