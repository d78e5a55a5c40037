"""A real Lightning Trainer run, offline on CPU, driven by a MetaScheduler through the callback."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from meta_fixtures import fitted_checkpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from metalr.integrations.lightning import MetaSchedulerCallback

BASE_LR = 0.05


class TinyRegression(pl.LightningModule):
    def __init__(self, scheduler: str | None = None):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.scheduler = scheduler

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.linear(x).squeeze(-1), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.linear(x).squeeze(-1), y))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=BASE_LR)
        if self.scheduler == "cosine":
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 5)}
        return optimizer


def _loader(n: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return DataLoader(TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0])), batch_size=16)


def _fit(checkpoint, tmp_path, module=None, **trainer_args):
    """Fit the tiny module; returns the callback, the rows the scheduler observed and the LR of each update."""
    torch.manual_seed(0)
    callback = MetaSchedulerCallback(checkpoint)
    observed: list[dict] = []
    lrs: list[float] = []

    class Recorder(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            original = callback.scheduler.observe
            callback.scheduler.observe = lambda features: (observed.append(dict(features)), original(features))[1]

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            lrs.append(optimizer.param_groups[0]["lr"])

    trainer = pl.Trainer(
        **{
            "accelerator": "cpu",
            "max_epochs": 2,
            "callbacks": [callback, Recorder()],
            "logger": TensorBoardLogger(tmp_path / "tb", name="", version=""),
            "log_every_n_steps": 1,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        }
        | trainer_args
    )
    trainer.fit(module or TinyRegression(), _loader(160, 0), _loader(32, 1))
    return callback, observed, lrs


def test_an_untrained_checkpoint_gives_cosine_over_every_update_of_every_epoch(tmp_path):
    # 160 samples in batches of 16, two per update: 5 updates per epoch, 3 epochs -> 15.
    checkpoint = fitted_checkpoint(tmp_path / "ckpt")
    callback, observed, lrs = _fit(checkpoint, tmp_path, max_epochs=3, accumulate_grad_batches=2)
    assert callback.scheduler.budget == 15
    assert [row["step"] for row in observed] == list(range(1, 16))
    assert lrs == pytest.approx([BASE_LR * 0.5 * (1 + math.cos(math.pi * t / 15)) for t in range(15)], rel=1e-12)


def test_the_scheduler_observes_losses_gradient_norms_and_the_validation_loss(tmp_path):
    _, observed, lrs = _fit(fitted_checkpoint(tmp_path / "ckpt"), tmp_path)
    assert [row["lr"] for row in observed] == lrs
    assert all(row["grad_norm"] > 0 for row in observed)
    assert observed[0]["loss_ema"] == pytest.approx(observed[0]["loss_train"], rel=1e-12)  # bias-corrected EMA
    assert observed[-1]["loss_ema"] < observed[0]["loss_ema"]  # the tiny regression does learn
    # Validation after epoch 1 (update 10) reaches the scheduler with the next update.
    assert [row["step"] for row in observed if "val_loss" in row] == [11]


def test_features_move_the_decisions_of_a_random_checkpoint(tmp_path):
    """Fails if the features do not reach the scheduler: a blind replay decides differently."""
    from metalr.schedulers import MetaScheduler

    checkpoint = fitted_checkpoint(tmp_path / "ckpt", random_weights=True)
    _, observed, lrs = _fit(checkpoint, tmp_path)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    blind = MetaScheduler.from_pretrained(checkpoint, optimizer, len(lrs))
    blind_lrs = []
    for row in observed:
        blind_lrs.append(optimizer.param_groups[0]["lr"])
        blind.observe({"step": row["step"], "lr": row["lr"]})
        optimizer.step()
        blind.step()
    assert lrs != pytest.approx(blind_lrs, rel=1e-3)


def test_lr_change_reason_and_fallback_rate_reach_the_lightning_logger(tmp_path):
    callback, observed, _ = _fit(fitted_checkpoint(tmp_path / "ckpt", random_weights=True), tmp_path)
    (event_file,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    assert {"metalr/lr", "metalr/fallback_rate", "val_loss"} <= set(events.Tags()["scalars"])
    lrs = events.Scalars("metalr/lr")
    assert len(lrs) == len(observed) and lrs[-1].value == pytest.approx(callback.scheduler.get_last_lr()[0])
    rate = events.Scalars("metalr/fallback_rate")[-1].value
    assert 0.0 <= rate <= 1.0 and rate == pytest.approx(callback.scheduler.fallback_rate)
    reasons = events.Tensors("metalr/change_reason/text_summary")
    assert reasons and all(r.tensor_proto.string_val[0].decode().startswith("meta ") for r in reasons)


def test_a_module_that_brings_its_own_lr_scheduler_is_refused(tmp_path):
    with pytest.raises(ValueError, match="return the optimizer alone"):
        _fit(fitted_checkpoint(tmp_path / "ckpt"), tmp_path, module=TinyRegression(scheduler="cosine"))
