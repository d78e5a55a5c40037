import math

import numpy as np
import polars as pl
import pytest
from conftest import synthetic_eval

from metalr.evaluate import LeakageError, check_leakage, normalised_scores, score_runs
from metalr.evaluate.metrics import (
    convergence_index,
    curve_mean,
    first_hit,
    hit_summary,
    lr_change_stats,
    run_curve_metrics,
    sample_variance,
)
from metalr.evaluate.targets import EXTERNALLY_TUNED, choose_tuned_lr, compute_targets, framing_runs
from metalr.trajectories import runs_frame, trajectory_frame, write_parquet


def _row(**kw):
    base = {
        "run_id": "r",
        "phase": "eval",
        "task": "t",
        "task_hash": "h",
        "scheduler": "cosine",
        "lr_multiplier": 1.0,
        "seed": 0,
        "status": "ok",
        "metric": "acc",
        "higher_is_better": True,
        "test_metric": 0.9,
        "trivial_test_metric": 0.1,
        "wall_time_s": 1.0,
    }
    return base | kw


def test_a_diverged_run_scores_the_trivial_baseline():
    runs = runs_frame([_row(), _row(seed=1, status="diverged", test_metric=None)])
    assert score_runs(runs)["score"].to_list() == [0.9, 0.1]


def test_normalised_score_is_the_ratio_to_untuned_cosine_signed_so_above_one_is_better():
    runs = runs_frame(
        [
            _row(scheduler="cosine", test_metric=0.6),
            _row(scheduler="meta", test_metric=0.9),
            _row(scheduler="cosine", lr_multiplier=3.0, test_metric=0.3),  # tuned cosine is not the reference
            _row(task="m", metric="mae", higher_is_better=False, scheduler="cosine", test_metric=2.0),
            _row(task="m", metric="mae", higher_is_better=False, scheduler="meta", test_metric=1.0),
            _row(task="m", metric="mae", higher_is_better=False, scheduler="step", status="diverged", test_metric=None)
            | {"trivial_test_metric": 10.0},
        ]
    )
    norm = normalised_scores(score_runs(runs))["norm_score"].to_list()
    # acc: 0.9 / 0.6; mae: cosine 2 / meta 1; a diverged mae run scores the trivial 10 -> 2 / 10.
    assert norm == pytest.approx([1.0, 1.5, 0.5, 1.0, 2.0, 0.2])


def test_first_hit_finds_the_first_value_at_or_past_the_target_in_either_direction():
    assert first_hit(np.array([0.5, 0.7, 0.9, 0.95]), 0.9, True) == 2
    assert first_hit(np.array([3.0, 2.0, 1.5, 1.0]), 1.5, False) == 2
    assert first_hit(np.array([0.5, 0.7]), 0.9, True) is None
    assert first_hit(np.array([0.5, 0.7]), None, True) is None


def test_time_to_target_with_a_miss_reports_the_hit_rate_and_the_median_of_the_hits_only():
    summary = hit_summary(
        np.array([20.0, math.inf, 40.0]), np.array([1.0, math.inf, 2.0]), np.array([0.2, math.inf, 0.6])
    )
    assert summary == {
        "hit_rate": pytest.approx(2 / 3),
        "median_steps": 30.0,
        "median_epochs": 1.5,
        "median_seconds": 0.4,
    }
    assert hit_summary(np.array([math.inf]), np.array([math.inf]), np.array([math.inf]))["median_steps"] is None


