"""Human-facing output: the summary tables in Markdown and the evaluation plots."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from metalr.evaluate import paired_comparison, summarize_runs, verdict
from metalr.io import atomic_path
from metalr.schedulers import META


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def summary_markdown(runs: pl.DataFrame, meta_info: dict, indicative: bool = True) -> str:
    """Mean ± std of the final test metric per held-out task x scheduler, and meta vs cosine."""
    evals = runs.filter(pl.col("phase") == "eval")
    summary = summarize_runs(evals)
    lines = ["# metalr results", ""]
    if indicative:
        lines += [
            "Verdicts below are **indicative**: few seeds and small tasks. Aggregate claims need `config/bench.yaml`.",
            "",
        ]
    lines += [
        "## Final test metric on held-out tasks",
        "",
        "Diverged or failed runs score the trivial baseline's metric (majority class / train mean).",
        "",
    ]
    for task in summary["task"].unique(maintain_order=True):
        rows = summary.filter(pl.col("task") == task)
        first = rows.row(0, named=True)
        arrow = "higher is better" if first["higher_is_better"] else "lower is better"
        lines += [
            f"### {task} (test {first['metric']}, {arrow})",
            "",
            "| scheduler | mean | std | runs | diverged | failed |",
            "|---|---|---|---|---|---|",
        ]
        ordered = rows.sort("mean", descending=first["higher_is_better"])
        for r in ordered.iter_rows(named=True):
            lines.append(
                f"| {r['scheduler']} | {_fmt(r['mean'])} | {_fmt(r['std'])} | {r['n_runs']} | "
                f"{r['n_diverged']} | {r['n_failed']} |"
            )
        lines.append("")
    if META in evals["scheduler"].unique().to_list() and "cosine" in evals["scheduler"].unique().to_list():
        comparison = paired_comparison(evals, META, "cosine")
        lines += [
            "## Meta-scheduler against cosine (paired by seed)",
            "",
            "| task | seeds | mean gain | wins | losses | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for r in comparison.iter_rows(named=True):
            lines.append(
                f"| {r['task']} | {r['n']} | {r['mean_gain']:+.4f} | {r['wins']} | {r['losses']} | {verdict(r)} |"
            )
        worse = [r["task"] for r in comparison.iter_rows(named=True) if verdict(r) == "worse"]
        better = [r["task"] for r in comparison.iter_rows(named=True) if verdict(r) == "better"]
        lines += [
            "",
            f"The meta-scheduler beats cosine on {len(better)} of {comparison.height} held-out tasks "
            f"and loses on {len(worse)}" + (f" ({', '.join(worse)})." if worse else "."),
            "",
        ]
    fit = meta_info.get("fit", {})
    collect = runs.filter(pl.col("phase").is_in(["collect", "metaval"]))
    lines += [
        "## Meta-training compute",
        "",
        f"- trajectory collection: {collect.height} runs, {collect['wall_time_s'].sum():.1f} s of training",
        f"- meta-learner fit: {fit.get('wall_time_s', float('nan')):.1f} s, "
        f"{fit.get('epochs_run', 0)} epochs (best {fit.get('best_epoch', 0)}), "
        f"{fit.get('n_train_sequences', 0)} training sequences",
        f"- imitation MSE on meta-validation: learner {_fmt(fit.get('val_loss'))}, "
        f"untrained (= cosine) {_fmt(fit.get('cosine_val_loss'))}",
        "",
    ]
    return "\n".join(lines)


def plot_eval_curves(runs: pl.DataFrame, trajectories: pl.DataFrame, out: str | Path) -> None:
    """Per held-out task: validation loss and LR over steps, one line per scheduler (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    joined = trajectories.join(runs.select("run_id", "task", "scheduler"), on="run_id")
    tasks = sorted(joined["task"].unique().to_list())
    fig, axes = plt.subplots(2, max(len(tasks), 1), figsize=(4.2 * max(len(tasks), 1), 6.5), squeeze=False)
    for col, task in enumerate(tasks):
        data = joined.filter(pl.col("task") == task)
        for scheduler in sorted(data["scheduler"].unique().to_list()):
            curve = (
                data.filter(pl.col("scheduler") == scheduler)
                .group_by("step")
                .agg(pl.col("val_loss").mean(), pl.col("lr").mean())
                .sort("step")
            )
            val = curve.drop_nulls("val_loss")
            style = {"linewidth": 2.4, "color": "black"} if scheduler == META else {"linewidth": 1.2}
            axes[0, col].plot(val["step"], val["val_loss"], marker=".", label=scheduler, **style)
            axes[1, col].plot(curve["step"], curve["lr"], label=scheduler, **style)
        axes[0, col].set_title(task)
        axes[0, col].set_ylabel("validation loss (mean over seeds)")
        axes[1, col].set_ylabel("learning rate (mean over seeds)")
        axes[1, col].set_yscale("log")
        axes[1, col].set_xlabel("optimizer step")
    if tasks:
        axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
