import re
from pathlib import Path

import polars as pl
import pytest
from conftest import make_task, synthetic_eval

from metalr.evaluate import evaluate_runs
from metalr.report.figures import (
    SCHEDULER_COLOURS,
    TUNED_COSINE,
    UNTUNED_COSINE,
    VERDICT_COLOURS,
    curve_panels,
    curve_table,
    draw_gain,
    draw_lr_gallery,
    draw_task_curves,
    gain_table,
    verdict_kind,
)
from metalr.report.summary import markdown_to_html, summary_markdown
from metalr.schedulers import META, SCHEDULER_NAMES
from metalr.train import RunSpec, train_run

SCHEDULERS = ("constant", "step", "cosine")


@pytest.fixture(scope="module")
def real_runs(digits):
    results = [
        train_run(RunSpec("eval", make_task(), scheduler, seed), digits) for scheduler in SCHEDULERS for seed in (0, 1)
    ]
    runs = pl.concat([r.summary for r in results])
    trajectories = pl.concat([r.trajectory for r in results])
    return runs, trajectories


def test_each_curve_panel_draws_one_line_per_scheduler_with_the_tables_means(real_runs):
    runs, trajectories = real_runs
    fig = draw_task_curves(runs, trajectories, "digits-mlp")
    panels = curve_panels(runs, trajectories)
    assert [column for column, _, _ in panels] == [
        "val_acc",
        "val_loss",
        "lr",
        "loss_ema",
        "grad_norm",
    ]  # no λ_max panel: evaluation runs probe λ_max only for the schedulers that observe it, none here
    for ax, (column, _, _) in zip(fig.axes, panels, strict=False):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert sorted(lines) == sorted(SCHEDULERS), column
        table = curve_table(runs, trajectories, column)
        for scheduler, line in lines.items():
            expected = table.filter(pl.col("scheduler") == scheduler).sort("step")
            assert list(line.get_xdata()) == expected["step"].to_list()
            assert list(line.get_ydata()) == pytest.approx(expected["mean"].to_list())
    # By hand: validation every 10 steps of 40, and a constant LR stays at the base LR.
    lr = {line.get_label(): line for line in fig.axes[2].get_lines()}["constant"]
    assert list(lr.get_ydata()) == pytest.approx([1e-3] * 40)
    val = {line.get_label(): line for line in fig.axes[0].get_lines()}["cosine"]
    assert list(val.get_xdata()) == [10, 20, 30, 40]
    seeds = trajectories.join(runs.select("run_id", "scheduler"), on="run_id").filter(
        (pl.col("scheduler") == "cosine") & (pl.col("step") == 40)
    )
    assert val.get_ydata()[-1] == pytest.approx(seeds["val_acc"].mean())


def test_curvature_panel_is_skipped_cleanly_when_no_probe_recorded_it(real_runs):
    runs, trajectories = real_runs
    without = trajectories.with_columns(curv_lambda_max=pl.lit(None, dtype=pl.Float64))
    panels = [column for column, _, _ in curve_panels(runs, without)]
    assert "curv_lambda_max" not in panels and panels[-1] == "grad_norm"
    fig = draw_task_curves(runs, without.drop("curv_lambda_max"), "digits-mlp")
    assert sum(1 for ax in fig.axes if ax.get_lines()) == len(panels)


def test_lr_gallery_has_a_panel_per_scheduler_and_a_line_per_task(real_runs):
    runs, trajectories = real_runs
    fig = draw_lr_gallery(runs, trajectories)
    drawn = [ax for ax in fig.axes if ax.get_lines()]
    assert sorted(ax.get_title() for ax in drawn) == sorted(SCHEDULERS)
    step = next(ax for ax in drawn if ax.get_title() == "step").get_lines()[0]
    assert step.get_ydata()[0] == pytest.approx(1.0) and step.get_ydata()[-1] == pytest.approx(0.01)


def test_summary_shows_every_scheduler_on_every_task_and_says_where_meta_loses():
    scores = {}
    for task, meta in (("a", [0.90, 0.91, 0.92, 0.93, 0.94]), ("b", [0.70, 0.71, 0.72, 0.73, 0.74])):
        scores[(task, "meta", 1.0)] = meta
        for scheduler in ("cosine", "step"):
            for multiplier in (1 / 3, 1.0, 3.0):
                scores[(task, scheduler, multiplier)] = [0.80 + 0.01 * s for s in range(5)]
    runs, trajectories = synthetic_eval(scores)
    evaluation = evaluate_runs(runs, trajectories, resamples=200)
    text = summary_markdown(evaluation, {"fit": {}}, runs.clear())
    assert "**Indicative only**: 2 held-out tasks × 5 seeds" in text
    assert "cannot go below p = 0.0625" in text
    for framing in ("self-tuning", "externally tuned"):
        for task in ("a", "b"):
            assert f"#### {task} ({framing};" in text
    # Meta is 0.1 better than both baselines on every seed of a and 0.1 worse on b.
    assert "| cosine | x1 | 0.8200 [" in text
    assert "| +0.1000 [0.1000, 0.1000] |" in text and "| 0.0625 | meta better (t-test only) | 0/5 |" in text
    assert "It loses on: b vs cosine (-0.1000 acc, meta worse (t-test only)); b vs step" in text


