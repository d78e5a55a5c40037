"""Decision cost of the meta-scheduler per training step, against torch's cosine, on the smallest default task.

    python benchmarks/meta_overhead.py [--config config/config.yaml] [--task TASK] [--repeats 21]

For every architecture in ``metalr.meta.model.ARCHITECTURES`` it saves an untrained
checkpoint with the config's ``meta`` settings (hidden size, layers, decision fraction;
weights do not change the cost) and loads it with ``MetaScheduler.from_pretrained``, as a
user would. Each round then measures, in CPU time of this thread (``time.thread_time``)
and single-threaded, over one whole run of the task's budget (so the decisions every
``decision_fraction`` of the budget are amortised over the steps between them):
- ``observe(row) + step()`` of the meta-scheduler, ``row`` being the real feature rows of
  one cosine run of the task;
- ``step()`` of a plain ``CosineAnnealingLR``;
- the per-step time of a plain PyTorch loop on the task (``probe_overhead.plain_loop``).
Rounds are interleaved and each ratio is taken within its round, then the median round
is reported, so a slow moment of the shared machine hits both sides of a ratio.
The smallest task is the one with the fewest model parameters (so the shortest steps,
where the scheduler's cost weighs most), unless ``--task`` names one.
It also splits the extra cost: per step (``observe`` + ``step`` with decisions switched off)
and per decision (what the decisions add, times the decision interval).
Last line: ``meta_overhead_pct: <extra cost over cosine, % of a step, worst architecture>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from metalr.config import PHASES, MetaConfig, load_config
from metalr.meta.checkpoint import save_checkpoint
from metalr.meta.inputs import INPUT_FEATURES, decision_interval
from metalr.meta.model import ARCHITECTURES
from metalr.schedulers import MetaScheduler
from metalr.tasks import build_model, prepare_dataset
from metalr.tasks.models import count_parameters
from metalr.train import RunSpec, train_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_overhead import plain_loop  # noqa: E402  (a sibling script, not a package)


def task_data(config, task):
    return prepare_dataset(config.dataset(task.dataset), config.split_seed, config.val_fraction, config.test_fraction)


def smallest_task(config) -> str:
    """The config's task with the fewest model parameters."""
    sizes = {}
    for task_id in sorted({t for phase in PHASES for t in config.phase_tasks(phase)}):
        task = config.tasks[task_id]
        data = task_data(config, task)
        sizes[task_id] = count_parameters(build_model(task.model, data.info))
    return min(sizes, key=sizes.get)


def save_untrained(meta: MetaConfig, directory: Path) -> Path:
    """A checkpoint laid out as the pipeline's fit rule writes it, with untrained weights."""
    model = ARCHITECTURES[meta.arch](len(INPUT_FEATURES), meta.hidden, meta.layers)
    save_checkpoint(model, {**asdict(meta), "features": list(INPUT_FEATURES)}, directory)
    return directory


def scheduler_loop(scheduler: LRScheduler, rows: list[dict]) -> float:
    """CPU seconds per step of driving ``scheduler`` through ``rows``, as metalr's loop does."""
    observe = getattr(scheduler, "observe", None)
    optimizer = scheduler.optimizer
    start = time.thread_time()
    for row in rows:
        # The optimizer has no gradients, so its step is a cheap no-op; it keeps torch's
        # order check quiet and costs the same in both loops.
        optimizer.step()
        if observe is not None:
            observe(row)
        scheduler.step()
    return (time.thread_time() - start) / len(rows)


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--task", default=None, help="default: the task with the fewest parameters")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    task = config.tasks[args.task or smallest_task(config)]
    data = task_data(config, task)
    rows = train_run(RunSpec("collect", task, "cosine", 0), data).trajectory.to_dicts()
    budget, every = len(rows), decision_interval(len(rows), config.meta.decision_fraction)
    print(
        f"task {task.task_id} ({count_parameters(build_model(task.model, data.info))} parameters), "
        f"budget {budget} steps, a decision every {every} steps, hidden {config.meta.hidden}, "
        f"{args.repeats} rounds"
    )

    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = {
            name: save_untrained(replace(config.meta, arch=name), Path(tmp) / name) for name in sorted(ARCHITECTURES)
        }

        def meta(name: str, decide: bool = True) -> float:
            scheduler = MetaScheduler.from_pretrained(checkpoints[name], _optimizer(task.base_lr), budget)
            if not decide:  # observe() and step() only: the per-step share of the cost
                scheduler.decision_every = budget + 1
            return scheduler_loop(scheduler, rows)

        def cosine() -> float:
            return scheduler_loop(CosineAnnealingLR(_optimizer(task.base_lr), T_max=budget), rows)

        plain_loop(task, data)  # warm-up: allocator, kernels, lazy imports
        for name in checkpoints:
            meta(name)
        rounds: list[dict[str, float]] = []
        for _ in range(args.repeats):
            times = {"cosine": cosine(), "plain": plain_loop(task, data)}
            times |= {name: meta(name) for name in checkpoints}
            times |= {f"{name} no decisions": meta(name, decide=False) for name in checkpoints}
            rounds.append(times)

    def median(key) -> float:
        return statistics.median(key(r) for r in rounds)

    step_s, cosine_s = median(lambda r: r["plain"]), median(lambda r: r["cosine"])
    print(f"plain training step: {step_s * 1e3:.3f} ms; CosineAnnealingLR step: {cosine_s * 1e6:.1f} us")
    print(
        f"{'arch':<12} {'observe+step us':>15} {'extra us/step':>13} {'us/interval':>11} {'% of step':>9} "
        f"{'per-step us':>11} {'us/decision':>11}"
    )
    worst = float("-inf")
    for name in checkpoints:
        extra = median(lambda r, n=name: r[n] - r["cosine"])
        # Paired within the round: the extra cost over that round's plain step.
        pct = 100 * median(lambda r, n=name: (r[n] - r["cosine"]) / r["plain"])
        # Over one decision interval: `every` observe() calls and one forward of the learner.
        per_interval = extra * every
        worst = max(worst, pct)
        # The split: observe() + step() without decisions, and what the decisions add, one per interval.
        per_step = median(lambda r, n=name: r[f"{n} no decisions"] - r["cosine"])
        per_decision = median(lambda r, n=name: r[n] - r[f"{n} no decisions"]) * every
        print(
            f"{name:<12} {median(lambda r, n=name: r[n]) * 1e6:>15.1f} {extra * 1e6:>13.1f} "
            f"{per_interval * 1e6:>11.0f} {pct:>9.2f} {per_step * 1e6:>11.1f} {per_decision * 1e6:>11.0f}"
        )
    print(f"meta_overhead_pct: {worst:.2f}")


if __name__ == "__main__":
    main()
