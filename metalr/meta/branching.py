"""The branching expert: state-dependent labels for the meta-learner.

At a few branch points of a run (its *snapshots*: model and optimizer state after update
t), the expert forks continuations that scale the LR by each multiplier m, holds that LR
for a stretch of the budget and then anneals it with cosine to zero at the full budget
(the fixed tail, so that the label is judged on the final validation loss rather than a
short horizon). Each fork is run with ``seeds`` data orders; the label of the state is the
multiplier with the lowest mean final validation loss (a diverged fork counts as +inf).

Because the labelled states come from whatever schedule the source run followed
(randomised exploration, a wrong base LR, or the meta-scheduler itself in a DAgger round),
the learner sees bad states and what fixes them, not only the states of good runs.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch

from metalr.config import BranchConfig, stable_hash
from metalr.divergence import DivergenceMonitor
from metalr.meta.inputs import MAX_LOG_MULT, cosine_factor, decision_interval


def branch_steps(budget: int, points: int, decision_fraction: float) -> list[int]:
    """Evenly spread branch points, each on a decision step of the meta-scheduler."""
    every = decision_interval(budget, decision_fraction)
    steps = {max(every, round(budget * (k + 1) / (points + 1) / every) * every) for k in range(points)}
    return sorted(s for s in steps if s < budget)


def capture(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, first_loss: float) -> dict:
    """The state after update ``step``: enough to continue the run from there in a fork."""

    def clone(state):
        if isinstance(state, torch.Tensor):
            return state.detach().to("cpu", copy=True)
        if isinstance(state, dict):
            return {k: clone(v) for k, v in state.items()}
        if isinstance(state, list):
            return [clone(v) for v in state]
        return state

    return {
        "step": step,
        "next_lr": optimizer.param_groups[0]["lr"],
        "first_loss": first_loss,
        "model": clone(model.state_dict()),
        "optimizer": clone(optimizer.state_dict()),
    }


def fork_lr(step: int, start: int, lr0: float, hold: int, budget: int) -> float:
    """The LR of a fork's update ``step``: lr0 for ``hold`` updates, then cosine from lr0 to 0 at ``budget``."""
    end = start + hold
    if step <= end or budget <= end:
        return lr0
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * (step - end) / (budget - end)))


def continue_from(spec, info, splits, snapshot: dict, multiplier: float, hold: int, fork_seed: int) -> float:
    """Final validation loss of the fork of ``snapshot`` at ``multiplier`` (inf when it diverges).

    ``info`` and ``splits`` are the task's view of its data, as tensors on the run's device.
    """
    from metalr.features import evaluate_split
    from metalr.tasks import build_model
    from metalr.tasks.loaders import BatchLoader
    from metalr.tasks.objectives import batch_loss
    from metalr.train import build_optimizer

    task = spec.task
    device = splits["train"]["y"].device
    torch.manual_seed(fork_seed)
    model = build_model(task.model, info).to(device)
    model.load_state_dict(snapshot["model"])
    optimizer = build_optimizer(task, [p for p in model.parameters() if p.requires_grad], spec.base_lr)
    optimizer.load_state_dict(snapshot["optimizer"])
    batches = BatchLoader(splits["train"], info, task.batch_size, fork_seed)
    start, budget = snapshot["step"], task.budget_steps
    lr0 = snapshot["next_lr"] * multiplier
    # The run's own rule, against the run's first loss.
    divergence = DivergenceMonitor(spec.divergence_factor, spec.loss_ema_beta, start=snapshot["first_loss"])
    model.train()
    for step in range(start + 1, budget + 1):
        lr = fork_lr(step, start, lr0, hold, budget)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = batch_loss(model, next(batches), info)
        if divergence.train_loss(loss.item()) is not None:
            return math.inf
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    val = evaluate_split(model, splits["val"], info)["loss"]
    return val if math.isfinite(val) else math.inf


def fork_seed(run_id: str, step: int, seed: int) -> int:
    return int(stable_hash([run_id, step, seed], 8), 16)


def label_snapshots(spec, data, snapshots: list[dict], cfg: BranchConfig) -> list[dict]:
    """One row per (branch point, multiplier, fork seed): the fork's final validation loss."""
    from metalr.tasks.datasets import task_view
    from metalr.train import resolve_device

    view = task_view(data, spec.task)  # once per run: every fork reads the same tensors
    splits = view.tensors(torch.device(resolve_device(spec.device)))
    hold = max(1, round(cfg.hold_fraction * spec.task.budget_steps))
    rows = []
    for snapshot in snapshots:
        for multiplier in cfg.multipliers:
            for seed in range(cfg.seeds):
                seed_of_fork = fork_seed(spec.run_id, snapshot["step"], seed)
                loss = continue_from(spec, view.info, splits, snapshot, multiplier, hold, seed_of_fork)
                rows.append(
                    {
                        "run_id": spec.run_id,
                        "step": snapshot["step"],
                        "next_lr": snapshot["next_lr"],
                        "base_lr": spec.base_lr,
                        "budget_steps": spec.task.budget_steps,
                        "multiplier": multiplier,
                        "fork_seed": seed,
                        "final_val_loss": loss if math.isfinite(loss) else None,
                        "diverged": not math.isfinite(loss),
                    }
                )
    return rows


FORKS_SCHEMA = {
    "run_id": pl.String,
    "step": pl.Int32,
    "next_lr": pl.Float64,
    "base_lr": pl.Float64,
    "budget_steps": pl.Int32,
    "multiplier": pl.Float64,
    "fork_seed": pl.Int32,
    "final_val_loss": pl.Float64,
    "diverged": pl.Boolean,
}


def forks_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FORKS_SCHEMA)


def state_labels(forks: pl.DataFrame) -> pl.DataFrame:
    """Per (run, branch point): the best multiplier and the label, a = a_now + ln(best), within |a| <= ln 10.

    ``a_now`` is the source run's own log-multiplier on the default cosine at that point,
    so the label is an absolute action of the meta-scheduler. Ties go to the multiplier
    nearest 1 (no change); a point where every fork diverged gets the smallest multiplier.
    """
    means = (
        forks.with_columns(pl.col("final_val_loss").fill_null(math.inf))
        .group_by("run_id", "step", "next_lr", "base_lr", "budget_steps", "multiplier")
        .agg(mean_val_loss=pl.col("final_val_loss").mean())
    )
    rows = []
    for _, group in sorted(means.partition_by("run_id", "step", as_dict=True).items()):
        options = group.iter_rows(named=True)
        best = min(options, key=lambda r: (r["mean_val_loss"], abs(math.log(r["multiplier"]))))
        if not math.isfinite(best["mean_val_loss"]):
            best = min(group.iter_rows(named=True), key=lambda r: r["multiplier"])
        factor = max(cosine_factor(best["step"] + 1, best["budget_steps"]), 1e-12)
        a_now = math.log(max(best["next_lr"], 1e-30) / (best["base_lr"] * factor))
        rows.append(
            {
                "run_id": best["run_id"],
                "step": best["step"],
                "best_multiplier": best["multiplier"],
                "best_val_loss": best["mean_val_loss"] if math.isfinite(best["mean_val_loss"]) else None,
                "a_now": a_now,
                "label": float(np.clip(a_now + math.log(best["multiplier"]), -MAX_LOG_MULT, MAX_LOG_MULT)),
            }
        )
    schema = {
        "run_id": pl.String,
        "step": pl.Int32,
        "best_multiplier": pl.Float64,
        "best_val_loss": pl.Float64,
        "a_now": pl.Float64,
        "label": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)
