"""What an evaluation run saves by computing only the probes its scheduler observes.

    python benchmarks/eval_probes.py [--config config/config.yaml] [--schedulers cosine plateau curvature]

Per held-out task of the config and scheduler: the process CPU time of the same run with
every probe (as a collection run computes them) and with the evaluation's probe selection
(``metalr.train.observed_probes``), best of two each, one torch thread. Meta-learners observe
every probe and save nothing; they are left out. The last line is ``eval_probe_saving_pct: N``,
the saving summed over the runs measured.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from metalr.config import load_config
from metalr.pipeline import phase_run_specs
from metalr.tasks import prepare_dataset
from metalr.train import train_run


def cpu_seconds(spec, data) -> float:
    started = time.process_time()
    train_run(spec, data)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--schedulers", nargs="+", default=["cosine", "plateau", "curvature"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    totals = {"collect": 0.0, "eval": 0.0}
    for task_id in config.held_out:
        task = config.task(task_id)
        data = prepare_dataset(
            config.dataset(task.dataset), config.split_seed, config.val_fraction, config.test_fraction
        )
        specs = {s.scheduler: s for s in phase_run_specs(config, "eval", task_id) if s.lr_multiplier == 1.0}
        for name in args.schedulers:
            # The same run, once as collection computes probes (every one) and once as evaluation does.
            best = {p: min(cpu_seconds(replace(specs[name], phase=p), data) for _ in range(2)) for p in totals}
            for phase, seconds in best.items():
                totals[phase] += seconds
            saving = 1 - best["eval"] / best["collect"]
            print(
                f"{task_id:<16} {name:<10} every probe {best['collect']:.2f} s, observed only {best['eval']:.2f} s: "
                f"-{saving:.0%}",
                flush=True,
            )
    print(f"eval_probe_saving_pct: {100 * (1 - totals['eval'] / totals['collect']):.0f}")


if __name__ == "__main__":
    main()
