"""Drive a fitted MetaScheduler from a Hugging Face ``Trainer``.

    from metalr.integrations.huggingface import meta_scheduler_for_trainer

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizers, callback = meta_scheduler_for_trainer("results/meta/round-1/meta", optimizer, budget=args.max_steps)
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., optimizers=optimizers, callbacks=[callback])

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

from torch.optim import Optimizer
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from metalr.features.basic import LossEMA
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
                f"{state.max_steps}; build it with budget={state.max_steps}"
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
    checkpoint: str | Path, optimizer: Optimizer, budget: int, loss_ema_beta: float = 0.9
) -> tuple[tuple[Optimizer, MetaScheduler], MetaSchedulerCallback]:
    """``(optimizer, scheduler)`` for ``Trainer(optimizers=...)`` and the callback that feeds the scheduler.

    ``budget`` is the number of optimizer updates the Trainer will run (``args.max_steps``,
    or epochs x updates per epoch); the callback refuses to start if they differ.
    """
    scheduler = MetaScheduler.from_pretrained(checkpoint, optimizer, budget)
    return (optimizer, scheduler), MetaSchedulerCallback(scheduler, loss_ema_beta)
