"""Evaluation: per-run metrics, the two framings and their targets, statistics, performance profiles.

- ``metrics``: score, normalised score, time to target, convergence, stability, overhead per run;
- ``targets``: the self-tuning and externally tuned framings, and the time-to-target targets;
- ``statistics``: paired tests across seeds, Wilcoxon across tasks with Holm, bootstrap CIs;
- ``profiles``: AlgoPerf-style performance profiles and their integrated score;
- ``protocol``: all of the above on the held-out runs, as the tables the report reads;
- ``leakage``: the guard that keeps held-out tasks out of meta-training.
"""

from metalr.evaluate.leakage import LeakageError, check_leakage, fit_input_tasks
from metalr.evaluate.metrics import normalised_scores, score_runs
from metalr.evaluate.protocol import Evaluation, evaluate_runs, is_indicative

__all__ = [
    "Evaluation",
    "LeakageError",
    "check_leakage",
    "evaluate_runs",
    "fit_input_tasks",
    "is_indicative",
    "normalised_scores",
    "score_runs",
]
