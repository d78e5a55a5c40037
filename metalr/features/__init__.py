"""Trajectory probes: what a training run records about itself, step by step.

Each probe is one small class with its own cadence (see ``metalr.features.base.Probe``).
``build_probes`` assembles the set a run logs from its task's ``ProbeConfig``.
"""

from __future__ import annotations

import pyarrow as pa

from metalr.config import ProbeConfig
from metalr.features.base import Probe, StepContext, isolated
from metalr.features.basic import LossEMA, LossProbe
from metalr.features.curvature import CurvatureProbe
from metalr.features.gradients import GradientGeometryProbe, GradientNoiseProbe, GradNormProbe
from metalr.features.optimizer_state import OptimizerStateProbe
from metalr.features.resources import ResourceProbe
from metalr.features.uncertainty import UncertaintyProbe
from metalr.features.validation import ValidationProbe, evaluate_split

# Order matters only for column order in the files.
PROBE_TYPES: tuple[type[Probe], ...] = (
    LossProbe,
    GradNormProbe,
    GradientGeometryProbe,
    GradientNoiseProbe,
    OptimizerStateProbe,
    CurvatureProbe,
    ValidationProbe,
    UncertaintyProbe,
    ResourceProbe,
)


def probe_columns() -> dict[str, pa.DataType]:
    columns: dict[str, pa.DataType] = {}
    for probe_type in PROBE_TYPES:
        columns.update(probe_type.columns)
    return columns


def build_probes(cfg: ProbeConfig, budget: int, val_every: int, loss_ema_beta: float, seed: int) -> list[Probe]:
    """The probes a run logs. Loss, gradient norm and validation always run: the schedulers
    and the run summary need them. ``cfg.enabled=False`` switches every other probe off."""
    probes: list[Probe] = [
        LossProbe(loss_ema_beta),
        GradNormProbe(cfg.grad_norm_every),
        ValidationProbe(val_every, budget),
    ]
    if not cfg.enabled:
        return probes
    # Each probe gets its own seed stream, distinct from the run's training seed.
    probe_seed = 1_000_003 * (seed + 1)
    probes += [
        GradientGeometryProbe(cfg.geometry_every),
        GradientNoiseProbe(cfg.noise_every, cfg.noise_micro_batches, seed=probe_seed),
        OptimizerStateProbe(cfg.optimizer_every),
        CurvatureProbe(
            cfg.curvature_every,
            cfg.curvature_batch,
            cfg.curvature_tol,
            cfg.curvature_max_iters,
            cfg.hutchinson_samples,
            seed=probe_seed + 1,
        ),
        UncertaintyProbe(
            cfg.uncertainty_every or val_every, cfg.uncertainty_examples, cfg.mc_passes, seed=probe_seed + 2
        ),
        ResourceProbe(cfg.resources_every),
    ]
    return probes


__all__ = [
    "PROBE_TYPES",
    "LossEMA",
    "Probe",
    "StepContext",
    "build_probes",
    "evaluate_split",
    "isolated",
    "probe_columns",
]
