"""Paired tests across seeds, Wilcoxon across tasks with Holm's correction, bootstrap intervals."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


def bootstrap_ci(
    values: Sequence[float], resamples: int = 2000, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile-bootstrap confidence interval of the mean; None when fewer than two values."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(data) < 2:
        return None, None
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilcoxon_min_p(n: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test can give with ``n`` non-zero pairs.

    Reached when every difference has the same sign: 2 / 2^n (n = 5 gives 0.0625).
    """
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


@dataclass(frozen=True)
class PairedTest:
    """A challenger against a reference over paired samples; ``gain`` > 0 means the challenger is better."""

    n: int
    mean_gain: float | None
    ci_low: float | None
    ci_high: float | None
    t_p: float | None
    wilcoxon_p: float | None
    wilcoxon_min_p: float
    verdict: str


def paired_test(
    gains: Sequence[float], alpha: float = ALPHA, resamples: int = 2000, seed: int = 0, subject: str = "meta"
) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of the per-pair ``gains`` against zero.

    The verdict needs both tests below ``alpha``. Where the Wilcoxon test cannot reach
    ``alpha`` at this sample size, the verdict rests on the t-test alone and says so.
    """
    d = np.asarray(gains, dtype=float)
    d = d[np.isfinite(d)]
    n, nonzero = len(d), int(np.count_nonzero(d))
    min_p = wilcoxon_min_p(nonzero)
    if n < 2:
        return PairedTest(n, float(d.mean()) if n else None, None, None, None, None, min_p, "too few pairs")
    low, high = bootstrap_ci(d, resamples, seed=seed)
    if nonzero == 0:
        return PairedTest(n, 0.0, low, high, 1.0, 1.0, min_p, "identical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
        w_p = float(stats.wilcoxon(d).pvalue)
    t_p = 0.0 if math.isnan(t_p) else t_p  # constant non-zero gains: t is infinite
    wilcoxon_can_reach = min_p < alpha
    significant = t_p < alpha and (w_p < alpha or not wilcoxon_can_reach)
    if significant:
        verdict = f"{subject} better" if d.mean() > 0 else f"{subject} worse"
        verdict += "" if wilcoxon_can_reach else " (t-test only)"
    else:
        verdict = "no significant difference"
    return PairedTest(n, float(d.mean()), low, high, t_p, w_p, min_p, verdict)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order; None stays None.

    The i-th smallest of m p-values is multiplied by (m - i + 1), then made monotone
    and capped at 1.
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    adjusted: list[float | None] = [None] * len(pvalues)
    m, running = len(present), 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
