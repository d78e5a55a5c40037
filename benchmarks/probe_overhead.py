"""Cost of the trajectory probes, against a plain PyTorch loop measured in the same run.

    python benchmarks/probe_overhead.py [--config config/config.yaml] [--repeats 11]

For each task (an MLP, a CNN with BatchNorm, an LSTM forecaster and a BiLSTM text model
from the default config) it measures the CPU time of this thread (``time.thread_time``,
so that other processes competing for the cores inflate neither side), single-threaded
and interleaved over ``--repeats`` rounds (median taken), of:
- a plain PyTorch loop: forward, backward, optimizer and cosine scheduler steps, and the
  same validation passes as metalr's loop (validation is part of training, not a probe);
- metalr's loop with only the always-on probes (loss + EMA, gradient norm, LR, step time);
- metalr's loop with every probe at the task's default cadences.
It also prints each probe's CPU cost per step, averaged over the run.
Last line: ``probe_overhead_pct: <always-on overhead, worst task>``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import torch

import metalr.train
from metalr.config import ProbeConfig, load_config
from metalr.features import evaluate_split
from metalr.optim import build_optimizer
from metalr.schedulers import build_scheduler
from metalr.tasks import build_model, prepare_dataset
from metalr.tasks.loaders import BatchLoader
from metalr.tasks.objectives import batch_loss
from metalr.train import RunSpec, train_run

# One of each model kind in the default config (the first variant of each family).
TASKS = ("digits-mlp-00", "digits-cnn", "co2-lstm-00", "synthtext-bilstm-00")


def plain_loop(task, data) -> float:
    """CPU seconds per step of a loop with no instrumentation beyond validation.

    Set-up and the final test pass are included, as they are in metalr's ``train_run``.
    """
    start = time.thread_time()
    splits = data.tensors("cpu")
    torch.manual_seed(0)
    model = build_model(task.model, data.info)
    optimizer = build_optimizer(task, model.parameters())
    scheduler = build_scheduler("cosine", optimizer, task.budget_steps)
    batches = BatchLoader(splits["train"], data.info, task.batch_size, 0)
    for step in range(1, task.budget_steps + 1):
        loss = batch_loss(model, next(batches), data.info)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % task.val_every == 0 or step == task.budget_steps:
            evaluate_split(model, splits["val"], data.info)
        scheduler.step()
    evaluate_split(model, splits["test"], data.info)
    return (time.thread_time() - start) / task.budget_steps


def metalr_loop(task, data) -> float:
    """CPU seconds per step of metalr's instrumented ``train_run``."""
    start = time.thread_time()
    train_run(RunSpec("collect", task, "cosine", 0), data)
    return (time.thread_time() - start) / task.budget_steps


class ProbeTimer:
    """Wraps the probes a run builds so each hook's time is added to its probe's total."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._build = metalr.train.build_probes

    def __call__(self, *args, **kwargs):
        probes = self._build(*args, **kwargs)
        for probe in probes:
            for hook in ("after_backward", "after_update"):
                setattr(probe, hook, self._timed(type(probe).__name__, getattr(probe, hook)))
        return probes

    def _timed(self, name, hook):
        def run(ctx):
            tick = time.thread_time()
            out = hook(ctx)
            self.seconds[name] += time.thread_time() - tick
            return out

        return run


def _ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    worst_always_on = 0.0
    for task_id in TASKS:
        task = config.tasks[task_id]
        data = prepare_dataset(
            config.dataset(task.dataset), config.split_seed, config.val_fraction, config.test_fraction
        )
        always_on = replace(task, probes=ProbeConfig(enabled=False))
        times = defaultdict(list)
        plain_loop(task, data)  # warm-up
        for _ in range(args.repeats):
            times["plain"].append(plain_loop(task, data))
            times["always_on"].append(metalr_loop(always_on, data))
            times["default"].append(metalr_loop(task, data))
        plain, on, full = (statistics.median(times[k]) for k in ("plain", "always_on", "default"))
        # Ratios are paired within each round, then the median round is taken: rounds run
        # back to back, so a slow moment of the machine hits both sides of a ratio.
        always_pct = 100 * (statistics.median(_ratios(times["always_on"], times["plain"])) - 1)
        full_pct = 100 * (statistics.median(_ratios(times["default"], times["plain"])) - 1)
        worst_always_on = max(worst_always_on, always_pct)
        print(
            f"{task_id}: plain {plain * 1e3:.3f} ms/step, always-on {on * 1e3:.3f} ms/step "
            f"({always_pct:+.1f}%), all probes at default cadences {full * 1e3:.3f} ms/step ({full_pct:+.1f}%)"
        )
        timer = ProbeTimer()
        metalr.train.build_probes = timer
        try:
            metalr_loop(task, data)
        finally:
            metalr.train.build_probes = timer._build
        for name, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<24} {seconds / task.budget_steps * 1e6:9.1f} us/step")
    print(f"probe_overhead_pct: {worst_always_on:.1f}")


if __name__ == "__main__":
    main()
