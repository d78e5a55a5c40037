"""Evaluation runs compute the probes their scheduler observes; collection runs compute every probe."""

import polars as pl
from conftest import make_task

from metalr.train import RunSpec, train_run
from metalr.trajectories import TIMING_COLUMNS

EXPENSIVE = ("curv_lambda_max", "grad_cos_prev", "grad_noise_scale", "unc_confidence")


def _run(digits, phase: str, scheduler: str) -> pl.DataFrame:
    return train_run(RunSpec(phase, make_task(budget=50), scheduler, 0), digits).trajectory


def _computed(frame: pl.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].drop_nulls().len() > 0


def test_an_evaluation_run_of_a_fixed_schedule_computes_only_the_always_on_and_resource_probes(digits):
    frame = _run(digits, "eval", "cosine")
    assert not any(_computed(frame, c) for c in EXPENSIVE)
    assert _computed(frame, "loss_ema") and _computed(frame, "val_loss") and _computed(frame, "grad_norm")
    assert _computed(frame, "res_cpu_rss_mb")  # the summary's overhead table reads it


def test_an_evaluation_run_computes_the_probes_its_scheduler_observes_and_only_those(digits):
    frame = _run(digits, "eval", "curvature")
    assert _computed(frame, "curv_lambda_max") and _computed(frame, "grad_cos_prev")
    assert not _computed(frame, "unc_confidence") and not _computed(frame, "grad_noise_scale")


def test_a_collection_run_computes_every_probe(digits):
    assert all(_computed(_run(digits, "collect", "cosine"), c) for c in EXPENSIVE)


def test_dropping_probes_leaves_the_training_itself_unchanged(digits):
    kept = ["step", "lr", "loss_train", "val_loss", "grad_norm"]
    evaluated = _run(digits, "eval", "cosine").select(kept)
    collected = _run(digits, "collect", "cosine").select(kept)
    assert evaluated.equals(collected)
    assert not set(kept) & set(TIMING_COLUMNS)
