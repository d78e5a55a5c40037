"""Estimated training CPU of a config's pipeline, from one measured run per task, against a reference config.

    python benchmarks/bench_cost.py [--config config/bench.yaml] [--reference OTHER.yaml]

For a config whose full run takes too long to try after every edit (the bench), this
measures one cosine run per task, single-threaded, in CPU time: with every probe on (as
collection runs and the meta-learners' evaluation runs compute them) and with none observed
(as a baseline's evaluation run). It multiplies them by the pipeline's run counts
(``phase_run_count``) and by the branching expert's forks, and sums:
- collection: every collected run of meta-training and meta-validation, in every DAgger round;
- forks: ``multipliers x seeds x points`` forks per collected run, each from its branch point
  to the budget (on average half of it), at the evaluation-run cost;
- evaluation: every held-out run, half of them at the every-probe cost (the meta-learners
  are about half of them).
It leaves out start-up, fitting and reporting (minutes at most). With ``--reference`` it
estimates a second config the same way, in the same process, so a config whose wall time
was measured calibrates the other: the ratio of the two estimates is the figure to read on
a noisy machine. Last line: ``estimated_cpu_ratio: <config / reference>`` (or
``estimated_cpu_s: <seconds>`` without a reference).
"""

from __future__ import annotations

import argparse
import time

import torch

from metalr.config import PipelineConfig, load_config, on_policy_phase
from metalr.pipeline import phase_run_count
from metalr.tasks import prepare_dataset
from metalr.train import RunSpec, train_run

# (task content, data split, phase) -> CPU seconds: a task the two configs share is measured once.
_MEASURED: dict[tuple, float] = {}


def _run_cpu_s(config: PipelineConfig, task_id: str, phase: str) -> float:
    task = config.tasks[task_id]
    split = (config.split_seed, config.val_fraction, config.test_fraction)
    key = (task.config_hash, split, phase)
    if key not in _MEASURED:
        data = prepare_dataset(task.dataset, *split)
        started = time.process_time()
        train_run(RunSpec(phase, task, "cosine", 0), data)
        _MEASURED[key] = time.process_time() - started
    return _MEASURED[key]


def _measured(config: PipelineConfig, task_id: str) -> tuple[float, float]:
    """(every probe on, baseline evaluation) CPU seconds of one run; tasks equal by content share one."""
    return _run_cpu_s(config, task_id, "collect"), _run_cpu_s(config, task_id, "eval")


def estimate(config_path: str) -> dict[str, float]:
    config = load_config(config_path)
    branching = config.meta.branching
    forks_per_run = len(branching.multipliers) * branching.seeds * branching.points * 0.5  # in budgets
    totals = {"collection": 0.0, "forks": 0.0, "evaluation": 0.0}
    for base, tasks in (("collect", config.meta_train), ("metaval", config.meta_val)):
        phases = [base] + [on_policy_phase(base, r) for r in range(1, config.meta.dagger_rounds + 1)]
        for task_id in tasks:
            probed, plain = _measured(config, task_id)
            runs = sum(phase_run_count(config, phase, task_id) for phase in phases)
            totals["collection"] += runs * probed
            totals["forks"] += runs * forks_per_run * plain
    for task_id in config.held_out:
        probed, plain = _measured(config, task_id)
        runs = phase_run_count(config, "eval", task_id)
        totals["evaluation"] += runs * 0.5 * (probed + plain)
        print(f"  {task_id:<28} {runs:>5} held-out runs, {plain:6.2f} s plain, {probed:6.2f} s probed", flush=True)
    totals["total"] = sum(totals.values())
    print(f"{config_path}: " + ", ".join(f"{k} {v:,.0f} s" for k, v in totals.items()), flush=True)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/bench.yaml")
    parser.add_argument("--reference", default=None, help="a config whose pipeline wall time was measured")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mine = estimate(args.config)["total"]
    if args.reference is None:
        print(f"estimated_cpu_s: {mine:.0f}")
        return
    reference = estimate(args.reference)["total"]
    print(f"estimated_cpu_ratio: {mine / reference:.2f}")


if __name__ == "__main__":
    main()
