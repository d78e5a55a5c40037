"""The comparison's headline figures: how close the self-tuning meta-scheduler comes to tuned
cosine (on every held-out task, and on the tasks of families it never saw) and where it ranks
among the self-tuning entries' performance profiles.

A held-out task is of an *unseen family* when neither its dataset nor its model family appears
in any meta-training or meta-validation run. Both are read from the runs themselves
(``dataset`` and ``model`` in runs.parquet), so the split holds for any config.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from metalr.config import REFERENCE_SCHEDULER
from metalr.evaluate.targets import EXTERNALLY_TUNED, SELF_TUNING
from metalr.schedulers import META

# Within 1%: the meta-scheduler's mean normalised score at least this share of tuned cosine's.
WITHIN = 0.99


def held_out_novelty(eval_runs: pl.DataFrame, seen_runs: pl.DataFrame) -> pl.DataFrame:
    """Per held-out task: its dataset and model family, whether each was seen in meta-training or
    meta-validation (``seen_runs``), and ``unseen_family`` when neither was."""

    def pairs(runs: pl.DataFrame) -> pl.DataFrame:
        return (
            runs.select("task", "dataset", "model")
            .unique("task")
            # ``model`` is the task's model spec as JSON.
            .with_columns(family=pl.col("model").str.json_path_match("$.family"))
        )

    seen = pairs(seen_runs) if seen_runs.height else pl.DataFrame(schema={"dataset": pl.String, "family": pl.String})
    datasets, families = set(seen["dataset"].to_list()), set(seen["family"].to_list())
    return (
        pairs(eval_runs)
        .select(
            "task",
            "dataset",
            "family",
            unseen_dataset=~pl.col("dataset").is_in(sorted(datasets)),
            unseen_model_family=~pl.col("family").is_in(sorted(families)),
        )
        .with_columns(unseen_family=pl.col("unseen_dataset") & pl.col("unseen_model_family"))
        .sort("task")
    )


def against_tuned_cosine(comparisons: pl.DataFrame) -> pl.DataFrame:
    """Per held-out task: the meta-scheduler's mean normalised score (from x1) and externally tuned
    cosine's, and whether the first is within 1% of the second. Normalised scores are
    direction-aware (above 1 = better than untuned cosine), so "within" reads the same for every
    metric. Empty without an LR grid (no externally tuned framing)."""
    tuned = comparisons.filter(pl.col("framing") == EXTERNALLY_TUNED)
    meta = tuned.filter(pl.col("scheduler") == META).select("task", meta="norm_mean")
    cosine = tuned.filter(pl.col("scheduler") == REFERENCE_SCHEDULER).select(
        "task", cosine="norm_mean", cosine_lr_multiplier="lr_multiplier"
    )
    return (
        meta.join(cosine, on="task")
        .with_columns(within=(pl.col("meta") >= WITHIN * pl.col("cosine")).fill_null(False))
        .sort("task")
    )


def profile_rank(profile_scores: pl.DataFrame, framing: str) -> tuple[float, int, int] | None:
    """The meta-scheduler's performance-profile score in ``framing``, its rank among that framing's
    entries (ties share a rank) and their number; None when it has no score there."""
    scores = profile_scores.filter(pl.col("framing") == framing)
    mine = scores.filter(pl.col("scheduler") == META)["score"]
    if not len(mine):
        return None
    return float(mine[0]), 1 + int((scores["score"] > mine[0]).sum()), scores.height


@dataclass(frozen=True)
class Headline:
    """The machine-readable lines of summary.md, and the per-task table behind the first two."""

    per_task: pl.DataFrame  # task, dataset, family, unseen_family, meta, cosine, within
    profile: tuple[float, int, int] | None  # ``profile_rank`` in the self-tuning framing

    @classmethod
    def of(cls, comparisons: pl.DataFrame, profile_scores: pl.DataFrame, eval_runs: pl.DataFrame, seen_runs):
        novelty = held_out_novelty(eval_runs, seen_runs)
        per_task = novelty.join(against_tuned_cosine(comparisons), on="task", how="left")
        return cls(per_task, profile_rank(profile_scores, SELF_TUNING))

    def _within(self, frame: pl.DataFrame) -> str:
        judged = frame.drop_nulls("meta")
        if judged.is_empty():
            return "n/a (no externally tuned framing: the config has no LR grid)"
        return f"{judged['within'].sum()}/{judged.height}"

    def lines(self) -> list[str]:
        unseen = self.per_task.filter(pl.col("unseen_family"))
        rank = "n/a" if self.profile is None else f"{self.profile[1]} of {self.profile[2]}"
        return [
            f"within_1pct_of_tuned_cosine: {self._within(self.per_task)}",
            f"within_1pct_of_tuned_cosine_unseen_family: {self._within(unseen) if unseen.height else '0/0'}",
            f"self_tuning_profile_rank: {rank}",
        ]
