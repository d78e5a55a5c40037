# Shared state and input functions. No rule holds logic; this file only maps the
# validated config onto file paths.
from metalr.evaluate.protocol import EVALUATION_TABLES
from metalr.paths import ResultsLayout

# CONFIG (the validated, typed config) is defined in the Snakefile.
LAYOUT = ResultsLayout("results")
CHECKPOINT = LAYOUT.checkpoint(CONFIG.meta.arch)


wildcard_constraints:
    task="|".join(sorted(CONFIG.tasks)),
    dataset="|".join(sorted(CONFIG.dataset_specs)),


def dataset_params(wildcards):
    return str(CONFIG.dataset(wildcards.dataset))


def data_for_task(wildcards):
    return LAYOUT.data(CONFIG.task(wildcards.task).dataset)


def phase_runs(phase):
    return [LAYOUT.runs_part(phase, task) for task in CONFIG.phase_tasks(phase)]


def phase_trajectories(phase):
    return [LAYOUT.trajectories(phase, task) for task in CONFIG.phase_tasks(phase)]


def all_runs(wildcards):
    return [f for phase in ("collect", "metaval", "eval") for f in phase_runs(phase)]


def evaluation_tables():
    return [LAYOUT.evaluation_table(name) for name in EVALUATION_TABLES]


def eval_trajectories_of_task(wildcards):
    return LAYOUT.trajectories("eval", wildcards.task)
