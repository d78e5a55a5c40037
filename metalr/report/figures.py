"""The plots: every figure is drawn by a ``draw_*`` function that returns the figure (so tests can
read its lines back) and saved by the matching ``plot_*`` function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from metalr.evaluate import Evaluation
from metalr.evaluate.profiles import TAU_MAX, profile
from metalr.io import atomic_path
from metalr.schedulers import META, SCHEDULER_NAMES

# One colour per scheduler in every figure; the meta-scheduler is the thick black line.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _style(scheduler: str) -> dict:
    if scheduler == META:
        return {"color": "black", "linewidth": 2.4, "zorder": 3}
    index = SCHEDULER_NAMES.index(scheduler) if scheduler in SCHEDULER_NAMES else hash(scheduler)
    return {"color": _PALETTE[index % len(_PALETTE)], "linewidth": 1.3}


def _pyplot():
    # Lazy: the Agg backend must be chosen before pyplot is imported, and only plotting rules pay for it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(out).suffix.lstrip(".") or "png")
    _pyplot().close(fig)


def _untuned(runs: pl.DataFrame) -> pl.DataFrame:
    """The self-tuning framing's runs: every scheduler at the task's default base LR."""
    return runs.filter(pl.col("lr_multiplier") == 1.0)


# --- curves -----------------------------------------------------------------------------


def curve_table(runs: pl.DataFrame, trajectories: pl.DataFrame, column: str) -> pl.DataFrame:
    """Per (task, scheduler, step) at the default base LR: mean, min and max of ``column`` over seeds."""
    if column not in trajectories.columns:
        return pl.DataFrame(schema={"task": pl.String, "scheduler": pl.String, "step": pl.Int32})
    joined = trajectories.select("run_id", "step", column).join(
        _untuned(runs).select("run_id", "task", "scheduler"), on="run_id"
    )
    return (
        joined.drop_nulls(column)
        .group_by("task", "scheduler", "step")
        .agg(mean=pl.col(column).mean(), low=pl.col(column).min(), high=pl.col(column).max())
        .sort("task", "scheduler", "step")
    )


def curve_panels(runs: pl.DataFrame, trajectories: pl.DataFrame) -> list[tuple[str, str, bool]]:
    """(column, label, log scale) of each panel; curvature only where a probe recorded it."""
    metric = runs["metric"][0]
    panels = [
        (f"val_{metric}", f"validation {metric}", False),
        ("val_loss", "validation loss", False),
        ("lr", "learning rate", True),
        ("loss_ema", "train loss (EMA)", True),
        ("grad_norm", "gradient norm", True),
    ]
    if "curv_lambda_max" in trajectories.columns and trajectories["curv_lambda_max"].drop_nulls().len():
        panels.append(("curv_lambda_max", "Hessian λ_max", True))
    return panels


def draw_task_curves(runs: pl.DataFrame, trajectories: pl.DataFrame, task: str):
    """One task: a panel per curve, one line per scheduler (mean over seeds) with a min-max band."""
    plt = _pyplot()
    runs = runs.filter(pl.col("task") == task)
    panels = curve_panels(runs, trajectories)
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax, (column, label, log_scale) in zip(axes.flat, panels, strict=False):
        table = curve_table(runs, trajectories, column)
        for (scheduler,), curve in sorted(table.partition_by("scheduler", as_dict=True).items()):
            style = _style(scheduler)
            ax.fill_between(curve["step"], curve["low"], curve["high"], color=style["color"], alpha=0.15, lw=0)
            ax.plot(curve["step"], curve["mean"], label=scheduler, **style)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("optimizer step")
        if log_scale:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{task}: mean over seeds, band = min..max, default base LR")
    fig.tight_layout()
    return fig


def plot_task_curves(runs: pl.DataFrame, trajectories: pl.DataFrame, task: str, out: str | Path) -> None:
    _save(draw_task_curves(runs, trajectories, task), out)


def draw_lr_gallery(runs: pl.DataFrame, trajectories: pl.DataFrame):
    """One panel per scheduler: LR / base LR against training progress, one line per held-out task."""
    plt = _pyplot()
    joined = trajectories.select("run_id", "progress", "lr").join(
        _untuned(runs).select("run_id", "task", "scheduler", "base_lr"), on="run_id"
    )
    table = (
        joined.group_by("scheduler", "task", "progress")
        .agg(multiplier=(pl.col("lr") / pl.col("base_lr")).mean())
        .sort("scheduler", "task", "progress")
    )
    schedulers = sorted(table["scheduler"].unique().to_list(), key=lambda s: (s == META, s))
    cols = min(3, len(schedulers))
    rows = -(-len(schedulers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, scheduler in zip(axes.flat, schedulers, strict=False):
        for (task,), curve in sorted(
            table.filter(pl.col("scheduler") == scheduler).partition_by("task", as_dict=True).items()
        ):
            ax.plot(curve["progress"], curve["multiplier"], label=task, linewidth=1.2)
        ax.set_title(scheduler, fontsize=10, fontweight="bold" if scheduler == META else "normal")
        ax.set_yscale("log")
        ax.set_xlabel("training progress")
    for ax in list(axes.flat)[len(schedulers) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("LR / base LR (mean over seeds)")
    axes.flat[len(schedulers) - 1].legend(fontsize=7)
    fig.suptitle("LR schedules on the held-out tasks, default base LR")
    fig.tight_layout()
    return fig


def plot_lr_gallery(runs: pl.DataFrame, trajectories: pl.DataFrame, out: str | Path) -> None:
    _save(draw_lr_gallery(runs, trajectories), out)


def draw_performance_profiles(evaluation: Evaluation):
    """Per framing: rho(tau), the fraction of tasks a scheduler reaches the target within tau x the fastest."""
    plt = _pyplot()
    framings = evaluation.framings
    fig, axes = plt.subplots(1, len(framings), figsize=(5.5 * len(framings), 4.0), squeeze=False)
    taus = np.linspace(1.0, TAU_MAX, 301)
    for ax, framing in zip(axes.flat, framings, strict=True):
        ratios = evaluation.profile_ratios.filter(pl.col("framing") == framing)
        scores = dict(
            evaluation.profile_scores.filter(pl.col("framing") == framing).select("scheduler", "score").iter_rows()
        )
        curves = profile(ratios, taus)
        for (scheduler,), curve in sorted(curves.partition_by("scheduler", as_dict=True).items()):
            ax.step(
                curve["tau"],
                curve["rho"],
                where="post",
                label=f"{scheduler} ({scores[scheduler]:.2f})",
                **_style(scheduler),
            )
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("τ (time to target ÷ fastest scheduler's)")
        ax.set_ylabel("fraction of held-out tasks")
        ax.set_title(f"{framing}")
        ax.legend(fontsize=8, title="integrated score", title_fontsize=8)
    fig.suptitle("Performance profiles: optimizer steps to the validation target")
    fig.tight_layout()
    return fig


def plot_performance_profiles(evaluation: Evaluation, out: str | Path) -> None:
    _save(draw_performance_profiles(evaluation), out)