def test_a_run_times_its_target_in_steps_epochs_and_training_seconds():
    rows = trajectory_frame(
        [
            {"run_id": "r", "step": s, "epoch": s / 4, "progress": s / 8, "lr": 0.1, "loss_train": 1.0, "loss_ema": 1.0}
            | {"grad_norm": 1.0, "res_step_time_s": 0.5}
            | ({"val_loss": 1.0 / s, "val_acc": s / 10} if s % 2 == 0 else {})
            for s in range(1, 9)
        ]
    )
    run = {"run_id": "r", "status": "ok", "metric": "acc", "higher_is_better": True}
    out = run_curve_metrics(run, rows, metric_target=0.6, loss_target=0.2)
    # val_acc 0.2, 0.4, 0.6, 0.8 at steps 2, 4, 6, 8: first >= 0.6 at step 6 = epoch 1.5, six steps of 0.5 s.
    assert (out["steps_to_target"], out["epochs_to_target"], out["seconds_to_target"]) == (6.0, 1.5, 3.0)
    # val_loss 1/2, 1/4, 1/6, 1/8: first <= 0.2 at step 6 too.
    assert out["steps_to_loss_target"] == 6.0
    missed = run_curve_metrics(run, rows, metric_target=0.9, loss_target=None)
    assert missed["steps_to_target"] == math.inf and missed["steps_to_loss_target"] == math.inf
    assert out["lr_changes"] == 0 and out["train_time_s"] == pytest.approx(4.0)
    unlogged = run_curve_metrics(run | {"metric": "f1"}, rows, metric_target=0.6, loss_target=0.2)
    assert unlogged["steps_to_target"] == math.inf and unlogged["val_auc"] is None


def test_convergence_is_the_last_evaluation_that_improved_by_more_than_one_percent():
    # 0.5 and 0.4 improve by more than 1% of the best so far; 0.399 and 0.3985 do not.
    assert convergence_index(np.array([1.0, 0.5, 0.4, 0.399, 0.3985])) == 2
    assert convergence_index(np.array([1.0, 1.2, 1.1])) == 0