def test_summary_says_which_comparisons_have_too_many_ties_for_wilcoxon():
    seeds = [0.80 + 0.01 * s for s in range(8)]
    scores = {
        ("a", "meta", 1.0): seeds,
        ("a", "cosine", 1.0): [v - 0.05 for v in seeds],  # 8 differences: Wilcoxon can reach p < 0.05
        ("a", "step", 1.0): seeds[:5] + [v - 0.05 for v in seeds[5:]],  # 3 differences, 5 ties: it cannot
    }
    runs, trajectories = synthetic_eval(scores)
    text = summary_markdown(evaluate_runs(runs, trajectories, resamples=100), {"fit": {}}, runs.clear())
    assert "In 1 of 2 per-task comparisons at most 5 seeds give the two schedulers different scores" in text
    assert "With 8 seeds per task" not in text


def test_summary_lists_every_test_metric_a_task_logs_beside_the_primary_one():
    runs, trajectories = synthetic_eval({("a", "meta", 1.0): [0.9, 0.8, 0.7], ("a", "cosine", 1.0): [0.8, 0.7, 0.6]})
    runs = runs.with_columns(test_acc=pl.col("test_metric"), test_f1=pl.col("test_metric") / 2)
    text = summary_markdown(evaluate_runs(runs, trajectories, resamples=100), {"fit": {}}, runs.clear())
    table = text[text.index("## Every test metric") :]
    assert "| task | scheduler | test_acc | test_f1 |" in table
    assert "| a | meta | 0.8 | 0.4 |" in table and "| a | cosine | 0.7 | 0.35 |" in table


def _grid_scores() -> dict[tuple[str, str, float], list[float]]:
    """Two tasks, every scheduler at base LR x0.1/x1/x10. At x1 step beats the meta-scheduler, which
    beats cosine; cosine is best at x10, so tuned cosine is the strongest comparator when tuned."""
    scores = {}
    for task, shift in (("a", 0.0), ("b", 0.05)):
        base = [0.70 + shift + 0.01 * s for s in range(5)]
        for scheduler, deltas in (
            ("cosine", (-0.10, 0.0, 0.08)),
            ("step", (-0.20, 0.05, -0.20)),
            (META, (-0.02, 0.02, 0.10)),
        ):
            for multiplier, delta in zip((0.1, 1.0, 10.0), deltas, strict=True):
                scores[(task, scheduler, multiplier)] = [v + delta for v in base]
    return scores


@pytest.fixture(scope="module")
def grid_evaluation():
    runs, trajectories = synthetic_eval(_grid_scores())
    return evaluate_runs(runs, trajectories, resamples=200), runs, trajectories


def test_gain_table_is_meta_minus_cosine_in_normalised_score_from_the_same_and_the_tuned_base_lr(grid_evaluation):
    evaluation, _, _ = grid_evaluation
    table = gain_table(evaluation, resamples=200)
    assert table.height == 2 * 3 * 2  # tasks x base LRs x (untuned, tuned cosine)
    scores = _grid_scores()
    for r in table.iter_rows(named=True):
        # By hand: per seed, (meta - cosine) / untuned cosine at x1, then the mean over seeds.
        at = r["lr_multiplier"] if r["comparator"] == UNTUNED_COSINE else 10.0
        assert r["comparator_lr_multiplier"] == at
        meta, cosine = scores[(r["task"], META, r["lr_multiplier"])], scores[(r["task"], "cosine", at)]
        reference = scores[(r["task"], "cosine", 1.0)]
        expected = sum((m - c) / ref for m, c, ref in zip(meta, cosine, reference, strict=True)) / 5
        assert r["gain"] == pytest.approx(expected, rel=1e-5), r
        assert r["ci_low"] <= r["gain"] <= r["ci_high"]
        assert verdict_kind(r["verdict"]) == ("better" if expected > 0 else "worse"), r
    tuned = table.filter(pl.col("comparator") == TUNED_COSINE)
    assert (
        tuned.filter(pl.col("lr_multiplier") == 0.1)["gain"].max()
        < 0
        < tuned.filter(pl.col("lr_multiplier") == 10.0)["gain"].min()
    )


def test_gain_figure_has_a_panel_per_task_and_a_verdict_coloured_interval_per_base_lr_and_comparator(
    grid_evaluation,
):
    evaluation, _, _ = grid_evaluation
    table = gain_table(evaluation, resamples=200)
    fig = draw_gain(table)
    panels = [ax for ax in fig.axes if ax.containers]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    for ax in panels:
        rows = table.filter(pl.col("task") == ax.get_title())
        assert [t.get_text() for t in ax.get_xticklabels()] == ["x0.1", "x1", "x10"]
        drawn = sorted((c.lines[0].get_ydata()[0], c.lines[0].get_color()) for c in ax.containers)
        expected = sorted((r["gain"], VERDICT_COLOURS[verdict_kind(r["verdict"])]) for r in rows.iter_rows(named=True))
        assert [colour for _, colour in drawn] == [colour for _, colour in expected]
        assert [y for y, _ in drawn] == pytest.approx([y for y, _ in expected])


