import math

import numpy as np
import polars as pl
import pytest
import torch
from conftest import make_task

from metalr.config import MetaConfig
from metalr.meta.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metalr.meta.dataset import build_sequences, select_experts
from metalr.meta.fit import fit_meta_learner
from metalr.meta.inputs import INPUT_FEATURES, InputBuilder
from metalr.meta.model import LSTMMetaLearner
from metalr.schedulers import MetaScheduler
from metalr.train import RunSpec, train_run

META = MetaConfig(arch="lstm", hidden=8, layers=1, lr=0.01, epochs=200, patience=50, decision_fraction=0.1, seed=0)


def _stream(scale):
    builder = InputBuilder(base_lr=1e-3 * scale, budget=100)
    for step in range(1, 41):
        features = {
            "step": step,
            "loss_ema": scale * (2.0 - step / 40),
            "grad_norm": scale * 3 / step,
            "lr": 1e-3 * scale,
        }
        if step % 10 == 0:
            features["val_loss"] = scale * (2.5 - step / 40)
        builder.update(features)
    return builder.decision_vector()


def test_inputs_are_normalised_within_the_run():
    np.testing.assert_allclose(_stream(1.0), _stream(37.0), atol=1e-5)
    assert len(_stream(1.0)) == len(INPUT_FEATURES)


def test_input_builder_survives_nan_and_inf():
    builder = InputBuilder(base_lr=1e-3, budget=10)
    for value in (1.0, float("nan"), float("inf"), None):
        builder.update({"step": 1, "loss_ema": value, "grad_norm": value, "val_loss": value, "lr": value})
    assert np.isfinite(builder.decision_vector()).all()


@pytest.fixture(scope="module")
def collected(digits):
    results = [
        train_run(RunSpec("collect", make_task(budget=50), name, seed), digits)
        for seed in (0, 1)
        for name in ("constant", "cosine", "exponential")
    ]
    return pl.concat([r.summary for r in results]), pl.concat([r.trajectory for r in results])


def test_experts_are_the_lowest_final_val_loss_per_task_and_seed(collected):
    runs, _ = collected
    experts = select_experts(runs)
    assert experts.height == 2
    for row in experts.iter_rows(named=True):
        group = runs.filter((pl.col("task") == row["task"]) & (pl.col("seed") == row["seed"]))
        assert row["final_val_loss"] == group["final_val_loss"].min()


def test_a_cosine_expert_is_labelled_with_zero_multipliers(collected):
    runs, trajectories = collected
    cosine = runs.filter(pl.col("scheduler") == "cosine").head(1).with_columns(final_val_loss=pl.lit(-1.0))
    (sequence,) = build_sequences(cosine, trajectories, decision_fraction=0.1)
    np.testing.assert_allclose(sequence.labels, 0.0, atol=1e-6)
    assert sequence.inputs.shape == (9, len(INPUT_FEATURES))  # decisions at steps 5, 10, ..., 45 of 50


def test_a_constant_expert_is_labelled_with_the_inverse_cosine_clipped_at_ln10(collected):
    runs, trajectories = collected
    constant = runs.filter(pl.col("scheduler") == "constant").head(1).with_columns(final_val_loss=pl.lit(-1.0))
    (sequence,) = build_sequences(constant, trajectories, decision_fraction=0.1)
    assert np.all(np.diff(sequence.labels) >= 0) and sequence.labels[0] > 0
    assert sequence.labels[-1] == pytest.approx(math.log(10))


def test_fit_imitates_the_experts_better_than_untrained_cosine(collected):
    runs, trajectories = collected
    sequences = build_sequences(runs, trajectories, decision_fraction=0.1)
    model, report = fit_meta_learner(sequences, sequences[:1], META, log=lambda _: None)
    assert report.train_loss < 0.5 * report.cosine_train_loss
    assert report.best_epoch >= 1


def test_checkpoint_round_trips_and_drives_a_scheduler(tmp_path):
    model = LSTMMetaLearner(len(INPUT_FEATURES), hidden=8)
    torch.nn.init.normal_(model.head.weight)
    save_checkpoint(
        model,
        {"arch": "lstm", "hidden": 8, "layers": 1, "features": list(INPUT_FEATURES), "decision_fraction": 0.1},
        tmp_path,
    )
    loaded, config = load_checkpoint(tmp_path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = MetaScheduler.from_pretrained(tmp_path, optimizer, budget=50)
    assert scheduler.decision_every == 5


def test_a_foreign_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a metalr meta-scheduler"):
        load_checkpoint(tmp_path)
