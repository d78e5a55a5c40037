"""The evaluation protocol end to end: per-run metrics, both framings, per-task and across-task statistics, profiles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl

from metalr.evaluate.meta_comparison import compare_meta_variants, meta_run_summary
from metalr.evaluate.metrics import curve_metrics, hit_summary, normalised_scores, score_runs
from metalr.evaluate.profiles import integrated_scores, performance_ratios
from metalr.evaluate.statistics import ALPHA, bootstrap_ci, holm, paired_test, wilcoxon_min_p
from metalr.evaluate.targets import (
    EXTERNALLY_TUNED,
    SELF_TUNING,
    choose_tuned_lr,
    compute_targets,
    framing_runs,
    has_grid,
)
from metalr.schedulers import META, is_meta
from metalr.trajectories import TIMING_COLUMNS, read_parquet_files, write_parquet

# The plain training loop that overhead is measured against.
PLAIN_LOOP = "constant"


@dataclass
class Evaluation:
    """Every table the report draws from; one Parquet file each under ``results/evaluation``."""

    run_metrics: pl.DataFrame  # one row per eval run: score, normalised score, curve metrics
    tuned_lr: pl.DataFrame  # (task, scheduler) -> LR multiplier chosen on validation data
    targets: pl.DataFrame  # per task: validation-metric target and validation-loss threshold
    comparisons: pl.DataFrame  # per framing x task x scheduler: means, CIs, paired tests against meta
    across_tasks: pl.DataFrame  # per framing x baseline: Wilcoxon across tasks, Holm-corrected
    profile_ratios: pl.DataFrame  # per framing x task x scheduler: time to target and performance ratio
    profile_scores: pl.DataFrame  # per framing x scheduler: integrated performance-profile score
    meta_variants: pl.DataFrame  # per meta variant x base LR x comparator: wins/ties/losses over tasks
    meta_runs: pl.DataFrame  # per meta variant x base LR x task: divergences and fallback rate

    def save(self, directory: str | Path) -> None:
        for field in fields(self):
            write_parquet(getattr(self, field.name), Path(directory) / f"{field.name}.parquet")

    @classmethod
    def load(cls, directory: str | Path) -> Evaluation:
        return cls(**{f.name: read_parquet_files([Path(directory) / f"{f.name}.parquet"]) for f in fields(cls)})

    @property
    def framings(self) -> list[str]:
        present = set(self.comparisons["framing"].to_list())
        return [f for f in (SELF_TUNING, EXTERNALLY_TUNED) if f in present]


def _finite(values) -> np.ndarray:
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return array[np.isfinite(array)]


def _mean(values) -> float | None:
    array = _finite(values)
    return float(array.mean()) if len(array) else None


def _median(values) -> float | None:
    array = _finite(values)
    return float(np.median(array)) if len(array) else None


def _signed_gain(higher_is_better: bool) -> Callable[[float, float], float]:
    return (lambda a, b: a - b) if higher_is_better else (lambda a, b: b - a)


def _time_to_target_columns(group: pl.DataFrame, prefix: str, suffix: str) -> dict:
    summary = hit_summary(*(group[f"{unit}_to_{suffix}"].to_numpy() for unit in ("steps", "epochs", "seconds")))
    return {f"{prefix}_{k}": v for k, v in summary.items()}


def _compare_task(framed: pl.DataFrame, resamples: int) -> list[dict]:
    """The rows of one (framing, task): every scheduler's summary and its paired test against meta."""
    higher_is_better = bool(framed["higher_is_better"][0])
    gain = _signed_gain(higher_is_better)
    meta = {r["seed"]: r for r in framed.filter(pl.col("scheduler") == META).iter_rows(named=True)}
    plain = framed.filter(pl.col("scheduler") == PLAIN_LOOP)["step_time_median_s"]
    plain_step = _median(plain.to_list()) if len(plain) else None
    rows = []
    for (scheduler,), group in sorted(framed.partition_by("scheduler", as_dict=True).items()):
        scores, norms = group["score"].to_list(), group["norm_score"].to_list()
        first = group.row(0, named=True)
        step_time = _median(group["step_time_median_s"].to_list())
        row = {
            "framing": first["framing"],
            "task": first["task"],
            "scheduler": scheduler,
            "lr_multiplier": first["lr_multiplier"],
            "metric": first["metric"],
            "higher_is_better": higher_is_better,
            "n_runs": group.height,
            "n_diverged": int((group["status"] == "diverged").sum()),
            "n_failed": int((group["status"] == "failed").sum()),
            "divergence_rate": float((group["status"] == "diverged").mean()),
            "mean": _mean(scores),
            "std": float(np.std(_finite(scores), ddof=1)) if len(_finite(scores)) > 1 else None,
            **dict(zip(("ci_low", "ci_high"), bootstrap_ci(_finite(scores), resamples), strict=True)),
            "norm_mean": _mean(norms),
            **dict(zip(("norm_ci_low", "norm_ci_high"), bootstrap_ci(_finite(norms), resamples), strict=True)),
            "final_train_loss": _mean(group["final_train_loss"].to_list()),
            "final_val_loss": _mean(group["final_val_loss"].to_list()),
            **_time_to_target_columns(group, "target", "target"),
            **_time_to_target_columns(group, "loss_target", "loss_target"),
            "convergence_epoch": _median(group["convergence_epoch"].to_list()),
            "val_auc": _mean(group["val_auc"].to_list()),
            "train_loss_var": _mean(group["train_loss_var"].to_list()),
            "val_loss_var": _mean(group["val_loss_var"].to_list()),
            "lr_changes": _mean(group["lr_changes"].to_list()),
            "lr_change_mean": _mean(group["lr_change_mean"].to_list()),
            "step_time_median_s": step_time,
            "overhead_s": None if step_time is None or plain_step is None else step_time - plain_step,
            "train_time_s": _mean(group["train_time_s"].to_list()),
            "wall_time_s": _mean(group["wall_time_s"].to_list()),
        }
        row |= {c: _mean(group[c].to_list()) for c in group.columns if c.startswith("mean_")}
        # Every other test metric the task logs (F1, AUC, top-5, RMSE, sMAPE, WER), over finished runs.
        row |= {
            f"mean_{c}": _mean(group[c].to_list())
            for c in group.columns
            if c.startswith("test_") and c not in ("test_metric", "test_loss") and group[c].drop_nulls().len()
        }
        if scheduler != META and meta:
            pairs = [(meta[r["seed"]]["score"], r["score"]) for r in group.iter_rows(named=True) if r["seed"] in meta]
            test = paired_test([gain(a, b) for a, b in pairs], resamples=resamples)
            row |= {
                "n_pairs": test.n,
                "meta_gain": test.mean_gain,
                "meta_gain_ci_low": test.ci_low,
                "meta_gain_ci_high": test.ci_high,
                "t_p": test.t_p,
                "wilcoxon_p": test.wilcoxon_p,
                "wilcoxon_min_p": test.wilcoxon_min_p,
                "verdict": test.verdict,
            }
        rows.append(row)
    return rows


