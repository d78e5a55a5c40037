"""A real transformers Trainer run, offline on CPU, driven by a MetaScheduler through the callback."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from meta_fixtures import cosine_lrs, fitted_checkpoint
from torch import nn
from transformers import Trainer, TrainingArguments

from metalr.integrations.huggingface import meta_scheduler_for_trainer
from metalr.schedulers import MetaScheduler

STEPS, EVAL_EVERY, BASE_LR = 30, 10, 0.05


class TinyRegressor(nn.Module):
    """The smallest model the Trainer accepts: it takes named inputs and returns a loss."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        prediction = self.linear(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(prediction, labels), "logits": prediction}


def _dataset(n: int, seed: int) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return Dataset.from_dict({"x": x.tolist(), "labels": (x @ torch.tensor([1.0, -2.0, 0.5, 3.0])).tolist()})


def _train(checkpoint, tmp_path, change_after_attach=None, **overrides):
    """Train ``STEPS`` updates; returns the observed feature rows, the Trainer's log history, the scheduler."""
    torch.manual_seed(0)
    model = TinyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR)
    args = {
        "output_dir": str(tmp_path / "trainer"),
        "max_steps": STEPS,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": EVAL_EVERY,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
    } | overrides
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**args),
        train_dataset=_dataset(256, 0),
        eval_dataset=_dataset(64, 1),
        optimizers=(optimizer, None),
    )
    scheduler = meta_scheduler_for_trainer(trainer, checkpoint)
    observed: list[dict] = []
    original = scheduler.observe
    scheduler.observe = lambda features: (observed.append(dict(features)), original(features))[1]
    for name, value in (change_after_attach or {}).items():
        setattr(trainer.args, name, value)
    trainer.train()
    return observed, trainer.state.log_history, scheduler


def _trainer_lrs(history: list[dict]) -> list[float]:
    return [entry["learning_rate"] for entry in history if "loss" in entry]


def test_the_scheduler_observes_every_update_with_the_trainers_losses_and_grad_norms(tmp_path):
    observed, history, _ = _train(fitted_checkpoint(tmp_path / "ckpt"), tmp_path)
    train_logs = [entry for entry in history if "loss" in entry]
    assert [row["step"] for row in observed] == list(range(1, STEPS + 1))
    assert [row["loss_train"] for row in observed] == [entry["loss"] for entry in train_logs]
    assert [row["grad_norm"] for row in observed] == [entry["grad_norm"] for entry in train_logs]
    assert [row["lr"] for row in observed] == [entry["learning_rate"] for entry in train_logs]
    # The EMA is bias-corrected: its first value is the first loss.
    assert observed[0]["loss_ema"] == observed[0]["loss_train"]
    assert observed[-1]["loss_ema"] < observed[0]["loss_ema"]  # the tiny regression does learn


def test_eval_losses_reach_the_scheduler_at_the_update_they_were_computed(tmp_path):
    observed, history, _ = _train(fitted_checkpoint(tmp_path / "ckpt"), tmp_path)
    evals = {entry["step"]: entry["eval_loss"] for entry in history if "eval_loss" in entry}
    assert sorted(evals) == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert {row["step"]: row["val_loss"] for row in observed if "val_loss" in row} == evals


def test_an_untrained_checkpoint_gives_torch_cosine_under_the_trainer(tmp_path):
    _, history, _ = _train(fitted_checkpoint(tmp_path / "ckpt"), tmp_path)
    assert _trainer_lrs(history) == pytest.approx(cosine_lrs(BASE_LR, STEPS), rel=1e-12, abs=1e-15)


def test_trainer_lrs_equal_a_meta_scheduler_replaying_the_observed_features(tmp_path):
    """With random weights the decisions depend on the features, so this fails if they do not arrive.

    The replay encodes the Trainer's timing: features of update t are observed before the
    scheduler step that follows update t+1.
    """
    checkpoint = fitted_checkpoint(tmp_path / "ckpt", random_weights=True)
    observed, history, _ = _train(checkpoint, tmp_path)

    def replay(rows: list[dict]) -> list[float]:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=BASE_LR)
        scheduler = MetaScheduler.from_pretrained(checkpoint, optimizer, STEPS)
        lrs = []
        for t in range(STEPS):
            if t > 0 and rows:
                scheduler.observe(rows[t - 1])
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return lrs

    assert _trainer_lrs(history) == pytest.approx(replay(observed), rel=1e-9)
    assert replay(observed) != pytest.approx(replay([]), rel=1e-3)  # features moved the decisions


def test_arguments_changed_after_attaching_are_refused(tmp_path):
    with pytest.raises(ValueError, match=f"built for {STEPS} updates but the Trainer will run 20"):
        _train(fitted_checkpoint(tmp_path / "ckpt"), tmp_path, change_after_attach={"max_steps": 20})


def test_epoch_based_training_gets_a_budget_of_epochs_times_updates_per_epoch(tmp_path):
    # 256 samples in batches of 24: 11 batches (the last one partial), 2 accumulated per
    # update -> 6 updates per epoch; 2.5 epochs -> ceil(15.0) = 15 updates.
    observed, history, scheduler = _train(
        fitted_checkpoint(tmp_path / "ckpt"),
        tmp_path,
        max_steps=-1,
        num_train_epochs=2.5,
        per_device_train_batch_size=24,
        gradient_accumulation_steps=2,
    )
    assert scheduler.budget == 15
    assert [row["step"] for row in observed] == list(range(1, 16))
    assert observed[-1]["progress"] == 1.0
    # Cosine over exactly the updates run: the last LR is the one just before zero.
    assert _trainer_lrs(history)[-1] == pytest.approx(BASE_LR * 0.5 * (1 + math.cos(math.pi * 14 / 15)))


def test_lr_change_reason_and_fallback_rate_reach_tensorboard_through_report_to(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    checkpoint = fitted_checkpoint(tmp_path / "ckpt", random_weights=True)
    _, _, scheduler = _train(checkpoint, tmp_path, report_to=["tensorboard"])
    (event_file,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars, texts = set(events.Tags()["scalars"]), set(events.Tags()["tensors"])
    assert {"train/metalr/lr", "train/metalr/fallback_rate", "train/learning_rate"} <= scalars
    assert "train/metalr/change_reason/text_summary" in texts
    lrs = [event.value for event in events.Scalars("train/metalr/lr")]
    assert len(lrs) == STEPS and lrs[-1] == pytest.approx(scheduler.get_last_lr()[0])
    rates = [event.value for event in events.Scalars("train/metalr/fallback_rate")]
    assert all(0.0 <= rate <= 1.0 for rate in rates) and rates[-1] == pytest.approx(scheduler.fallback_rate)
    reason_events = events.Tensors("train/metalr/change_reason/text_summary")
    reasons = [event.tensor_proto.string_val[0].decode() for event in reason_events]
    assert reasons and all(reason.startswith("meta ") for reason in reasons)


def test_a_logging_interval_above_one_update_warns(tmp_path):
    with pytest.warns(UserWarning, match="logging_steps=1"):
        _train(fitted_checkpoint(tmp_path / "ckpt"), tmp_path, logging_steps=5)
