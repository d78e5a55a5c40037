"""The two framings of the comparison and the targets that time-to-target is measured against.

- *self-tuning*: every scheduler at the task's default base LR;
- *externally tuned*: each baseline at the grid point with the best validation metric
  (median over seeds), never looking at test data. The meta-scheduler is always self-tuning.
"""

from __future__ import annotations

import math

import polars as pl

from metalr.schedulers import MACHINE_DEPENDENT, META

SELF_TUNING = "self-tuning"
EXTERNALLY_TUNED = "externally tuned"


def _worst(higher_is_better: pl.Expr) -> pl.Expr:
    return pl.when(higher_is_better).then(pl.lit(-math.inf)).otherwise(pl.lit(math.inf))


def validation_value(column: str, higher_is_better: pl.Expr) -> pl.Expr:
    """A run's final value of ``column`` on validation data; a run that did not finish gets the worst value."""
    return (
        pl.when((pl.col("status") == "ok") & pl.col(column).is_not_null())
        .then(pl.col(column))
        .otherwise(_worst(higher_is_better))
    )


def _best_by_median(runs: pl.DataFrame, column: str, higher_is_better: pl.Expr, keys: list[str]) -> pl.DataFrame:
    """Median over seeds of each group's validation value of ``column``; ``better`` is signed so larger wins."""
    return (
        runs.with_columns(value=validation_value(column, higher_is_better), hib=higher_is_better)
        .group_by(keys)
        .agg(pl.col("value").median(), pl.col("hib").first())
        .with_columns(better=pl.when(pl.col("hib")).then(pl.col("value")).otherwise(-pl.col("value")))
    )


def choose_tuned_lr(runs: pl.DataFrame) -> pl.DataFrame:
    """Per (task, baseline): the LR multiplier with the best median final validation metric.

    Ties go to the multiplier closest to the default (1), so an uninformative grid keeps
    the default. Uses validation data only.
    """
    baselines = runs.filter(pl.col("scheduler") != META)
    ranked = _best_by_median(
        baselines, "final_val_metric", pl.col("higher_is_better"), ["task", "scheduler", "lr_multiplier"]
    ).with_columns(distance=pl.col("lr_multiplier").log().abs())
    return (
        # Ties: nearest the default, then the smaller multiplier, so the choice never depends on row order.
        ranked.sort(["better", "distance", "lr_multiplier"], descending=[True, False, False])
        .group_by("task", "scheduler", maintain_order=True)
        .first()
        .select("task", "scheduler", "lr_multiplier", val_median=pl.col("value"))
        .sort("task", "scheduler")
    )


def framing_runs(runs: pl.DataFrame, tuned_lr: pl.DataFrame, framing: str) -> pl.DataFrame:
    """The runs that make up ``framing``, with a ``framing`` column."""
    if framing == SELF_TUNING:
        chosen = runs.filter(pl.col("lr_multiplier") == 1.0)
    elif framing == EXTERNALLY_TUNED:
        tuned = runs.join(
            tuned_lr.select("task", "scheduler", "lr_multiplier"), on=["task", "scheduler", "lr_multiplier"]
        )
        # The meta-scheduler is self-tuning: at the task's default base LR in both framings.
        meta = runs.filter((pl.col("scheduler") == META) & (pl.col("lr_multiplier") == 1.0))
        chosen = pl.concat([tuned, meta], how="vertical_relaxed")
    else:
        raise ValueError(f"unknown framing {framing!r}; framings: {SELF_TUNING!r}, {EXTERNALLY_TUNED!r}")
    return chosen.with_columns(framing=pl.lit(framing))


def has_grid(runs: pl.DataFrame) -> bool:
    """Whether any baseline ran at more than one base LR, i.e. the externally tuned framing exists."""
    return runs.filter(pl.col("scheduler") != META)["lr_multiplier"].n_unique() > 1


def compute_targets(runs: pl.DataFrame, tuned_lr: pl.DataFrame) -> pl.DataFrame:
    """Per task: the validation-metric target and the validation-loss threshold.

    Each is the median over seeds of the best tuned baseline's final validation value; with
    no grid the tuned baselines are the untuned ones. A target no baseline reached in at
    least half its seeds is null (nothing can be timed against it). Baselines that read the
    machine's timings (``MACHINE_DEPENDENT``) never set a target: every time-to-target would
    then change from one run of the same config to the next.
    """
    framing = EXTERNALLY_TUNED if has_grid(runs) else SELF_TUNING
    baselines = framing_runs(runs, tuned_lr, framing).filter(
        (pl.col("scheduler") != META) & ~pl.col("scheduler").is_in(MACHINE_DEPENDENT)
    )
    metric = _best_by_median(baselines, "final_val_metric", pl.col("higher_is_better"), ["task", "scheduler"])
    loss = _best_by_median(baselines, "final_val_loss", pl.lit(False), ["task", "scheduler"])

    def best(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return (
            # Ties go to the first scheduler by name, so the target's source never depends on row order.
            frame.sort(["better", "scheduler"], descending=[True, False])
            .group_by("task", maintain_order=True)
            .first()
            .select(
                "task",
                pl.when(pl.col("value").is_finite()).then(pl.col("value")).alias(name),
                pl.col("scheduler").alias(f"{name}_from"),
            )
        )

    return (
        best(metric, "metric_target")
        .join(best(loss, "loss_target"), on="task")
        .with_columns(targets_from=pl.lit("tuned baselines" if framing == EXTERNALLY_TUNED else "untuned baselines"))
        .sort("task")
    )