def _across_tasks(comparable: pl.DataFrame, resamples: int) -> pl.DataFrame:
    """Per framing x baseline: the meta-scheduler's mean normalised-score gain per task, Wilcoxon across tasks, Holm."""
    rows = []
    for (framing,), framed in comparable.partition_by("framing", as_dict=True).items():
        meta = framed.filter(pl.col("scheduler") == META).select("task", "seed", meta_norm="norm_score")
        family = []
        for (scheduler,), group in sorted(
            framed.filter(pl.col("scheduler") != META).partition_by("scheduler", as_dict=True).items()
        ):
            per_task = (
                group.join(meta, on=["task", "seed"])
                .group_by("task")
                .agg(gain=(pl.col("meta_norm") - pl.col("norm_score")).mean())
                .drop_nulls("gain")
                .sort("task")
            )
            test = paired_test(per_task["gain"].to_list(), resamples=resamples)
            family.append(
                {
                    "framing": framing,
                    "scheduler": scheduler,
                    "n_tasks": per_task.height,
                    "meta_wins": int((per_task["gain"] > 0).sum()),
                    "meta_losses": int((per_task["gain"] < 0).sum()),
                    "mean_norm_gain": test.mean_gain,
                    "ci_low": test.ci_low,
                    "ci_high": test.ci_high,
                    "wilcoxon_p": test.wilcoxon_p,
                    "wilcoxon_min_p": wilcoxon_min_p(int((per_task["gain"] != 0).sum())),
                }
            )
        for row, adjusted in zip(family, holm([r["wilcoxon_p"] for r in family]), strict=True):
            row["holm_p"] = adjusted
            if row["wilcoxon_min_p"] >= ALPHA:
                row["verdict"] = f"cannot reach p<{ALPHA} with {row['n_tasks']} tasks"
            elif adjusted is not None and adjusted < ALPHA:
                row["verdict"] = "meta better" if row["mean_norm_gain"] > 0 else "meta worse"
            else:
                row["verdict"] = "no significant difference"
        rows += family
    return pl.DataFrame(rows, infer_schema_length=None)


