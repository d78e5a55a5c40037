"""What checkpointing costs a training run: time per checkpoint and share of the run's wall time.

    python benchmarks/checkpoint_overhead.py [--config config/config.yaml] [--every N] [--repeats 3]

Every task of the config runs one full run (seed 0, cosine) with a checkpoint every N steps
(default: the config's checkpoint_every) and no minimum interval, so every due checkpoint
is written, into a temporary directory. Each save is timed directly, so the figure does
not drown in the run-to-run noise of a shared machine; the wall time of the same run
without checkpoints is shown beside it, and the overhead is the saves' share of it.
(In the pipeline, ``checkpoint_min_interval_s`` also spaces saves at least that far apart.)
Last line: ``checkpoint_save_ms_worst_task: <ms per save>``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from metalr.config import PHASES, load_config
from metalr.resume import RunCheckpoints
from metalr.tasks import prepare_dataset
from metalr.train import RunSpec, train_run


class TimedCheckpoints(RunCheckpoints):
    def __init__(self, directory, every, min_interval_s):
        super().__init__(directory, every, min_interval_s)
        self.seconds: list[float] = []

    def save(self, *args) -> None:
        tick = time.perf_counter()
        super().save(*args)
        self.seconds.append(time.perf_counter() - tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--every", type=int, help="steps between checkpoints (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    every = args.every or config.checkpoint_every
    task_ids = sorted({t for phase in PHASES for t in config.phase_tasks(phase)})
    print(f"checkpoint every {every} steps, {args.repeats} repeats, medians")
    print(f"{'task':<22} {'budget':>6} {'saves':>5} {'ms/save':>8} {'run s (no ckpt)':>15} {'overhead %':>10}")
    worst, worst_ms = 0.0, 0.0
    for task_id in task_ids:
        task = config.tasks[task_id]
        data = prepare_dataset(task.dataset, config.split_seed, config.val_fraction, config.test_fraction)
        spec = RunSpec("collect", task, "cosine", 0, device=config.device)
        per_save, overhead, plain = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            train_run(spec, data)
            plain_s = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as tmp:
                timed = TimedCheckpoints(tmp, every, 0)
                train_run(spec, data, timed)
            plain.append(plain_s)
            per_save.append(statistics.median(timed.seconds) * 1000 if timed.seconds else 0.0)
            overhead.append(100 * sum(timed.seconds) / plain_s)
        saves = len(timed.seconds)
        pct = statistics.median(overhead)
        worst = max(worst, pct)
        worst_ms = max(worst_ms, statistics.median(per_save))
        print(
            f"{task_id:<22} {task.budget_steps:>6} {saves:>5} {statistics.median(per_save):>8.2f} "
            f"{statistics.median(plain):>15.2f} {pct:>10.2f}"
        )
    print(f"overhead of saving every {every} steps, worst task: {worst:.2f} % of the run's wall time")
    print(f"checkpoint_save_ms_worst_task: {worst_ms:.2f}")


if __name__ == "__main__":
    main()
