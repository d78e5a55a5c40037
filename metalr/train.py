"""The single instrumented training loop: one run = one task x one scheduler x one seed."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import polars as pl
import torch

from metalr import __version__
from metalr.config import TaskSpec, stable_hash
from metalr.divergence import DivergenceMonitor
from metalr.features import Probe, StepContext, ValidationProbe, build_probes, evaluate_split
from metalr.features.basic import LossProbe
from metalr.features.gradients import GradNormProbe
from metalr.features.resources import ResourceProbe
from metalr.features.uncertainty import UncertaintyProbe
from metalr.features.validation import trivial_metric
from metalr.optim import build_optimizer, resolve_device
from metalr.resume import LoopState, RunCheckpoints, capture, fast_forward
from metalr.schedulers import build_scheduler, evaluation_weights, hyperparameters
from metalr.schedulers.fork import HoldThenAnneal
from metalr.schedulers.peers import is_schedule_free, on_evaluation_weights
from metalr.tasks import SplitData, build_model
from metalr.tasks.datasets import task_view
from metalr.tasks.loaders import BatchLoader, InputTransform
from metalr.tasks.objectives import batch_loss, target_loss
from metalr.trajectories import DIVERGED, FAILED, OK, runs_frame, trajectory_frame


@dataclass(frozen=True)
class RunSpec:
    phase: str
    task: TaskSpec
    scheduler: str
    seed: int
    device: str = "cpu"
    divergence_factor: float = 10.0
    loss_ema_beta: float = 0.9
    meta_checkpoint: str | None = None
    # The externally tuned framing scales the task's default base LR by a grid point;
    # meta-training collection spreads it over 10^U(-1.5, 1.5).
    lr_multiplier: float = 1.0
    # Updates after which the branching expert forks the run (meta-training sources only).
    snapshot_steps: tuple[int, ...] = ()

    @property
    def base_lr(self) -> float:
        return self.task.base_lr * self.lr_multiplier

    @functools.cached_property
    def config_hash(self) -> str:
        payload = asdict(self)
        payload.pop("device")
        payload.pop("meta_checkpoint")
        payload.pop("snapshot_steps")  # what is kept of a run, not what it does
        payload["task"] = self.task.content()
        return stable_hash(payload)

    @functools.cached_property
    def run_id(self) -> str:
        grid = "" if self.lr_multiplier == 1.0 else f"-x{self.lr_multiplier:.3g}"
        return f"{self.phase}-{self.task.task_id}-{self.scheduler}{grid}-s{self.seed}-{self.config_hash[:6]}"


@dataclass
class RunResult:
    """A finished run: its runs.parquet row and its per-step trajectory rows.

    The tables are built on first access, outside the timed training run, by whoever
    writes or inspects them.
    """

    row: dict
    rows: list[dict]
    resumed_from: int = 0  # the checkpoint step this attempt started from (0: from scratch)
    skipped: bool = False  # finished in an earlier attempt of the job; not trained again
    snapshots: list[dict] = dataclasses.field(default_factory=list)  # states at spec.snapshot_steps

    @functools.cached_property
    def summary(self) -> pl.DataFrame:
        """One row, RUNS_SCHEMA."""
        return runs_frame([self.row])

    @functools.cached_property
    def trajectory(self) -> pl.DataFrame:
        """One row per step, ``trajectory_schema()``."""
        return trajectory_frame(self.rows)


@dataclass(frozen=True)
class Fork:
    """A continuation of a source run from one of its snapshots (the branching expert's fork).

    The loop starts after update ``snapshot["step"]`` from the snapshot's model and optimizer,
    with the LR held at ``multiplier`` x the snapshot's next LR for ``hold`` updates and then
    annealed with cosine to 0 at the budget; only the loss probe runs; ``seed`` draws its data
    order (a fork with the source's seed sees the source's batches).
    """

    snapshot: dict
    multiplier: float
    hold: int
    seed: int


def task_tensors(spec: RunSpec, data: SplitData) -> tuple[SplitData, dict]:
    """The task's view of ``data`` and its splits as tensors on the run's device (forks of a run share them)."""
    view = task_view(data, spec.task)
    return view, view.tensors(torch.device(resolve_device(spec.device)))


# Loss, gradient norm and validation: every scheduler, the run summary and the report read them.
# Resources: cheap (every resources_every steps), and the summary's overhead table reads them.
ALWAYS_ON_PROBES = (LossProbe, GradNormProbe, ValidationProbe, ResourceProbe)


def observed_probes(probes: list[Probe], needs: Sequence[str]) -> list[Probe]:
    """An evaluation run's probes: the always-on ones and those writing a column its scheduler
    observes. The others cost up to 1.8x a step and only the summary's uncertainty columns and
    the curves' λ_max panel read them, which then show the schedulers that observe them;
    collection keeps every probe, as the meta-learner learns from them."""
    wanted = set(needs)
    return [p for p in probes if isinstance(p, ALWAYS_ON_PROBES) or wanted & set(p.columns)]


def train_run(spec: RunSpec, data: SplitData, checkpoints: RunCheckpoints | None = None) -> RunResult:
    """Train one run; with ``checkpoints``, resume from the run's checkpoint and save one every N steps."""
    return run_loop(spec, *task_tensors(spec, data), checkpoints=checkpoints)


def run_loop(
    spec: RunSpec,
    data: SplitData,
    splits: dict,
    checkpoints: RunCheckpoints | None = None,
    fork: Fork | None = None,
) -> RunResult:
    """The training loop of a run (or, with ``fork``, of a fork) on ``data``, the task's view, and ``splits``."""
    started = time.perf_counter()
    task, info = spec.task, data.info
    device = splits["train"]["y"].device
    n_train = info.sizes["train"]
    seed = spec.seed if fork is None else fork.seed

    torch.manual_seed(seed)
    model = build_model(task.model, info).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if fork is None:
        optimizer = build_optimizer(task, params, spec.base_lr, spec.scheduler)
        scheduler = build_scheduler(
            spec.scheduler,
            optimizer,
            task.budget_steps,
            spec.meta_checkpoint,
            batch_size=task.batch_size,
            seed=int(spec.config_hash[:8], 16),
        )
        # Probes that run extra forward passes call model(inputs); CTC models take (inputs, lengths).
        probe_config = task.probes if info.kind != "ctc" else replace(task.probes, enabled=False)
        probes = build_probes(probe_config, task.budget_steps, task.val_every, spec.loss_ema_beta, spec.seed)
        if spec.phase == "eval":
            probes = observed_probes(probes, getattr(scheduler, "needs", ()))
        loop = (checkpoints.restore(spec, model, optimizer, scheduler, probes) if checkpoints else None) or LoopState()
    else:
        model.load_state_dict(fork.snapshot["model"])
        optimizer = build_optimizer(task, params, spec.base_lr)
        optimizer.load_state_dict(fork.snapshot["optimizer"])
        start, lr0 = fork.snapshot["step"], fork.snapshot["next_lr"] * fork.multiplier
        scheduler = HoldThenAnneal(optimizer, start, lr0, fork.hold, task.budget_steps)
        probes = [LossProbe(spec.loss_ema_beta)]  # a fork is judged on its final validation loss only
        loop = LoopState(step=start, first_loss=fork.snapshot["first_loss"])
    batches = BatchLoader(splits["train"], info, task.batch_size, seed)
    schedule_free = is_schedule_free(optimizer)
    if schedule_free:
        optimizer.train()  # a checkpoint holds the evaluation weights; train from the training weights
    # Index draws only: augmentation draws from the global RNG, whose state the checkpoint restored.
    fast_forward(batches.indices, loop.step)
    after_backward, after_update = Probe.hooks(probes, "after_backward"), Probe.hooks(probes, "after_update")
    if schedule_free:  # validation and uncertainty read the averaged weights Schedule-Free evaluates
        after_update = [
            on_evaluation_weights(hook, hook.__self__.due, optimizer)
            if isinstance(hook.__self__, (ValidationProbe, UncertaintyProbe))
            else hook
            for hook in after_update
        ]
    observe = getattr(scheduler, "observe", None)

    run_id = spec.run_id  # a hash of the spec: computed once, not per step
    val_inputs = InputTransform(info, train=False)(splits["val"])["X"]  # what the model sees
    # One context, updated in place: steps of the smallest models take ~0.3 ms.
    ctx = StepContext(
        0,
        model,
        params,
        optimizer,
        target_loss(info),
        val_inputs[:0],
        splits["val"]["y"][:0],
        0.0,
        0.0,
        info,
        val_inputs,
        splits["val"]["y"],
        val_split=splits["val"],
    )
    epochs_per_step = task.batch_size / n_train
    rows, first_loss, last_val, change_reason = loop.rows, loop.first_loss, loop.last_val, loop.change_reason
    status, diverged_reason = OK, None
    # A fork is judged by its run's own rule, against the run's first loss.
    divergence = (
        DivergenceMonitor.replay(rows, spec.divergence_factor, spec.loss_ema_beta)
        if fork is None
        else DivergenceMonitor(spec.divergence_factor, spec.loss_ema_beta, start=fork.snapshot["first_loss"])
    )
    snapshot_steps, snapshots = frozenset(spec.snapshot_steps if fork is None else ()), loop.snapshots
    model.train()
    for step in range(loop.step + 1, task.budget_steps + 1):
        tick = time.perf_counter()
        batch = next(batches)
        inputs, targets = batch["X"], batch["y"]
        loss = batch_loss(model, batch, info)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_value = loss.item()
        first_loss = loss_value if first_loss is None else first_loss
        lr = optimizer.param_groups[0]["lr"]
        ctx.step, ctx.inputs, ctx.targets, ctx.loss, ctx.lr = step, inputs, targets, loss_value, lr
        row = {
            "run_id": run_id,
            "step": step,
            "epoch": step * epochs_per_step,
            "progress": step / task.budget_steps,
            "lr": lr,
            "lr_change_reason": change_reason,
            # The size of a change, on the step whose reason says why.
            "lr_change": lr / rows[-1]["lr"] if change_reason is not None and rows and rows[-1]["lr"] else None,
        }
        for hook in after_backward:
            row.update(hook(ctx))
        diverged_reason = divergence.train_loss(loss_value)
        if diverged_reason is not None:
            status = DIVERGED
            row["res_step_time_s"] = time.perf_counter() - tick
            rows.append(row)
            break
        optimizer.step()
        ctx.step_time_s = time.perf_counter() - tick
        for hook in after_update:
            row.update(hook(ctx))
        if row.get("val_loss") is not None:
            last_val = row
            diverged_reason = divergence.val_loss(row["val_loss"])
            if diverged_reason is not None:
                status = DIVERGED
                row["res_step_time_s"] = time.perf_counter() - tick
                rows.append(row)
                break
        if observe is not None:
            observe(row)
        scheduler.step()
        # Recorded on the first step that uses the new LR.
        change_reason = None
        if optimizer.param_groups[0]["lr"] != lr:
            change_reason = getattr(scheduler, "change_reason", None) or type(scheduler).__name__
        row["res_step_time_s"] = time.perf_counter() - tick
        rows.append(row)
        if step in snapshot_steps:
            snapshots.append(capture(step, model, optimizer, first_loss))
        if checkpoints is not None and checkpoints.due(step, task.budget_steps):
            loop.step, loop.first_loss, loop.last_val, loop.change_reason = step, first_loss, last_val, change_reason
            loop.elapsed_s += time.perf_counter() - started
            started = time.perf_counter()
            with evaluation_weights(optimizer):
                checkpoints.save(spec, model, optimizer, scheduler, probes, loop)

    ok = status == OK
    if fork is not None:
        val = evaluate_split(model, splits["val"], info)["loss"] if ok else math.inf
        return RunResult({"status": status, "final_val_loss": val if math.isfinite(val) else math.inf}, rows)
    with evaluation_weights(optimizer):
        test = evaluate_split(model, splits["test"], info) if ok else {}
    summary = {
        **run_identity(spec, data),
        "scheduler_params": json.dumps(hyperparameters(scheduler), sort_keys=True),
        "status": status,
        "diverged_reason": diverged_reason,
        "steps_done": len(rows),
        "final_train_loss": rows[-1].get("loss_ema") if rows else None,
        "final_val_loss": last_val.get("val_loss") if ok else None,
        "final_val_metric": last_val.get(f"val_{info.metric}") if ok else None,
        "test_loss": test.get("loss"),
        "test_metric": test.get(info.metric),
        **{f"test_{name}": value for name, value in test.items() if name != "loss"},
        "wall_time_s": loop.elapsed_s + time.perf_counter() - started,
        "device": str(device),
    }
    return RunResult(summary, rows, resumed_from=loop.resumed_from, snapshots=snapshots if ok else [])


def run_identity(spec: RunSpec, data: SplitData) -> dict:
    """The columns of a runs.parquet row that are known before training starts."""
    task, info = spec.task, data.info
    return {
        "run_id": spec.run_id,
        "phase": spec.phase,
        "task": task.task_id,
        "task_hash": task.config_hash,
        "dataset": task.dataset,
        "model": json.dumps(asdict(task.model), sort_keys=True),
        "optimizer": task.optimizer,
        "batch_size": task.batch_size,
        "base_lr": spec.base_lr,
        "lr_multiplier": spec.lr_multiplier,
        "weight_decay": task.weight_decay,
        "budget_steps": task.budget_steps,
        "scheduler": spec.scheduler,
        "seed": spec.seed,
        "metric": info.metric,
        "higher_is_better": info.higher_is_better,
        "trivial_test_metric": trivial_metric(data.split("train"), data.split("test"), info),
        "torch_version": torch.__version__,
        "metalr_version": __version__,
        "python_version": platform.python_version(),
        "config_hash": spec.config_hash,
    }


def failed_run(spec: RunSpec, data: SplitData, error: BaseException) -> RunResult:
    """A run that raised: recorded with status=failed so the pipeline goes on and nothing is lost."""
    summary = {
        **run_identity(spec, data),
        "status": FAILED,
        "error": f"{type(error).__name__}: {error}",
        "steps_done": 0,
        "device": _device_name(spec.device),
    }
    return RunResult(summary, [])


def _device_name(requested: str) -> str:
    """The device a run resolves to; the requested one when resolving it is what failed."""
    try:
        return resolve_device(requested)
    except RuntimeError:
        return requested
