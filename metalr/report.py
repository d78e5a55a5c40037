"""Human-facing output: the plots, and ``summary.md`` with its tables, intervals and verdicts.

Every figure is drawn by a ``draw_*`` function that returns the figure (so tests can read
its lines back) and saved by the matching ``plot_*`` function.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from metalr.config import REFERENCE_SCHEDULER
from metalr.evaluate import Evaluation, is_indicative
from metalr.evaluate.profiles import TAU_MAX, profile
from metalr.evaluate.statistics import ALPHA, paired_test, wilcoxon_min_p
from metalr.evaluate.targets import EXTERNALLY_TUNED, SELF_TUNING
from metalr.io import atomic_path
from metalr.schedulers import META

# Metrics are float32: a mean gain within this fraction of the score's size is rounding, not a win or a loss.
_TIE = 1e-6
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


def framing_sentences(evaluation: Evaluation) -> list[str]:
    """One sentence per framing: the meta-scheduler against the strongest baseline first, then against cosine."""
    explain = {
        SELF_TUNING: "every scheduler at the task's default base LR",
        EXTERNALLY_TUNED: "each baseline at its base LR chosen on validation data, the meta-scheduler at the default",
    }
    across = evaluation.across_tasks
    lines = []
    for framing in evaluation.framings:
        rows = across.filter(pl.col("framing") == framing).drop_nulls("mean_norm_gain") if across.height else across
        head = f"**{framing}** ({explain.get(framing, framing)}): "
        if rows.is_empty():
            lines.append(head + "no baseline could be compared with the meta-scheduler across tasks.")
            continue
        strongest = rows.sort("mean_norm_gain", "scheduler").row(0, named=True)
        tasks = f"{strongest['n_tasks']} held-out task" + ("" if strongest["n_tasks"] == 1 else "s")
        sentence = (
            f"{head}against the strongest baseline, {strongest['scheduler']}, the meta-scheduler's mean "
            f"normalised-score gain over {tasks} is {_gain_ci(strongest)}"
        )
        cosine = rows.filter(pl.col("scheduler") == REFERENCE_SCHEDULER)
        if strongest["scheduler"] != REFERENCE_SCHEDULER and cosine.height:
            which = "tuned cosine" if framing == EXTERNALLY_TUNED else "cosine"
            sentence += f"; against {which} it is {_gain_ci(cosine.row(0, named=True))}"
        lines.append(sentence + ".")
    return lines


def _gain_ci(row: dict) -> str:
    interval = "" if row["ci_low"] is None else f" [95% CI {row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    return f"{row['mean_norm_gain']:+.4f}{interval} ({row['verdict']}, Holm p = {_p(row['holm_p'])})"


# --- summary.md -------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _ci(mean: float | None, low: float | None, high: float | None, digits: int = 4, signed: bool = False) -> str:
    if mean is None:
        return "n/a"
    head = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    if low is None:
        return head
    return f"{head} [{low:.{digits}f}, {high:.{digits}f}]"


_TASK_HEADER = (
    "| scheduler | base LR | test metric [95% CI] | normalised [95% CI] "
    "| meta − this [95% CI] | t-test p | Wilcoxon p | verdict | diverged |"
)
_HITS_HEADER = (
    "| task | scheduler | metric hit rate | steps | epochs | train s | loss hit rate | steps | epochs | train s |"
)


def _table(header: str, rows: Sequence[Sequence[str]], extra: Sequence[str] = ()) -> list[str]:
    """A Markdown table from its header row (``"| a | b |"``), extra trailing columns, and the body."""
    names = [h.strip() for h in header.strip("| ").split(" | ")] + list(extra)
    return [
        "| " + " | ".join(names) + " |",
        "|" + "---|" * len(names),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _ordered(frame: pl.DataFrame) -> pl.DataFrame:
    """Meta-scheduler first, then the baselines by name."""
    return frame.with_columns(_meta_last=pl.col("scheduler") != META).sort("_meta_last", "scheduler").drop("_meta_last")


def _size_limits(evaluation: Evaluation) -> list[str]:
    """Where a Wilcoxon test cannot reach significance: too few seeds or tasks, or too many ties."""
    comparisons, across = evaluation.comparisons, evaluation.across_tasks
    tested = comparisons.drop_nulls("wilcoxon_min_p") if "wilcoxon_min_p" in comparisons.columns else None
    lines = []
    floor = "its smallest possible two-sided p-value is 2 / 2^n for n non-zero differences"
    if tested is not None and (unreachable := tested.filter(pl.col("wilcoxon_min_p") >= ALPHA)).height:
        seeds = int(tested["n_pairs"].max())
        if wilcoxon_min_p(seeds) >= ALPHA:
            lines.append(
                f"- With {seeds} seeds per task, an exact two-sided Wilcoxon signed-rank test cannot go below "
                f"p = {wilcoxon_min_p(seeds):.4g} ({floor}), so it can never reach p < {ALPHA}; per-task verdicts "
                'rest on the paired t-test alone and say "(t-test only)".'
            )
        else:
            lines.append(
                f"- In {unreachable.height} of {tested.height} per-task comparisons at most 5 seeds give the two "
                f"schedulers different scores (ties drop out), so the Wilcoxon test cannot reach p < {ALPHA} "
                f'({floor}); those verdicts rest on the paired t-test alone and say "(t-test only)".'
            )
    if across.height and (across["wilcoxon_min_p"] >= ALPHA).any():
        tasks = int(across["n_tasks"].max())
        reason = (
            f"with {tasks} held-out tasks the across-task Wilcoxon test cannot go below p = {wilcoxon_min_p(tasks):.4g}"
            if wilcoxon_min_p(tasks) >= ALPHA
            else "some across-task comparisons have too many tied tasks for the Wilcoxon test"
        )
        lines.append(f"- {reason[0].upper()}{reason[1:]}, so those verdicts cannot be significant at {ALPHA}.")
    return lines


def _standing(evaluation: Evaluation) -> list[str]:
    """Plain sentences: where the meta-scheduler wins and, above all, where it loses."""
    lines = []
    tested = evaluation.comparisons.filter(pl.col("scheduler") != META).drop_nulls("meta_gain")
    for framing in evaluation.framings:
        rows = tested.filter(pl.col("framing") == framing)
        tie = _TIE * pl.max_horizontal(pl.col("mean").abs(), pl.lit(1.0))
        losses = rows.filter(pl.col("meta_gain") < -tie).sort("meta_gain")
        wins = rows.filter(pl.col("meta_gain") > tie)
        significant_losses = losses.filter(pl.col("verdict").str.starts_with("meta worse"))
        lines.append(
            f"- **{framing}**: of {rows.height} (task, baseline) pairs, the meta-scheduler's mean test metric is "
            f"better on {wins.height}, worse on {losses.height}, "
            f"and significantly worse on {significant_losses.height}."
        )
        where = "; ".join(
            f"{r['task']} vs {r['scheduler']}{_lr_note(r)} ({r['meta_gain']:+.4f} {r['metric']}, {r['verdict']})"
            for r in losses.iter_rows(named=True)
        )
        lines.append(f"  - It loses on: {where or 'none'}.")
        scores = evaluation.profile_scores.filter(pl.col("framing") == framing)
        meta_score = scores.filter(pl.col("scheduler") == META)["score"]
        if len(meta_score):
            rank = 1 + int((scores["score"] > meta_score[0]).sum())
            lines.append(
                f"  - Time to target: performance-profile score {meta_score[0]:.3f}, rank {rank} of {scores.height} "
                f"(ties share a rank; best: {scores['scheduler'][0]}, {scores['score'][0]:.3f})."
            )
    return lines


def _lr_note(row: dict) -> str:
    return "" if row["lr_multiplier"] == 1.0 else f" (LR x{row['lr_multiplier']:.3g})"


def _task_tables(evaluation: Evaluation, framing: str) -> list[str]:
    lines = []
    frame = evaluation.comparisons.filter(pl.col("framing") == framing)
    targets = {r["task"]: r for r in evaluation.targets.iter_rows(named=True)}
    for (task,), rows in sorted(frame.partition_by("task", as_dict=True).items()):
        first = rows.row(0, named=True)
        arrow = "higher is better" if first["higher_is_better"] else "lower is better"
        target = targets.get(task, {})
        lines += [
            f"#### {task} ({framing}; test {first['metric']}, {arrow}; "
            f"validation target {_fmt(target.get('metric_target'))})",
            "",
        ]
        body = []
        for r in _ordered(rows).iter_rows(named=True):
            tested = r.get("verdict") is not None
            body.append(
                [
                    f"**{r['scheduler']}**" if r["scheduler"] == META else r["scheduler"],
                    f"x{r['lr_multiplier']:.3g}",
                    _ci(r["mean"], r["ci_low"], r["ci_high"]),
                    _ci(r["norm_mean"], r["norm_ci_low"], r["norm_ci_high"], 3),
                    _ci(r["meta_gain"], r["meta_gain_ci_low"], r["meta_gain_ci_high"], signed=True) if tested else "",
                    _p(r["t_p"]) if tested else "",
                    _p(r["wilcoxon_p"]) if tested else "",
                    r["verdict"] if tested else "",
                    f"{r['n_diverged']}/{r['n_runs']}",
                ]
            )
        lines += _table(_TASK_HEADER, body)
    return lines


def _across_table(evaluation: Evaluation) -> list[str]:
    rows = [
        [
            r["framing"],
            r["scheduler"],
            str(r["n_tasks"]),
            f"{r['meta_wins']}/{r['meta_losses']}",
            _ci(r["mean_norm_gain"], r["ci_low"], r["ci_high"], 4, signed=True),
            _p(r["wilcoxon_p"]),
            _p(r["holm_p"]),
            r["verdict"],
        ]
        for r in evaluation.across_tasks.iter_rows(named=True)
    ]
    return _table(
        "| framing | meta vs | tasks | meta wins/losses "
        "| mean normalised gain [95% CI] | Wilcoxon p | Holm p | verdict |",
        rows,
    )


def _hits(row: dict, prefix: str) -> list[str]:
    """Hit rate, then median steps, epochs and training seconds of the runs that hit."""
    if row[f"{prefix}_hit_rate"] is None:
        return ["n/a", "", "", ""]
    medians = [row[f"{prefix}_median_{unit}"] for unit in ("steps", "epochs", "seconds")]
    return [f"{row[f'{prefix}_hit_rate']:.0%}", *(_fmt(m, d) for m, d in zip(medians, (0, 2, 2), strict=True))]


def _target_tables(evaluation: Evaluation) -> list[str]:
    targets = [
        [
            r["task"],
            f"{_fmt(r['metric_target'])} ({r['metric_target_from']})",
            f"{_fmt(r['loss_target'])} ({r['loss_target_from']})",
            r["targets_from"],
        ]
        for r in evaluation.targets.iter_rows(named=True)
    ]
    lines = _table("| task | validation-metric target (set by) | validation-loss threshold (set by) | from |", targets)
    for framing in evaluation.framings:
        frame = _ordered(evaluation.comparisons.filter(pl.col("framing") == framing)).sort("task", maintain_order=True)
        body = [
            [r["task"], r["scheduler"] + _lr_note(r), *_hits(r, "target"), *_hits(r, "loss_target")]
            for r in frame.iter_rows(named=True)
        ]
        lines += [f"**{framing}** (medians over the runs that hit; a miss is never averaged)", ""]
        lines += _table(_HITS_HEADER, body)
    return lines


def _profile_table(evaluation: Evaluation) -> list[str]:
    rows = [
        [r["framing"], r["scheduler"], f"{r['score']:.3f}", f"{r['solved']}/{r['tasks']}"]
        for r in evaluation.profile_scores.iter_rows(named=True)
    ]
    return _table("| framing | scheduler | integrated score over τ ∈ [1, 4] | tasks within 4x |", rows)


def _per_run_table(evaluation: Evaluation, header: str, cells, probe_prefix: str) -> list[str]:
    """A self-tuning-framing row per (task, scheduler): ``cells(row)``, then the means of any probes with the prefix."""
    frame = _ordered(evaluation.comparisons.filter(pl.col("framing") == SELF_TUNING)).sort("task", maintain_order=True)
    probes = [c for c in frame.columns if c.startswith(probe_prefix) and frame[c].drop_nulls().len()]
    body = [[r["task"], r["scheduler"], *cells(r), *(_g(r[c]) for c in probes)] for r in frame.iter_rows(named=True)]
    return _table(header, body, extra=[c.removeprefix("mean_") for c in probes])


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _sci(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2e}"


def _ms(seconds: float | None) -> str:
    return _fmt(None if seconds is None else seconds * 1000, 3)


def _dynamics_table(evaluation: Evaluation) -> list[str]:
    return _per_run_table(
        evaluation,
        "| task | scheduler | final train loss | final val loss | convergence epoch "
        "| val-curve mean | train-loss var | val-loss var | LR changes | mean size (Δ ln LR) | diverged |",
        lambda r: [
            _fmt(r["final_train_loss"]),
            _fmt(r["final_val_loss"]),
            _fmt(r["convergence_epoch"], 2),
            _fmt(r["val_auc"]),
            _sci(r["train_loss_var"]),
            _sci(r["val_loss_var"]),
            _fmt(r["lr_changes"], 0),
            _fmt(r["lr_change_mean"], 4),
            f"{r['divergence_rate']:.0%}",
        ],
        "mean_unc_",
    )


def _overhead_table(evaluation: Evaluation) -> list[str]:
    return _per_run_table(
        evaluation,
        "| task | scheduler | median step ms | overhead vs constant ms | training s / run | wall s / run |",
        lambda r: [
            _ms(r["step_time_median_s"]),
            _ms(r["overhead_s"]),
            _fmt(r["train_time_s"], 2),
            _fmt(r["wall_time_s"], 2),
        ],
        "mean_res_",
    )


def _other_metrics_table(evaluation: Evaluation) -> list[str]:
    return _per_run_table(evaluation, "| task | scheduler |", lambda r: [], "mean_test_")


def _tuned_lr_table(evaluation: Evaluation) -> list[str]:
    wide = evaluation.tuned_lr.pivot(on="scheduler", index="task", values="lr_multiplier").sort("task")
    schedulers = [c for c in wide.columns if c != "task"]
    body = [[r["task"], *(f"x{r[s]:.3g}" for s in schedulers)] for r in wide.iter_rows(named=True)]
    return _table("| task |", body, extra=schedulers)


def _meta_variant_tables(evaluation: Evaluation, meta_infos: dict[str, dict]) -> list[str]:
    """Per variant and base LR: W/T/L against each comparator, the steps-to-target ratio, divergences, fallbacks."""
    table, runs = evaluation.meta_variants, evaluation.meta_runs
    if table.is_empty():
        return ["No meta-learner variant was evaluated.", ""]
    comparators = sorted(table["comparator"].unique().to_list(), key=lambda c: (c.startswith("meta"), c))
    per_run = runs.group_by("variant", "lr_multiplier").agg(
        n_runs=pl.col("n_runs").sum(), n_diverged=pl.col("n_diverged").sum(), fallback=pl.col("fallback_rate").mean()
    )

    def cell(row: dict) -> str:
        mark = "*" if row["aggregate"] != "not significant" else ""
        return f"{row['wins']}/{row['ties']}/{row['losses']} ({_fmt(row['mean_norm_gain'], 3)}{mark})"

    body = []
    for (name, multiplier), group in sorted(table.partition_by(["variant", "lr_multiplier"], as_dict=True).items()):
        cells = {r["comparator"]: r for r in group.iter_rows(named=True)}
        counts = per_run.filter((pl.col("variant") == name) & (pl.col("lr_multiplier") == multiplier)).row(
            0, named=True
        )
        cosine = cells.get("cosine", {})
        body.append(
            [
                f"**{name}**" if name == META else name,
                f"x{multiplier:g}",
                *(cell(cells[c]) if c in cells else "—" for c in comparators),
                _fmt(cosine.get("steps_to_target_ratio"), 2),
                f"{counts['n_diverged']}/{counts['n_runs']}",
                _fmt(counts["fallback"], 3),
            ]
        )
    lines = _table(
        "| variant | base LR |", body, extra=[*comparators, "steps to target / cosine", "diverged", "OOD rate"]
    )
    lines += [
        "Cells: tasks won/tied/lost in a per-task paired test by seed (t-test and Wilcoxon, p < "
        f"{ALPHA}), then the mean over tasks of the normalised-score gain; `*` marks a Holm-corrected Wilcoxon "
        "across tasks below the threshold. Every comparator started from the same base LR. Steps to target / "
        "cosine: median, over the tasks where both reach the validation target in at least half their seeds, "
        "of the ratio of median steps to it (n/a: no such task). OOD rate: the fraction of decisions whose "
        "inputs lay beyond the fallback threshold; these runs ran with the fallback off, so the headline "
        "numbers include those decisions.",
        "",
        "Variants:",
        "",
        *(
            f"- `{name}`: {meta_infos.get(name, {}).get('about', 'n/a')}"
            for name in sorted(table["variant"].unique().to_list())
        ),
        "",
    ]
    return lines


def _fallback_table(evaluation: Evaluation) -> list[str]:
    main = evaluation.meta_runs.filter(pl.col("variant") == META) if not evaluation.meta_runs.is_empty() else None
    if main is None or main.is_empty():
        return []
    body = [
        [r["task"], f"x{r['lr_multiplier']:g}", _fmt(r["fallback_rate"], 3), f"{r['n_diverged']}/{r['n_runs']}"]
        for r in main.sort("task", "lr_multiplier").iter_rows(named=True)
    ]
    return _table("| task | base LR | OOD (fallback) rate | diverged |", body)


def _fit_table(meta_infos: dict[str, dict]) -> list[str]:
    body = []
    for name, info in sorted(meta_infos.items()):
        fit = info.get("fit", {})
        body.append(
            [
                name,
                info.get("arch", "?"),
                str(len(info.get("features", []))),
                str(fit.get("n_train_labels", "?")),
                f"{fit.get('best_epoch', 0)}/{fit.get('epochs_run', 0)}",
                _fmt(fit.get("val_loss")),
                _fmt(fit.get("cosine_val_loss")),
                _fmt(fit.get("wall_time_s"), 1),
            ]
        )
    return _table(
        "| variant | arch | inputs | labelled states | best/run epochs | meta-val label MSE | cosine (a=0) MSE "
        "| fit s |",
        body,
    )


def summary_markdown(
    evaluation: Evaluation, meta_infos: dict[str, dict], collect_runs: pl.DataFrame, gain_figure: str | None = None
) -> str:
    """The whole results page: where the meta-scheduler stands, then every table behind it.

    The first screen answers "does it beat cosine?": the gain figure (``gain_figure``, a
    path relative to the page, drawn by ``plot_gain``) and one sentence per framing.
    """
    meta_info = meta_infos.get(META, {})
    runs = evaluation.run_metrics
    n_tasks, n_seeds = runs["task"].n_unique(), runs["seed"].n_unique()
    indicative = is_indicative(n_tasks, n_seeds)
    lines = ["# metalr results", ""]
    if gain_figure is not None:
        lines += [f"![The meta-scheduler's normalised-score gain over cosine, per task and base LR]({gain_figure})", ""]
    lines += [*(f"- {sentence}" for sentence in framing_sentences(evaluation)), ""]
    if indicative:
        lines += [
            f"**Indicative only**: {n_tasks} held-out tasks × {n_seeds} seeds. Aggregate claims need "
            "`config/bench.yaml` (at least 12 held-out tasks and 10 seeds).",
            "",
        ]
    else:
        lines += [f"{n_tasks} held-out tasks × {n_seeds} seeds.", ""]
    lines += [*_size_limits(evaluation), "", "## Where the meta-scheduler stands", "", *_standing(evaluation), ""]
    lines += [
        "## Every meta-learner at each base LR",
        "",
        "The main model (`meta`), the other architectures, the controls (`meta-progress-only`: progress and "
        "log(lr/base) only; `meta-shuffled`: state inputs permuted across runs within progress bins) and the "
        "ablations (one feature group removed, or the resource inputs added; default base LR only), each "
        "against every baseline started from the same base LR. The features carry signal only where the full "
        "model wins against `meta-progress-only` in a paired test.",
        "",
        *_meta_variant_tables(evaluation, meta_infos),
        "### Out-of-distribution decisions of the main model per task",
        "",
        *_fallback_table(evaluation),
    ]
    lines += [
        "## How to read this",
        "",
        "- **score**: the final test metric at the budget; a diverged or failed run scores the trivial "
        "baseline's metric (majority class / train mean).",
        "- **normalised score**: per seed, the score relative to untuned cosine on the same task "
        "(above 1 = better than cosine, whatever the metric's direction).",
        "- **self-tuning**: every scheduler at the task's default base LR. **externally tuned**: each baseline at "
        "the grid point with the best median final *validation* metric; the meta-scheduler stays self-tuning.",
        "- **meta − this**: the meta-scheduler's test score minus this scheduler's, paired by seed, signed so "
        "positive means the meta-scheduler is better. Verdicts need the paired t-test and the Wilcoxon "
        f"signed-rank test both below p = {ALPHA}. Intervals are 95% percentile bootstraps of the mean.",
        "- Timings were taken on whatever machine ran the pipeline; on a shared machine they are noisy.",
        "",
        "## Final test metric per held-out task",
        "",
    ]
    for framing in evaluation.framings:
        lines += [f"### {framing}", "", *_task_tables(evaluation, framing)]
    lines += [
        "## Across tasks",
        "",
        "Per task, the mean over seeds of the meta-scheduler's normalised score minus the baseline's; a Wilcoxon "
        "signed-rank test across tasks; Holm's correction over the baselines of each framing.",
        "",
        *_across_table(evaluation),
        "## Time to target",
        "",
        "Target: the median over seeds of the best tuned baseline's final validation metric (untuned where no "
        "grid was run); the validation-loss threshold likewise. Hit rate over all runs; steps, epochs and "
        "training seconds are medians over the runs that hit.",
        "",
        *_target_tables(evaluation),
        "## Performance profiles",
        "",
        "Time = median over seeds of optimizer steps to the validation-metric target (a miss is infinite). "
        "Score = area under ρ(τ) over τ ∈ [1, 4] divided by 3, as in AlgoPerf. See `plots/performance_profiles.png`.",
        "",
        *_profile_table(evaluation),
        "## Training dynamics (self-tuning framing)",
        "",
        "Convergence epoch: the last evaluation that improved the validation loss by more than 1% of the best so far "
        "(median over finished runs). Val-curve mean: area under the validation-metric curve over training "
        "progress, divided by its span. Variances: over the second half of the budget, where the trend has "
        "flattened. LR changes: steps whose LR differs from the previous step's.",
        "",
        *_dynamics_table(evaluation),
        "## Every test metric (self-tuning framing)",
        "",
        "Mean over the finished runs of every test metric each task logs; the primary one is above.",
        "",
        *_other_metrics_table(evaluation),
        "## Overhead and resources (self-tuning framing)",
        "",
        "Median step time per run, median over seeds; overhead against the constant-LR loop on the same task.",
        "",
        *_overhead_table(evaluation),
    ]
    if EXTERNALLY_TUNED in evaluation.framings:
        lines += ["## Base LR chosen on validation data (externally tuned framing)", "", *_tuned_lr_table(evaluation)]
    fit = meta_info.get("fit", {})
    lines += [
        "## Meta-training compute",
        "",
        f"- trajectory collection: {collect_runs.height} runs, {collect_runs['wall_time_s'].sum():.1f} s of training",
        f"- meta-learner fit: {fit.get('wall_time_s', float('nan')):.1f} s, "
        f"{fit.get('epochs_run', 0)} epochs (best {fit.get('best_epoch', 0)}), "
        f"{fit.get('n_train_sequences', 0)} training sequences",
        f"- label MSE on meta-validation: learner {_fmt(fit.get('val_loss'))}, "
        f"untrained (= cosine) {_fmt(fit.get('cosine_val_loss'))}",
        f"- objective: {meta_info.get('objective', 'n/a')}; best-multiplier counts {meta_info.get('label_counts', {})}",
        "",
        *_fit_table(meta_infos),
    ]
    return "\n".join(lines)


def markdown_to_html(markdown: str, title: str = "metalr results", base_dir: str | Path | None = None) -> str:
    """A standalone HTML page of ``markdown`` (tables included), for the Snakemake report.

    Images are read relative to ``base_dir`` and embedded, so the page shows them wherever
    it is opened (the Snakemake report serves it alone); verdict cells are colour-coded and
    wide tables scroll instead of overflowing.
    """
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    if base_dir is not None:
        body = _embed_images(body, Path(base_dir))
    body = re.sub(
        r"<td>((?:meta )?(?:better|worse|no significant difference)[^<]*)</td>",
        lambda m: f'<td class="verdict-{verdict_kind(m.group(1))}">{m.group(1)}</td>',
        body,
    )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;font-size:14px}"
        "table{border-collapse:collapse;margin-bottom:1em;display:block;max-width:100%;overflow-x:auto}"
        "td,th{border:1px solid #ccc;padding:2px 6px}th{background:#f0f0f0}"
        "img{max-width:100%;height:auto}"
        + "".join(f".verdict-{kind}{{color:{colour};font-weight:bold}}" for kind, colour in VERDICT_COLOURS.items())
    )
    head = f"<meta charset='utf-8'><title>{title}</title><style>{style}</style>"
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def _embed_images(html: str, base_dir: Path) -> str:
    """Replace each ``<img src>`` that names a PNG under ``base_dir`` by its data URI."""

    def embed(match: re.Match) -> str:
        path = base_dir / match.group(1)
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return re.sub(r'src="([^":]+\.png)"', embed, html)
