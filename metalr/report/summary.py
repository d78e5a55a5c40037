"""``summary.md`` with its tables, intervals and verdicts, and its HTML rendering."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from metalr.config import REFERENCE_SCHEDULER
from metalr.evaluate import Evaluation, is_indicative
from metalr.evaluate.headline import Headline, profile_rank
from metalr.evaluate.statistics import ALPHA, wilcoxon_min_p
from metalr.evaluate.targets import EXTERNALLY_TUNED, SELF_TUNING
from metalr.meta.variants import DEPLOYMENTS
from metalr.report.figures import VERDICT_COLOURS, verdict_kind
from metalr.schedulers import META

_TIE = 1e-6


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
        standing = profile_rank(evaluation.profile_scores, framing)
        if standing is not None:
            score, rank, entries = standing
            best = evaluation.profile_scores.filter(pl.col("framing") == framing).row(0, named=True)
            lines.append(
                f"  - Time to target: performance-profile score {score:.3f}, rank {rank} of {entries} "
                f"(ties share a rank; best: {best['scheduler']}, {best['score']:.3f})."
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
            f"- `{name}`: {meta_infos.get(name, {}).get('about') or _deployment_about(name)}"
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


def _deployment_about(name: str) -> str:
    return DEPLOYMENTS[name].about if name in DEPLOYMENTS else "n/a"


def _deployment_tables(evaluation: Evaluation) -> list[str]:
    """Each deployment (the main model given fewer input groups) against the model given every
    input, at the default base LR: per task, the mean normalised scores and the fallback rate,
    then machine-readable lines."""
    runs = evaluation.meta_runs
    if runs.is_empty():
        return []
    at_default = runs.filter(pl.col("lr_multiplier") == 1.0)
    lines = []
    for name, deployment in sorted(DEPLOYMENTS.items()):
        mine = at_default.filter(pl.col("variant") == name).select(
            "task", mine="mean_norm_score", fallback="fallback_rate", n_runs="n_runs"
        )
        full = at_default.filter(pl.col("variant") == deployment.source).select("task", full="mean_norm_score")
        paired = mine.join(full, on="task").sort("task")
        if paired.is_empty():
            continue
        # Normalised scores are direction-aware (above 1 = better than cosine).
        within = [
            r["mine"] is not None and r["full"] is not None and r["mine"] >= 0.99 * r["full"]
            for r in paired.iter_rows(named=True)
        ]
        body = [
            [r["task"], _fmt(r["full"], 3), _fmt(r["mine"], 3), "yes" if ok else "no", _fmt(r["fallback"], 3)]
            for r, ok in zip(paired.iter_rows(named=True), within, strict=True)
        ]
        fallback = (paired["fallback"].fill_null(0.0) * paired["n_runs"]).sum() / paired["n_runs"].sum()
        key = name.removeprefix("meta-").replace("-", "_")
        lines += [
            f"### `{name}`: {deployment.about}",
            "",
            *_table(
                f"| task | `{deployment.source}` norm. score | `{name}` norm. score | within 1% | OOD rate |", body
            ),
            f"{key}_within_1pct_of_full: {sum(within)}/{len(within)}",
            f"{key}_fallback_rate: {fallback:.3f}",
            "",
        ]
    return lines


def _headline(headline: Headline) -> list[str]:
    """Per held-out task, the self-tuning meta-scheduler against tuned cosine and how the task is
    held out; then the machine-readable lines."""
    body = [
        [
            r["task"],
            r["dataset"] or "?",
            r["family"] or "?",
            "unseen family"
            if r["unseen_family"]
            else ", ".join(
                part
                for part, new in (("unseen dataset", r["unseen_dataset"]), ("unseen model", r["unseen_model_family"]))
                if new
            )
            or "seen family",
            _fmt(r["meta"], 3),
            "" if r["cosine"] is None else f"{_fmt(r['cosine'], 3)} (x{r['cosine_lr_multiplier']:.3g})",
            "" if r["meta"] is None else ("yes" if r["within"] else "no"),
        ]
        for r in headline.per_task.iter_rows(named=True)
    ]
    return [
        *_table(
            "| task | dataset | model family | held out as | meta (x1) norm. score | tuned cosine norm. score (LR) "
            "| within 1% |",
            body,
        ),
        *headline.lines(),
        "",
    ]


def _compute_lines(collect_runs: pl.DataFrame, meta_infos: dict[str, dict]) -> list[str]:
    """Meta-training compute on one line: the collection runs' training seconds (single-threaded
    workers, so CPU-seconds of one core each), the forks' and the fits' (every variant, every
    label temperature)."""
    collection = float(collect_runs["wall_time_s"].sum()) if collect_runs.height else 0.0
    compute = meta_infos.get(META, {}).get("compute", {})
    forks = compute.get("forks_s")
    fits = [info.get("compute", {}).get("fit_s") for info in meta_infos.values()]
    fit_total = sum(f for f in fits if f is not None)
    total = collection + (forks or 0.0) + fit_total
    return [
        f"meta_training_compute_s: {total:.0f} (collection {collection:.0f} over {collect_runs.height} runs, "
        f"forks {'n/a' if forks is None else f'{forks:.0f}'}, fits {fit_total:.0f} over {len(fits)} variant(s))"
    ]


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
            "`config/bench.yaml` (at least 12 held-out tasks and 8 seeds).",
            "",
        ]
    else:
        lines += [f"{n_tasks} held-out tasks × {n_seeds} seeds.", ""]
    headline = Headline.of(evaluation.comparisons, evaluation.profile_scores, runs, collect_runs)
    lines += [
        "## Against tuned cosine, and on families it never saw",
        "",
        "The meta-scheduler from the default base LR (self-tuning) against cosine at the base LR chosen on "
        "validation data, by mean normalised score over seeds (within 1%: at least 0.99 of cosine's). A task is "
        "of an *unseen family* when neither its dataset nor its model family is in any meta-training or "
        "meta-validation run. The rank is the meta-scheduler's among every self-tuning entry's performance-profile "
        "score (ties share a rank).",
        "",
        *_headline(headline),
    ]
    lines += [*_size_limits(evaluation), "", "## Where the meta-scheduler stands", "", *_standing(evaluation), ""]
    lines += [
        "## Every meta-learner at each base LR",
        "",
        "The main model (`meta`), the other architectures, the controls (`meta-progress-only`: progress and "
        "log(lr/base) only; `meta-shuffled`: state inputs permuted across runs within progress bins) and the "
        "ablations (one feature group removed, or the resource inputs added; default base LR only) and "
        "`meta-loss-only` (the main model given only the loss; default base LR only), each "
        "against every baseline started from the same base LR. The features carry signal only where the full "
        "model wins against `meta-progress-only` in a paired test.",
        "",
        *_meta_variant_tables(evaluation, meta_infos),
        "### Out-of-distribution decisions of the main model per task",
        "",
        *_fallback_table(evaluation),
        *_deployment_tables(evaluation),
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
        *_compute_lines(collect_runs, meta_infos),
        "",
        f"- trajectory collection: {collect_runs.height} runs, {collect_runs['wall_time_s'].sum():.1f} s of training",
        f"- meta-learner fit: {fit.get('wall_time_s', float('nan')):.1f} s, "
        f"{fit.get('epochs_run', 0)} epochs (best {fit.get('best_epoch', 0)}), "
        f"{fit.get('n_train_sequences', 0)} training sequences",
        f"- label MSE on meta-validation: learner {_fmt(fit.get('val_loss'))}, "
        f"untrained (= cosine) {_fmt(fit.get('cosine_val_loss'))}",
        f"- objective: {meta_info.get('objective', 'n/a')}; best-multiplier counts {meta_info.get('label_counts', {})}",
        f"- labels: {_label_kind(fit)}",
        "",
        *_fit_table(meta_infos),
    ]
    return "\n".join(lines)


def _label_kind(fit: dict) -> str:
    """Hard or soft labels, and the meta-validation regret that chose them (``meta.label_temperatures``)."""
    temperature, regret = fit.get("label_temperature"), fit.get("policy_regret")
    kind = "hard (the best multiplier)" if temperature is None else f"soft, temperature {temperature:g}"
    if regret is None:
        return kind
    return f"{kind}, chosen for the lowest policy regret on meta-validation's forks ({regret:.4f})"


def markdown_to_html(markdown: str, title: str = "metalr results", base_dir: str | Path | None = None) -> str:
    """A standalone HTML page of ``markdown`` (tables included), for the Snakemake report.

    Images are read relative to ``base_dir`` and embedded, so the page shows them wherever
    it is opened (the Snakemake report serves it alone); verdict cells are colour-coded and
    wide tables scroll instead of overflowing.
    """
    from markdown_it import MarkdownIt  # lazy: only the HTML report renders Markdown

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
