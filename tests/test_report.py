import polars as pl
import pytest
from conftest import make_task, synthetic_eval

from metalr.evaluate import evaluate_runs
from metalr.report import curve_panels, curve_table, draw_lr_gallery, draw_task_curves, summary_markdown
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
        "curv_lambda_max",
    ]
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
