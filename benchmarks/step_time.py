"""Median wall time of one training step per task of a config, single-threaded, on this machine.

    python benchmarks/step_time.py [--config config/config.yaml] [--scheduler cosine]

Every task runs one full run (its whole budget, probes and validation included) with
seed 0; the per-step times come from the trajectory's ``res_step_time_s`` column.
Last line: ``median_step_ms_worst_task: <ms>``.
"""

from __future__ import annotations

import argparse

import torch

from metalr.config import PHASES, load_config
from metalr.tasks import prepare_dataset
from metalr.train import RunSpec, train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--scheduler", default="cosine")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    task_ids = sorted({t for phase in PHASES for t in config.phase_tasks(phase)})
    worst = 0.0
    print(f"{'task':<22} {'median step ms':>14} {'p90 ms':>8} {'run s':>7}  device")
    for task_id in task_ids:
        task = config.tasks[task_id]
        data = prepare_dataset(
            config.dataset(task.dataset), config.split_seed, config.val_fraction, config.test_fraction
        )
        result = train_run(RunSpec("collect", task, args.scheduler, 0, device=config.device), data)
        times = result.trajectory["res_step_time_s"] * 1000
        row = result.summary.row(0, named=True)
        median, p90 = times.median(), times.quantile(0.9)
        worst = max(worst, median)
        print(f"{task_id:<22} {median:>14.2f} {p90:>8.2f} {row['wall_time_s']:>7.2f}  {row['device']}")
    print(f"median_step_ms_worst_task: {worst:.2f}")


if __name__ == "__main__":
    main()
