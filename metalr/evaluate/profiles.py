"""AlgoPerf-style performance profiles over tasks, and their integrated score.

For scheduler s on task w with time-to-target t(s, w), the performance ratio is
r(s, w) = t(s, w) / min over schedulers of t(·, w); a miss is infinite. The profile
rho_s(tau) is the fraction of tasks with r(s, w) <= tau, and the integrated score is
(1 / (tau_max - 1)) * integral of rho_s over [1, tau_max], with tau_max = 4 as in AlgoPerf.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from metalr.schedulers import MACHINE_DEPENDENT

TAU_MAX = 4.0


def performance_ratios(times: pl.DataFrame, time_column: str = "time") -> pl.DataFrame:
    """Add ``ratio`` per (task, scheduler); infinite when the scheduler, or every scheduler, missed.

    The best time is taken over the schedulers whose runs do not read the machine's timings
    (``MACHINE_DEPENDENT``), so every other ratio is the same on any machine; a machine-dependent
    scheduler faster than all of them gets ratio 1.
    """
    reproducible = ~pl.col("scheduler").is_in(MACHINE_DEPENDENT)
    best = pl.col(time_column).filter(reproducible).min().over("task")
    return times.with_columns(
        ratio=pl.when(pl.col(time_column).is_finite() & best.is_finite())
        .then((pl.col(time_column) / best).clip(lower_bound=1.0))
        .otherwise(pl.lit(math.inf))
    )


def profile(ratios: pl.DataFrame, taus: np.ndarray) -> pl.DataFrame:
    """rho(tau) per scheduler at each of ``taus``: the fraction of tasks solved within tau x the best time."""
    rows = []
    for (scheduler,), group in ratios.partition_by("scheduler", as_dict=True).items():
        r = group["ratio"].to_numpy()
        rows += [{"scheduler": scheduler, "tau": float(t), "rho": float(np.mean(r <= t))} for t in taus]
    return pl.DataFrame(rows, schema={"scheduler": pl.String, "tau": pl.Float64, "rho": pl.Float64})


def integrated_scores(ratios: pl.DataFrame, tau_max: float = TAU_MAX) -> pl.DataFrame:
    """The profile's area over [1, tau_max] / (tau_max - 1): 1 = fastest on every task, 0 = never within tau_max.

    rho is a step function, so the integral is exact: a task with ratio r <= tau_max adds (tau_max - r).
    """
    credit = pl.when(pl.col("ratio") <= tau_max).then(tau_max - pl.col("ratio")).otherwise(0.0)
    return (
        ratios.group_by("scheduler")
        .agg(score=(credit.sum() / pl.len() / (tau_max - 1)), tasks=pl.len(), solved=(pl.col("ratio") <= tau_max).sum())
        .sort("score", "scheduler", descending=[True, False])
    )
