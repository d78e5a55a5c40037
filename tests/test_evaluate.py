import polars as pl
import pytest

from metalr.config import PipelineConfig
from metalr.evaluate import LeakageError, check_leakage, paired_comparison, score_runs, summarize_runs
from metalr.trajectories import runs_frame, write_parquet


def _row(**kw):
    base = {
        "run_id": "r",
        "phase": "eval",
        "task": "t",
        "task_hash": "h",
        "scheduler": "cosine",
        "seed": 0,
        "status": "ok",
        "metric": "acc",
        "higher_is_better": True,
        "test_metric": 0.9,
        "trivial_test_metric": 0.1,
        "wall_time_s": 1.0,
    }
    return base | kw


def test_a_diverged_run_scores_the_trivial_baseline_and_is_counted():
    runs = runs_frame([_row(), _row(seed=1, status="diverged", test_metric=None)])
    assert score_runs(runs)["score"].to_list() == [0.9, 0.1]
    summary = summarize_runs(runs).row(0, named=True)
    assert summary["n_runs"] == 2 and summary["n_diverged"] == 1
    assert summary["mean"] == pytest.approx(0.5)


def test_paired_gain_is_positive_when_the_challenger_is_better_whatever_the_metric_direction():
    rows = []
    for seed in range(3):
        rows += [
            _row(seed=seed, scheduler="meta", test_metric=0.95),
            _row(seed=seed, test_metric=0.9),
            _row(task="s", metric="mae", higher_is_better=False, seed=seed, scheduler="meta", test_metric=1.0),
            _row(task="s", metric="mae", higher_is_better=False, seed=seed, test_metric=2.0),
        ]
    comparison = paired_comparison(runs_frame(rows), "meta", "cosine")
    assert comparison["wins"].to_list() == [3, 3]
    assert all(g > 0 for g in comparison["mean_gain"].to_list())


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
    assert isinstance(smoke_config, PipelineConfig)
    assert pl.read_parquet(clean).height == 1