def _profiles(comparable: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Time to the validation-metric target per (framing, task, scheduler): the median over seeds, misses infinite."""
    rows = []
    for (framing, task, scheduler), group in comparable.partition_by(
        ["framing", "task", "scheduler"], as_dict=True
    ).items():
        steps = group["steps_to_target"].to_numpy()
        rows.append({"framing": framing, "task": task, "scheduler": scheduler, "time": float(np.median(steps))})
    times = pl.DataFrame(rows).sort("framing", "task", "scheduler")
    ratios = pl.concat(
        [performance_ratios(group) for (_,), group in times.partition_by("framing", as_dict=True).items()]
    ).sort("framing", "task", "scheduler")
    scores = pl.concat(
        [
            integrated_scores(group).with_columns(framing=pl.lit(framing))
            for (framing,), group in ratios.partition_by("framing", as_dict=True).items()
        ]
    )
    return ratios, scores.select("framing", pl.exclude("framing"))


def evaluate_runs(runs: pl.DataFrame, trajectories: pl.DataFrame, resamples: int = 2000) -> Evaluation:
    """Run the whole protocol on the held-out runs (``phase == eval``) and their trajectories."""
    every_run = normalised_scores(score_runs(runs.filter(pl.col("phase") == "eval")))
    if every_run.is_empty():
        raise ValueError("no evaluation runs (phase=eval) to evaluate")
    # The main protocol: baselines and the main meta-scheduler. Other architectures, controls
    # and ablations are compared in their own table (compare_meta_variants).
    variant = pl.col("scheduler").map_elements(is_meta, return_dtype=pl.Boolean) & (pl.col("scheduler") != META)
    runs = every_run.filter(~variant)
    tuned_lr = choose_tuned_lr(runs)
    targets = compute_targets(runs, tuned_lr)
    every_measured = every_run.join(curve_metrics(every_run, trajectories, targets), on="run_id", how="left")
    measured = every_measured.filter(~variant)
    framings = [SELF_TUNING] + ([EXTERNALLY_TUNED] if has_grid(runs) else [])
    comparable = pl.concat([framing_runs(measured, tuned_lr, f) for f in framings], how="diagonal_relaxed")
    comparisons = [
        row
        for _, group in sorted(comparable.partition_by(["framing", "task"], as_dict=True).items())
        for row in _compare_task(group, resamples)
    ]
    ratios, scores = _profiles(comparable)
    return Evaluation(
        run_metrics=measured,
        tuned_lr=tuned_lr,
        targets=targets,
        comparisons=pl.DataFrame(comparisons, infer_schema_length=None),
        across_tasks=_across_tasks(comparable, resamples),
        profile_ratios=ratios,
        profile_scores=scores,
        meta_variants=compare_meta_variants(every_measured, resamples),
        meta_runs=meta_run_summary(every_measured),
    )


def is_indicative(n_tasks: int, n_seeds: int) -> bool:
    """Aggregate claims need at least 12 held-out tasks and 8 seeds (config/bench.yaml); less is indicative.

    With 8 seeds an exact two-sided Wilcoxon signed-rank test per task can reach p = 2 / 2^8 = 0.0078.
    """
    return n_tasks < 12 or n_seeds < 8


EVALUATION_TABLES = tuple(f.name for f in fields(Evaluation))
# Columns of the evaluation tables (and summary.parquet) derived from wall-clock time or
# memory: like the trajectories' TIMING_COLUMNS, they differ between otherwise identical runs.
EVALUATION_TIMING_COLUMNS = (
    "wall_time_s",
    "train_time_s",
    "step_time_median_s",
    "overhead_s",
    "seconds_to_target",
    "seconds_to_loss_target",
    "target_median_seconds",
    "loss_target_median_seconds",
    *(f"mean_{column}" for column in TIMING_COLUMNS),
)