def test_first_screen_is_the_gain_figure_then_one_sentence_per_framing_led_by_the_strongest_baseline(
    grid_evaluation,
):
    evaluation, runs, _ = grid_evaluation
    text = summary_markdown(evaluation, {"fit": {}}, runs.clear(), gain_figure="plots/gain.png")
    first_screen = text.split("\n## ", 1)[0].splitlines()[:12]
    assert first_screen[0] == "# metalr results"
    assert any(line.startswith("![") and line.endswith("(plots/gain.png)") for line in first_screen)
    sentences = {line.split("**")[1]: line for line in first_screen if line.startswith("- **")}
    assert sorted(sentences) == ["externally tuned", "self-tuning"]
    # Self-tuning: step (at x1) is the strongest baseline and leads; cosine comes second.
    self_tuning = sentences["self-tuning"]
    assert "against the strongest baseline, step, the meta-scheduler's mean normalised-score gain over 2" in (
        self_tuning
    )
    assert self_tuning.index("step") < self_tuning.index("against cosine it is +")
    # Externally tuned: cosine at x10 is the strongest, and is named once.
    assert "against the strongest baseline, cosine, " in sentences["externally tuned"]
    assert "against tuned cosine" not in sentences["externally tuned"]


def test_every_registered_scheduler_has_its_own_fixed_colour():
    baselines = [name for name in SCHEDULER_NAMES if name != META]
    assert not [name for name in baselines if name not in SCHEDULER_COLOURS]
    colours = list(SCHEDULER_COLOURS.values())
    assert len(set(colours)) == len(colours)


def test_task_curves_have_a_row_per_base_lr_with_that_base_lrs_runs(grid_evaluation):
    _, runs, trajectories = grid_evaluation
    fig = draw_task_curves(runs, trajectories, "a")
    panels = curve_panels(runs, trajectories)
    for row, multiplier in enumerate((0.1, 1.0, 10.0)):
        axes = fig.axes[row * len(panels) : (row + 1) * len(panels)]
        assert all(ax.get_title().endswith(f"base LR x{multiplier:g}") for ax in axes)
        lr = {line.get_label(): line for line in axes[2].get_lines()}
        assert sorted(lr) == sorted(["cosine", "step", META])
        assert list(lr["cosine"].get_ydata()) == pytest.approx([1e-3 * multiplier] * 10)
        assert lr["cosine"].get_color() == SCHEDULER_COLOURS["cosine"]


def test_summary_html_embeds_the_figure_colours_verdicts_and_scrolls_wide_tables(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "gain.png").write_bytes(b"\x89PNG-not-really")
    markdown = "![gain](plots/gain.png)\n\n| verdict |\n|---|\n| meta worse (t-test only) |\n| meta better |\n"
    html = markdown_to_html(markdown, base_dir=tmp_path)
    assert 'src="data:image/png;base64,iVBORy1ub3QtcmVhbGx5"' in html
    assert '<td class="verdict-worse">meta worse (t-test only)</td>' in html
    assert '<td class="verdict-better">meta better</td>' in html
    assert "overflow-x:auto" in html


def test_results_schema_doc_names_every_column_of_the_tables_readers_query(grid_evaluation):
    evaluation, _, _ = grid_evaluation
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results-schema.md").read_text()
    prefixes = sorted({p.removesuffix("*`") for p in re.findall(r"`mean_[a-z]+_\*`", doc)})
    assert prefixes == ["`mean_res_", "`mean_test_", "`mean_unc_"]
    for name in ("comparisons", "across_tasks", "meta_variants"):
        columns = getattr(evaluation, name).columns
        assert len(columns) > 8, name
        missing = [c for c in columns if f"`{c}`" not in doc and not any(f"`{c}".startswith(p) for p in prefixes)]
        assert not missing, (name, missing)


def test_lr_gallery_draws_every_base_lr_relative_to_the_tasks_default(grid_evaluation):
    _, runs, trajectories = grid_evaluation
    fig = draw_lr_gallery(runs, trajectories)
    cosine = next(ax for ax in fig.axes if ax.get_title() == "cosine")
    lines = {line.get_label(): line for line in cosine.get_lines()}
    assert sorted(lines) == ["a", "a x0.1", "a x10", "b", "b x0.1", "b x10"]
    for label, level, style in (("a x0.1", 0.1, ":"), ("a", 1.0, "-"), ("a x10", 10.0, "--")):
        assert list(lines[label].get_ydata()) == pytest.approx([level] * 10)
        assert lines[label].get_linestyle() == style
