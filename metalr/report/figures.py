"""The plots: every figure is drawn by a ``draw_*`` function that returns the figure (so tests can
read its lines back) and saved by the matching ``plot_*`` function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from metalr.config import REFERENCE_SCHEDULER
from metalr.evaluate import Evaluation
from metalr.evaluate.profiles import TAU_MAX, profile
from metalr.evaluate.statistics import paired_test
from metalr.io import atomic_path
from metalr.schedulers import META

# Metrics are float32: a mean gain within this fraction of the score's size is rounding, not a win or a loss.
# One fixed colour per scheduler in every figure, so a scheduler is recognisable across
# figures and configs (tab20's pairs: a classic schedule and its relative share a hue).
# The meta-scheduler is the thick black line. tests/test_report.py checks every registered
# scheduler has its own entry.
SCHEDULER_COLOURS = {
    "cosine": "#d62728",
    "warmup-cosine": "#ff9896",
    "constant": "#7f7f7f",
    "explore": "#c7c7c7",
    "step": "#1f77b4",
    "exponential": "#aec7e8",
    "plateau": "#ff7f0e",
    "onecycle": "#ffbb78",
    "linear": "#2ca02c",
    "wsd": "#98df8a",
    "schedulefree": "#9467bd",
    "prodigy": "#c5b0d5",
    "dadapt-adam": "#8c564b",
    "mechanic": "#c49c94",
    "hypergradient": "#e377c2",
    "curvature": "#17becf",
    "metric": "#9edae5",
    "uncertainty": "#bcbd22",
    "resource": "#dbdb8d",
}
# Schedulers outside the mapping (meta-learner variants in ad-hoc plots) share one dark grey.
_UNLISTED_COLOUR = "#404040"
# Verdict colours, in the figures and the HTML summary: meta better, meta worse, neither.
VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "neither": "#6e7781"}


def _style(scheduler: str) -> dict:
    if scheduler == META:
        return {"color": "black", "linewidth": 2.4, "zorder": 3}
    return {"color": SCHEDULER_COLOURS.get(scheduler, _UNLISTED_COLOUR), "linewidth": 1.3}


def verdict_kind(verdict: str | None) -> str:
    """``better``, ``worse`` or ``neither``: how a verdict string is colour-coded."""
    text = verdict or ""
    if text.startswith(("meta better", "better")):
        return "better"
    if text.startswith(("meta worse", "worse")):
        return "worse"
    return "neither"


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


# --- curves -----------------------------------------------------------------------------


def curve_table(runs: pl.DataFrame, trajectories: pl.DataFrame, column: str, multiplier: float = 1.0) -> pl.DataFrame:
    """Per (task, scheduler, step) at base LR x ``multiplier``: mean, min and max of ``column`` over seeds."""
    if column not in trajectories.columns:
        return pl.DataFrame(schema={"task": pl.String, "scheduler": pl.String, "step": pl.Int32})
    joined = trajectories.select("run_id", "step", column).join(
        runs.filter(pl.col("lr_multiplier") == multiplier).select("run_id", "task", "scheduler"), on="run_id"
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
    """One task: a row per base LR multiplier, a panel per curve, a line per scheduler (mean over seeds)
    with a min-max band."""
    plt = _pyplot()
    runs = runs.filter(pl.col("task") == task)
    panels = curve_panels(runs, trajectories)
    multipliers = sorted(runs["lr_multiplier"].unique().to_list())
    fig, axes = plt.subplots(
        len(multipliers),
        len(panels),
        figsize=(3.6 * len(panels) + 1.4, 2.9 * len(multipliers) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for row, multiplier in zip(axes, multipliers, strict=True):
        for ax, (column, label, log_scale) in zip(row, panels, strict=True):
            table = curve_table(runs, trajectories, column, multiplier)
            for (scheduler,), curve in sorted(table.partition_by("scheduler", as_dict=True).items()):
                style = _style(scheduler)
                ax.fill_between(curve["step"], curve["low"], curve["high"], color=style["color"], alpha=0.15, lw=0)
                ax.plot(curve["step"], curve["mean"], label=scheduler, **style)
            ax.set_title(f"{label}, base LR x{multiplier:g}", fontsize=9)
            ax.set_xlabel("optimizer step", fontsize=8)
            if log_scale:
                ax.set_yscale("log")
    # One legend for the figure, from the row with the most schedulers (the default base LR's).
    fullest = max(axes, key=lambda row: len(row[0].get_lines()))
    fig.legend(*fullest[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.suptitle(f"{task}: mean over seeds, band = min..max, one row per base LR multiplier")
    return fig


def plot_task_curves(runs: pl.DataFrame, trajectories: pl.DataFrame, task: str, out: str | Path) -> None:
    _save(draw_task_curves(runs, trajectories, task), out)


def draw_lr_gallery(runs: pl.DataFrame, trajectories: pl.DataFrame):
    """One panel per scheduler: LR / the task's default base LR against training progress, a colour per
    held-out task and a line style per base LR multiplier (x0.1 starts at 0.1, x10 at 10)."""
    plt = _pyplot()
    joined = trajectories.select("run_id", "progress", "lr").join(
        runs.select("run_id", "task", "scheduler", "base_lr", "lr_multiplier"), on="run_id"
    )
    table = (
        joined.group_by("scheduler", "task", "lr_multiplier", "progress")
        .agg(multiplier=(pl.col("lr") * pl.col("lr_multiplier") / pl.col("base_lr")).mean())
        .sort("scheduler", "task", "lr_multiplier", "progress")
    )
    schedulers = sorted(table["scheduler"].unique().to_list(), key=lambda s: (s == META, s))
    tasks = sorted(table["task"].unique().to_list())
    colours = {task: f"C{i}" for i, task in enumerate(tasks)}
    styles = {0.1: ":", 1.0: "-", 10.0: "--"}
    cols = min(3, len(schedulers))
    rows = -(-len(schedulers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, scheduler in zip(axes.flat, schedulers, strict=False):
        curves = table.filter(pl.col("scheduler") == scheduler).partition_by("task", "lr_multiplier", as_dict=True)
        # The default base LR's lines first, so they are the ones labelled by task.
        for (task, multiplier), curve in sorted(curves.items(), key=lambda kv: (kv[0][1] != 1.0, kv[0])):
            ax.plot(
                curve["progress"],
                curve["multiplier"],
                label=task if multiplier == 1.0 else f"{task} x{multiplier:g}",
                color=colours[task],
                linestyle=styles.get(multiplier, "-."),
                linewidth=1.2,
            )
        ax.set_title(scheduler, fontsize=10, fontweight="bold" if scheduler == META else "normal")
        ax.set_yscale("log")
        ax.set_xlabel("training progress")
    for ax in list(axes.flat)[len(schedulers) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("LR / default base LR (mean over seeds)")
    axes.flat[len(schedulers) - 1].legend(fontsize=7)
    fig.suptitle("LR schedules on the held-out tasks; dotted: base LR x0.1, solid: x1, dashed: x10")
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


# --- the first screen: meta against cosine, per task and base LR --------------------------

UNTUNED_COSINE = "untuned cosine"
TUNED_COSINE = "tuned cosine"
# Resamples of the gain figure's intervals: the evaluation's default (config evaluate.bootstrap_resamples).
_GAIN_RESAMPLES = 2000


def gain_table(evaluation: Evaluation, resamples: int = _GAIN_RESAMPLES) -> pl.DataFrame:
    """Per held-out task, base LR multiplier of the meta-scheduler and comparator: its normalised gain over cosine.

    The gain is, per seed, the meta-scheduler's normalised score minus cosine's (both relative
    to untuned cosine at the default base LR), averaged over seeds with a 95% bootstrap
    interval and the paired tests' verdict. *untuned cosine* starts from the same base LR as
    the meta-scheduler; *tuned cosine* from the grid point chosen on validation data.
    """
    runs = evaluation.run_metrics
    reference = REFERENCE_SCHEDULER
    tuned = dict(
        evaluation.tuned_lr.filter(pl.col("scheduler") == reference).select("task", "lr_multiplier").iter_rows()
    )
    norms = {
        key: dict(group.select("seed", "norm_score").iter_rows())
        for key, group in runs.partition_by(["task", "scheduler", "lr_multiplier"], as_dict=True).items()
    }
    rows = []
    for task, scheduler, multiplier in sorted(norms):
        if scheduler != META:
            continue
        meta = norms[(task, scheduler, multiplier)]
        comparators = [(UNTUNED_COSINE, multiplier)] + ([(TUNED_COSINE, tuned[task])] if task in tuned else [])
        for comparator, at in comparators:
            cosine = norms.get((task, reference, at), {})
            gains = [
                meta[seed] - cosine[seed] for seed in meta if seed in cosine and None not in (meta[seed], cosine[seed])
            ]
            test = paired_test(gains, resamples=resamples)
            rows.append(
                {
                    "task": task,
                    "lr_multiplier": multiplier,
                    "comparator": comparator,
                    "comparator_lr_multiplier": at,
                    "n_pairs": test.n,
                    "gain": test.mean_gain,
                    "ci_low": test.ci_low,
                    "ci_high": test.ci_high,
                    "verdict": test.verdict,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "task": pl.String,
            "lr_multiplier": pl.Float64,
            "comparator": pl.String,
            "comparator_lr_multiplier": pl.Float64,
            "n_pairs": pl.Int64,
            "gain": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "verdict": pl.String,
        },
    )


def draw_gain(gains: pl.DataFrame):
    """One panel per held-out task: the meta-scheduler's normalised gain over cosine at each base LR, 95% CI.

    Circles: against cosine from the same base LR (untuned); squares: against cosine at its
    tuned base LR. Colour is the verdict of the paired tests by seed.
    """
    plt = _pyplot()
    tasks = sorted(gains["task"].unique().to_list())
    cols = min(4, max(1, len(tasks)))
    rows = -(-len(tasks) // cols) if tasks else 1
    width = max(9.0, 3.3 * cols)  # the legend's and the title's width, even for one or two tasks
    fig, axes = plt.subplots(rows, cols, figsize=(width, 2.7 * rows + 1.0), squeeze=False, layout="constrained")
    markers = {UNTUNED_COSINE: ("o", -0.14), TUNED_COSINE: ("s", 0.14)}
    for ax, task in zip(axes.flat, tasks, strict=False):
        cells = gains.filter(pl.col("task") == task)
        multipliers = sorted(cells["lr_multiplier"].unique().to_list())
        ax.axhline(0.0, color="black", linewidth=0.8)
        for r in cells.iter_rows(named=True):
            marker, offset = markers[r["comparator"]]
            x = multipliers.index(r["lr_multiplier"]) + offset
            colour = VERDICT_COLOURS[verdict_kind(r["verdict"])]
            if r["gain"] is None:
                continue
            low = r["gain"] if r["ci_low"] is None else r["ci_low"]
            high = r["gain"] if r["ci_high"] is None else r["ci_high"]
            ax.errorbar(
                x,
                r["gain"],
                yerr=[[r["gain"] - low], [high - r["gain"]]],
                fmt=marker,
                color=colour,
                markersize=6,
                capsize=3,
                linewidth=1.4,
            )
        ax.set_xticks(range(len(multipliers)), [f"x{m:g}" for m in multipliers])
        ax.set_xlim(-0.6, len(multipliers) - 0.4)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("base LR (meta-scheduler and untuned cosine)", fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("meta − cosine,\nnormalised score", fontsize=9)
    handles = [
        plt.Line2D([], [], linestyle="", marker="o", color="black", label="vs cosine from the same base LR (untuned)"),
        plt.Line2D([], [], linestyle="", marker="s", color="black", label="vs cosine at its tuned base LR"),
        *(
            plt.Line2D([], [], linestyle="", marker="o", color=VERDICT_COLOURS[kind], label=label)
            for kind, label in (
                ("better", "meta better"),
                ("worse", "meta worse"),
                ("neither", "no significant difference"),
            )
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle("Does the meta-scheduler beat cosine? Normalised-score gain, mean over seeds, 95% CI", fontsize=11)
    return fig


def plot_gain(evaluation: Evaluation, out: str | Path) -> None:
    _save(draw_gain(gain_table(evaluation)), out)


