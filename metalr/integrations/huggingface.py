"""Drive a fitted MetaScheduler from a Hugging Face ``Trainer``.

    from metalr.integrations.huggingface import meta_scheduler_for_trainer

    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...)
    scheduler = meta_scheduler_for_trainer(trainer, "results/meta/round-1/meta")
    trainer.train()

The scheduler is built for the number of optimizer updates the Trainer will run: its
``max_steps``, or with ``max_steps=-1`` (epoch-based training) the epochs times the updates
per epoch, computed by the Trainer's own ``set_initial_training_values``. Each logged update
also reports ``metalr/lr``, ``metalr/fallback_rate`` and, after a decision,
``metalr/change_reason`` to whatever ``report_to`` names (TensorBoard: tags
``train/metalr/...``).

The Trainer steps the scheduler itself; the callback collects each optimizer update's
features (step, LR, train loss and its EMA, the gradient norm the Trainer logs, the eval
loss after an evaluation) and hands them to ``scheduler.observe`` once per update.

Timing differs from metalr's own loop by one update: the Trainer steps the scheduler
*before* it logs the loss and evaluates, so the features of update t reach the scheduler
just before its step after update t+1. A decision at update k therefore reads the run up
to update k-1 (metalr's loop: up to k). Set ``logging_steps=1``: the Trainer only reports
the loss and gradient norm when it logs, and with a larger interval the scheduler sees
the window's mean loss every ``logging_steps`` updates instead of every update.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from metalr.features.basic import LossEMA
from metalr.integrations.reporting import scheduler_report
from metalr.schedulers import MetaScheduler


class MetaSchedulerCallback(TrainerCallback):
    """Feeds the Trainer's per-update information into ``scheduler.observe``.

    Features of one update arrive from several events (``on_step_end``, ``on_log``,
    ``on_evaluate``); they are gathered and observed together at the start of the next
    update, before the Trainer's next ``scheduler.step()``, so the scheduler gets one
    complete row per update as in metalr's own loop.
    """

    def __init__(self, scheduler: MetaScheduler, loss_ema_beta: float = 0.9):
        self.scheduler = scheduler
        self.loss_ema = LossEMA(loss_ema_beta)  # the same bias-corrected EMA as metalr's loss probe
        self._pending: dict[str, float | None] | None = None
        self._lr: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.max_steps != self.scheduler.budget:
            # The default schedule decays to zero at the budget: a mismatch silently truncates
            # or overshoots it.
            raise ValueError(
                f"the MetaScheduler was built for {self.scheduler.budget} updates but the Trainer will run "
                f"{state.max_steps}; call meta_scheduler_for_trainer after the last change to the Trainer's arguments"
            )
        if args.logging_strategy != "steps" or args.logging_steps != 1:
            warnings.warn(
                "MetaSchedulerCallback: set logging_steps=1 (logging_strategy='steps'); the Trainer reports the "
                "train loss and gradient norm only when it logs, so the meta-scheduler sees them less often",
                stacklevel=2,
            )

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._flush()
        # The LR this update will use, as metalr's loop records it.
        self._lr = self.scheduler.optimizer.param_groups[0]["lr"]

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        step = state.global_step
        self._pending = {
            "step": step,
            "epoch": state.epoch,
            "progress": step / state.max_steps,
            "lr": self._lr,
        }

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        # Training logs carry "loss"; evaluation and end-of-training logs do not.
        if self._pending is None or not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        self._pending.update(loss_train=loss, loss_ema=self.loss_ema.update(loss), grad_norm=logs.get("grad_norm"))
        # The callbacks after this one (meta_scheduler_for_trainer puts it first) include
        # report_to's loggers: they log these with the Trainer's own values.
        logs.update(scheduler_report(self.scheduler))

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kwargs
    ):
        if self._pending is not None and metrics and "eval_loss" in metrics:
            self._pending["val_loss"] = float(metrics["eval_loss"])

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._flush()  # no update follows, but the scheduler's record of the run is complete

    def _flush(self) -> None:
        if self._pending is not None:
            self.scheduler.observe(self._pending)
            self._pending = None


def meta_scheduler_for_trainer(
    trainer: Trainer, checkpoint: str | Path, loss_ema_beta: float = 0.9
) -> MetaScheduler:
    """Make a MetaScheduler from ``checkpoint`` drive ``trainer``'s learning rate; returns it.

    It steps the Trainer's optimizer (the one passed as ``optimizers=(optimizer, None)``, or
    the one the Trainer creates) for the updates the Trainer will run, ``max_steps`` or,
    epoch-based, as many as its epochs take. The feeding callback goes first among the
    Trainer's callbacks: the Trainer places report_to's loggers before user callbacks, and
    they must see the values the callback adds to each log.
    """
    optimizer = trainer.optimizer if trainer.optimizer is not None else trainer.create_optimizer()
    # The Trainer's own count, so epochs, gradient accumulation and the last partial batch
    # agree with the loop it will run; MetaSchedulerCallback.on_train_begin checks it again.
    *_, budget = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
    scheduler = MetaScheduler.from_pretrained(checkpoint, optimizer, budget)
    trainer.lr_scheduler = scheduler
    trainer.callback_handler.callbacks.insert(0, MetaSchedulerCallback(scheduler, loss_ema_beta))
    return scheduler
