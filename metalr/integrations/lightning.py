"""Drive a fitted MetaScheduler from a Lightning ``Trainer``.

    from metalr.integrations.lightning import MetaSchedulerCallback

    trainer = lightning.Trainer(max_epochs=3, callbacks=[MetaSchedulerCallback("results/meta/round-1/meta")])
    trainer.fit(module)  # configure_optimizers returns the optimizer alone

The callback builds the scheduler when fitting starts, for the optimizer updates the Trainer
will run (``trainer.estimated_stepping_batches``: max_steps, or epochs x updates per epoch
with gradient accumulation), and steps it after each update, as metalr's own loop does:
the features of update t (step, LR, train loss and its EMA, gradient norm) are observed
before the step that sets the LR of update t+1. The train loss is ``training_step``'s
``loss``; a validation loss logged as ``val_loss_key`` reaches the scheduler with the
update that follows the validation.

Each update also logs ``metalr/lr`` and ``metalr/fallback_rate`` through the module's
``log`` (so every Lightning logger gets them, every ``log_every_n_steps``), and a
decision's ``metalr/change_reason`` as text to the loggers that take text (TensorBoard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from metalr.features.basic import LossEMA
from metalr.integrations.reporting import scheduler_report
from metalr.schedulers import MetaScheduler


class MetaSchedulerCallback(pl.Callback):
    """Builds a MetaScheduler from ``checkpoint`` on the first optimizer and drives its LR."""

    def __init__(self, checkpoint: str | Path, val_loss_key: str = "val_loss", loss_ema_beta: float = 0.9):
        self.checkpoint = checkpoint
        self.val_loss_key = val_loss_key
        self.loss_ema = LossEMA(loss_ema_beta)  # the same bias-corrected EMA as metalr's loss probe
        self.scheduler: MetaScheduler | None = None
        self._grad_norm: float | None = None
        self._val_loss: float | None = None
        self._lr: float | None = None
        self._updates_seen = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(
                f"MetaSchedulerCallback drives one optimizer; configure_optimizers returned {len(trainer.optimizers)}"
            )
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "MetaSchedulerCallback sets the LR itself: return the optimizer alone from configure_optimizers, "
                "without an lr_scheduler"
            )
        budget = trainer.estimated_stepping_batches
        if budget == float("inf"):
            raise ValueError("MetaSchedulerCallback needs a finite run: set max_steps or max_epochs on the Trainer")
        self.scheduler = MetaScheduler.from_pretrained(self.checkpoint, trainer.optimizers[0], int(budget))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self._grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        self._lr = optimizer.param_groups[0]["lr"]  # the LR this update uses, as metalr's loop records it

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._updates_seen:
            return  # a batch whose gradients were accumulated, no update yet
        self._updates_seen = trainer.global_step
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = float(loss)
        features: dict[str, float | None] = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "progress": trainer.global_step / self.scheduler.budget,
            "lr": self._lr,
            "loss_train": loss,
            "loss_ema": self.loss_ema.update(loss),
            "grad_norm": self._grad_norm,
        }
        if self._val_loss is not None:
            features["val_loss"], self._val_loss = self._val_loss, None
        self.scheduler.observe(features)
        self.scheduler.step()
        report = scheduler_report(self.scheduler)
        reason = report.pop("metalr/change_reason", None)
        pl_module.log_dict(report, on_step=True, on_epoch=False)
        if reason is not None:
            for logger in trainer.loggers:
                add_text = getattr(logger.experiment, "add_text", None)  # TensorBoard's SummaryWriter
                if add_text is not None:
                    add_text("metalr/change_reason", reason, trainer.global_step)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.val_loss_key)
        if value is not None and not trainer.sanity_checking:
            self._val_loss = float(value)
