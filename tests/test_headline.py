import json

import polars as pl
import pytest
from conftest import synthetic_eval

from metalr.evaluate.headline import Headline, held_out_novelty
from metalr.evaluate.protocol import evaluate_runs

DATA = {"a": ("digits", "mlp"), "b": ("shapes", "vgg"), "c": ("elnino", "mlp")}


def _with_data(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.with_columns(
        dataset=pl.col("task").replace_strict({t: d for t, (d, _) in DATA.items()}),
        model=pl.col("task").replace_strict({t: json.dumps({"family": f}) for t, (_, f) in DATA.items()}),
    )


SEEN = pl.DataFrame({"task": ["digits-mlp-00"], "dataset": ["digits"], "model": [json.dumps({"family": "mlp"})]})


def test_a_held_out_task_is_of_an_unseen_family_only_when_neither_dataset_nor_model_family_was_seen():
    runs, _ = synthetic_eval({(t, "cosine", 1.0): [0.5] for t in DATA})
    novelty = {r["task"]: r for r in held_out_novelty(_with_data(runs), SEEN).iter_rows(named=True)}
    assert [novelty[t]["unseen_family"] for t in "abc"] == [False, True, False]
    assert novelty["c"]["unseen_dataset"] and not novelty["c"]["unseen_model_family"]


def test_headline_counts_tasks_within_one_percent_of_tuned_cosine_overall_and_on_unseen_families():
    scores = {}
    for task, meta in (("a", 0.80), ("b", 0.70), ("c", 0.90)):
        scores |= {
            (task, "cosine", 1.0): [0.60, 0.61, 0.62],
            (task, "cosine", 10.0): [0.80, 0.80, 0.80],  # tuned cosine: chosen on validation
            (task, "cosine", 0.1): [0.30, 0.30, 0.30],
            (task, "meta", 1.0): [meta] * 3,
        }
    runs, trajectories = synthetic_eval(scores)
    runs = _with_data(runs)
    evaluation = evaluate_runs(runs, trajectories, resamples=200)
    headline = Headline.of(evaluation.comparisons, evaluation.profile_scores, evaluation.run_metrics, SEEN)
    within = dict(headline.per_task.select("task", "within").iter_rows())
    # a ties tuned cosine (0.80 vs 0.80), b is 12.5% below it, c is above.
    assert within == {"a": True, "b": False, "c": True}
    lines = headline.lines()
    assert lines[0] == "within_1pct_of_tuned_cosine: 2/3"
    assert lines[1] == "within_1pct_of_tuned_cosine_unseen_family: 0/1"
    assert lines[2].startswith("self_tuning_profile_rank: ") and lines[2].endswith(" of 2")


def test_without_an_lr_grid_the_tuned_cosine_lines_say_why_they_are_missing():
    runs, trajectories = synthetic_eval({("b", "cosine", 1.0): [0.6, 0.6], ("b", "meta", 1.0): [0.7, 0.7]})
    evaluation = evaluate_runs(_with_data(runs), trajectories, resamples=200)
    lines = Headline.of(evaluation.comparisons, evaluation.profile_scores, evaluation.run_metrics, SEEN).lines()
    assert lines[0].startswith("within_1pct_of_tuned_cosine: n/a (no externally tuned framing")
    assert lines[1].startswith("within_1pct_of_tuned_cosine_unseen_family: n/a")
    assert lines[2] == "self_tuning_profile_rank: 1 of 2"


@pytest.mark.parametrize("seen_runs", [SEEN.clear()])
def test_with_no_meta_training_runs_every_held_out_task_is_of_an_unseen_family(seen_runs):
    runs, _ = synthetic_eval({(t, "cosine", 1.0): [0.5] for t in DATA})
    assert held_out_novelty(_with_data(runs), seen_runs)["unseen_family"].all()