def test_curve_mean_is_the_trapezoidal_area_divided_by_the_span():
    # Area under (0, 0) - (0.5, 1) - (1, 1) is 0.25 + 0.5.
    assert curve_mean(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
    assert curve_mean(np.array([0.5, 1.0]), np.array([2.0, 4.0])) == pytest.approx(3.0)
    assert curve_mean(np.array([0.3]), np.array([0.7])) == pytest.approx(0.7)


def test_stability_counts_and_sizes_lr_changes_and_takes_the_sample_variance():
    count, mean, largest = lr_change_stats(np.array([1.0, 1.0, 0.1, 0.1, 0.01]))
    assert count == 2 and mean == pytest.approx(math.log(10)) and largest == pytest.approx(math.log(10))
    assert lr_change_stats(np.array([0.1, 0.1, 0.1])) == (0, None, None)
    assert sample_variance(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(5 / 3)


def test_tuned_lr_is_picked_on_the_median_validation_metric_and_a_divergence_counts_as_worst():
    runs, _ = synthetic_eval(
        {
            ("a", "cosine", 1 / 3): [0.80, 0.81, 0.79],
            ("a", "cosine", 1.0): [0.85, 0.86, 0.84],
            ("a", "cosine", 3.0): [0.90, 0.91, 0.70],  # median 0.90: the best
            ("a", "step", 1.0): [0.85, 0.85, 0.85],
            ("a", "step", 3.0): [0.99, 0.99, 0.99],  # best on paper, but two of three seeds diverge below
            ("a", "constant", 1 / 3): [0.85, 0.85, 0.85],
            ("a", "constant", 1.0): [0.85, 0.85, 0.85],  # a tie: the default wins
        }
    )
    runs = runs.with_columns(
        status=pl.when((pl.col("scheduler") == "step") & (pl.col("lr_multiplier") == 3.0) & (pl.col("seed") > 0))
        .then(pl.lit("diverged"))
        .otherwise(pl.col("status"))
    )
    chosen = dict(choose_tuned_lr(runs).select("scheduler", "lr_multiplier").iter_rows())
    assert chosen == {"constant": 1.0, "cosine": 3.0, "step": 1.0}


def test_target_is_the_median_over_seeds_of_the_best_tuned_baseline_and_meta_joins_both_framings():
    runs, _ = synthetic_eval(
        {
            ("a", "cosine", 1.0): [0.80, 0.82, 0.84],
            ("a", "cosine", 3.0): [0.90, 0.93, 0.92],
            ("a", "step", 1.0): [0.91, 0.95, 0.60],
            ("a", "step", 3.0): [0.50, 0.50, 0.50],
            ("a", "meta", 1.0): [0.99, 0.99, 0.99],  # never sets the target
        }
    )
    tuned = choose_tuned_lr(runs)
    target = compute_targets(runs, tuned).row(0, named=True)
    assert target["metric_target"] == pytest.approx(0.92) and target["metric_target_from"] == "cosine"
    framed = framing_runs(runs, tuned, EXTERNALLY_TUNED)
    assert sorted(set(framed.select("scheduler", "lr_multiplier").iter_rows())) == [
        ("cosine", 3.0),
        ("meta", 1.0),
        ("step", 1.0),
    ]


def test_a_baseline_that_reads_the_machines_timings_never_sets_the_target():
    runs, _ = synthetic_eval(
        {
            ("a", "cosine", 1.0): [0.80, 0.82, 0.84],
            ("a", "resource", 1.0): [0.95, 0.95, 0.95],  # best, but its runs differ per machine
        }
    )
    target = compute_targets(runs, choose_tuned_lr(runs)).row(0, named=True)
    assert target["metric_target"] == pytest.approx(0.82) and target["metric_target_from"] == "cosine"


def test_leakage_check_catches_a_held_out_task_by_id_and_a_renamed_copy_by_hash(tmp_path, smoke_config):
    held = smoke_config.tasks[smoke_config.held_out[0]]
    clean, by_id, renamed = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    write_parquet(runs_frame([_row(task="digits-mlp", task_hash=smoke_config.tasks["digits-mlp"].config_hash)]), clean)
    write_parquet(runs_frame([_row(task=held.task_id, task_hash="other")]), by_id)
    write_parquet(runs_frame([_row(task="innocent-name", task_hash=held.config_hash)]), renamed)
    assert check_leakage(smoke_config, [clean])["ok"]
    with pytest.raises(LeakageError, match=held.task_id):
        check_leakage(smoke_config, [clean, by_id])
    with pytest.raises(LeakageError, match="innocent-name"):
        check_leakage(smoke_config, [renamed])


def test_protocol_keeps_diverged_and_failed_runs_as_misses_that_score_the_trivial_baseline():
    from metalr.evaluate import evaluate_runs

    scores = {(task, s, 1.0): [0.8, 0.8, 0.8] for task in ("a", "b") for s in ("cosine", "meta")}
    runs, trajectories = synthetic_eval(scores)
    broken = {"eval-a-meta-x1.0-s0": "diverged", "eval-a-meta-x1.0-s1": "failed"}
    runs = runs.with_columns(
        status=pl.col("run_id").replace_strict(broken, default="ok"),
        test_metric=pl.when(pl.col("run_id").is_in(list(broken))).then(None).otherwise(pl.col("test_metric")),
    )
    trajectories = trajectories.filter(
        (pl.col("run_id") != "eval-a-meta-x1.0-s1")  # a failed run logs nothing
        & ((pl.col("run_id") != "eval-a-meta-x1.0-s0") | (pl.col("step") < 7))  # diverged at step 7
    )
    evaluation = evaluate_runs(runs, trajectories, resamples=100)
    meta = evaluation.comparisons.filter((pl.col("task") == "a") & (pl.col("scheduler") == "meta")).row(0, named=True)
    assert meta["n_runs"] == 3 and meta["n_diverged"] == 1 and meta["n_failed"] == 1
    assert meta["divergence_rate"] == pytest.approx(1 / 3)
    assert meta["mean"] == pytest.approx((0.1 + 0.1 + 0.8) / 3)
    assert meta["target_hit_rate"] == pytest.approx(1 / 3) and meta["target_median_steps"] == 10.0
