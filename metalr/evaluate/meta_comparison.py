"""Every meta-learner variant against every baseline, at each base LR of the evaluation grid.

The main protocol (``protocol.py``) compares the main meta-scheduler at the task's default
base LR. This table asks the robustness question of the issue: started from a base LR ten
times too small or too large, does the meta-scheduler still beat the same hand schedule
started from the same base LR? Controls (progress-only, shuffled) enter as comparators of
the full models, so a claim that the features carry signal rests on a paired win there.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from metalr.evaluate.statistics import ALPHA, holm, paired_test
from metalr.meta.variants import DEPLOYMENTS, PROGRESS_ONLY, SHUFFLED
from metalr.schedulers import is_meta

REFERENCE = "cosine"


def _is_meta(column: str = "scheduler") -> pl.Expr:
    return pl.col(column).map_elements(is_meta, return_dtype=pl.Boolean)


def _gain(a: float, b: float, higher_is_better: bool) -> float:
    return a - b if higher_is_better else b - a


def _task_verdict(mine: pl.DataFrame, theirs: pl.DataFrame, resamples: int) -> tuple[str, float | None]:
    """Per-task paired test by seed on the score: 'win', 'loss' or 'tie', and the mean normalised-score gain."""
    higher = bool(mine["higher_is_better"][0])
    paired = mine.select("seed", a="score", na="norm_score").join(
        theirs.select("seed", b="score", nb="norm_score"), on="seed"
    )
    test = paired_test([_gain(r["a"], r["b"], higher) for r in paired.iter_rows(named=True)], resamples=resamples)
    verdict = (
        "win" if test.verdict.startswith("meta better") else "loss" if test.verdict.startswith("meta worse") else "tie"
    )
    gains = (paired["na"] - paired["nb"]).drop_nulls().drop_nans()
    return verdict, (float(gains.mean()) if len(gains) else None)


def _median_steps(group: pl.DataFrame) -> float:
    steps = group["steps_to_target"].to_numpy().astype(float)
    return float(np.median(np.where(np.isnan(steps), np.inf, steps))) if len(steps) else float("nan")


def compare_meta_variants(runs: pl.DataFrame, resamples: int = 2000) -> pl.DataFrame:
    """One row per (variant, base-LR multiplier, comparator): wins/ties/losses over tasks and aggregate gains.

    ``runs`` are the measured eval runs (score, norm_score, steps_to_target, status). The
    comparators of a variant are the baselines at the same base LR, and for the variants
    that read the run's state, the two controls at that base LR; a deployment (loss-only)
    is also compared with the fitted variant it runs.
    """
    if runs.is_empty():
        return pl.DataFrame()
    by_cell = {
        key: group for key, group in runs.partition_by(["scheduler", "lr_multiplier", "task"], as_dict=True).items()
    }
    metas = sorted({(s, m) for s, m, _ in by_cell if is_meta(s)})
    baselines = sorted({s for s, _, _ in by_cell if not is_meta(s)})
    tasks = sorted({t for _, _, t in by_cell})
    rows = []
    for name, multiplier in metas:
        # A deployment is also compared with the fitted variant it runs given every input.
        source = (DEPLOYMENTS[name].source,) if name in DEPLOYMENTS else ()
        comparators = baselines + [
            c for c in (PROGRESS_ONLY, SHUFFLED, *source) if c != name and (c, multiplier, tasks[0]) in by_cell
        ]
        family = []
        for other in comparators:
            verdicts, gains, ratios = [], [], []
            for task in tasks:
                mine, theirs = by_cell.get((name, multiplier, task)), by_cell.get((other, multiplier, task))
                if mine is None or theirs is None:
                    continue
                verdict, gain = _task_verdict(mine, theirs, resamples)
                verdicts.append(verdict)
                if gain is not None:
                    gains.append(gain)
                reference = by_cell.get((REFERENCE, multiplier, task))
                if other == REFERENCE and reference is not None:
                    mine_steps, cosine_steps = _median_steps(mine), _median_steps(reference)
                    # A ratio only where both reach the target in at least half their seeds.
                    if np.isfinite(mine_steps) and np.isfinite(cosine_steps) and cosine_steps > 0:
                        ratios.append(mine_steps / cosine_steps)
            if not verdicts:
                continue
            across = paired_test(gains, resamples=resamples)
            finite = ratios
            family.append(
                {
                    "variant": name,
                    "lr_multiplier": multiplier,
                    "comparator": other,
                    "n_tasks": len(verdicts),
                    "wins": verdicts.count("win"),
                    "ties": verdicts.count("tie"),
                    "losses": verdicts.count("loss"),
                    "mean_norm_gain": across.mean_gain,
                    "norm_gain_ci_low": across.ci_low,
                    "norm_gain_ci_high": across.ci_high,
                    "wilcoxon_p": across.wilcoxon_p,
                    "steps_to_target_ratio": float(np.median(finite)) if finite else None,
                    "n_ratio_tasks": len(finite),
                }
            )
        for row, adjusted in zip(family, holm([r["wilcoxon_p"] for r in family]), strict=True):
            row["holm_p"] = adjusted
            significant = adjusted is not None and adjusted < ALPHA
            row["aggregate"] = (
                "better" if significant and row["mean_norm_gain"] > 0 else "worse" if significant else "not significant"
            )
        rows += family
    return pl.DataFrame(rows, infer_schema_length=None)


def meta_run_summary(runs: pl.DataFrame) -> pl.DataFrame:
    """Per (variant, base LR, task): runs, divergences and the out-of-distribution (fallback) rate of decisions."""
    meta = runs.filter(_is_meta())
    if meta.is_empty():
        return pl.DataFrame()

    def rate(params: str | None) -> float | None:
        state = json.loads(params) if params else {}
        decisions = state.get("decisions")
        return state.get("ood_decisions", 0) / decisions if decisions else None

    return (
        meta.with_columns(fallback_rate=pl.col("scheduler_params").map_elements(rate, return_dtype=pl.Float64))
        .group_by("scheduler", "lr_multiplier", "task")
        .agg(
            n_runs=pl.len(),
            n_diverged=(pl.col("status") == "diverged").sum(),
            fallback_rate=pl.col("fallback_rate").mean(),
            mean_norm_score=pl.col("norm_score").mean(),
        )
        .rename({"scheduler": "variant"})
        .sort("variant", "lr_multiplier", "task")
    )
