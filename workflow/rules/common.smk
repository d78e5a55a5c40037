# Shared state and input functions. No rule holds logic; this file only maps the
# validated config onto file paths.
import re

from metalr.evaluate.protocol import EVALUATION_TABLES
from metalr.meta.variants import meta_variants
from metalr.paths import ResultsLayout
from metalr.pipeline import (
    dataset_settings,
    fit_settings_hash,
    job_threads,
    labelling_settings_hash,
    phase_meta_checkpoints,
    phase_run_count,
    stable_hash,
    training_settings_hash,
)
from metalr.schedulers import META
from metalr.trajectories import ParquetInputError, check_parquet_inputs

# CONFIG (the validated, typed config) is defined in the Snakefile.
LAYOUT = ResultsLayout(CONFIG.results)
FINAL_ROUND = CONFIG.meta.dagger_rounds
META_VARIANTS = [v.name for v in meta_variants(CONFIG.meta)]
# collect and metaval are round 0 of the collection; collect-r1, metaval-r1, ... the DAgger rounds.
ON_POLICY_PHASE = "(collect|metaval)-r[0-9]+"


wildcard_constraints:
    task="|".join(re.escape(t) for t in sorted(CONFIG.tasks)),
    dataset="|".join(re.escape(d) for d in sorted(CONFIG.dataset_specs)),


def dataset_params(wildcards):
    return dataset_settings(CONFIG, wildcards.dataset)


def data_for_task(wildcards):
    return LAYOUT.data(CONFIG.task(wildcards.task).dataset)


def phase_runs(phase):
    return [LAYOUT.runs_part(phase, task) for task in CONFIG.phase_tasks(phase)]


def phase_trajectories(phase):
    return [LAYOUT.trajectories(phase, task) for task in CONFIG.phase_tasks(phase)]


def collection_runs():
    return [f for base in ("collect", "metaval") for phase in CONFIG.collection_phases(base) for f in phase_runs(phase)]


def all_runs(wildcards):
    return collection_runs() + phase_runs("eval")


def checkpoint_weights(variant, round):
    return f"{LAYOUT.checkpoint(variant, round)}/model.safetensors"


def checkpoint_config(variant, round):
    return f"{LAYOUT.checkpoint(variant, round)}/config.json"


def round_pairs(round):
    """(phase, task) of every run collected in a DAgger round (round 0: the first collection). One
    training job per round trains them all; ``round`` may be the pattern "{round}"."""
    return [
        (base if round == 0 else f"{base}-r{round}", task)
        for base in ("collect", "metaval")
        for task in CONFIG.phase_tasks(base)
    ]


def collection_round(wildcards):
    return int(getattr(wildcards, "round", 0))


def round_outputs(kind, round):
    return [getattr(LAYOUT, kind)(phase, task) for phase, task in round_pairs(round)]


def round_tasks(wildcards):
    return [f"{phase}/{task}" for phase, task in round_pairs(collection_round(wildcards))]


def round_resume_dirs(wildcards):
    return [LAYOUT.resume(phase, task) for phase, task in round_pairs(collection_round(wildcards))]


def round_settings(wildcards):
    pairs = round_pairs(collection_round(wildcards))
    return stable_hash([training_settings_hash(CONFIG, phase, task) for phase, task in pairs])


def round_threads(wildcards):
    pairs = round_pairs(collection_round(wildcards))
    return job_threads(CONFIG, sum(phase_run_count(CONFIG, phase, task) for phase, task in pairs))


def eval_threads(wildcards):
    return job_threads(CONFIG, phase_run_count(CONFIG, "eval", wildcards.task))


def eval_settings(wildcards):
    return training_settings_hash(CONFIG, "eval", wildcards.task)


def round_checkpoints(wildcards):
    return phase_meta_checkpoints(CONFIG, LAYOUT, round_pairs(collection_round(wildcards))[0][0])


def collect_inputs(wildcards):
    """The data of every task of the round, and for a DAgger round the weights its runs follow."""
    pairs = round_pairs(collection_round(wildcards))
    datasets = sorted({CONFIG.task(task).dataset for _, task in pairs})
    inputs = {f"data_{name}": LAYOUT.data(name) for name in datasets}
    inputs |= {"weights": f"{path}/model.safetensors" for path in round_checkpoints(wildcards).values()}
    return inputs


def round_phases(round):
    """The collection phases of a DAgger round that have tasks, in ``round_pairs``' order. One
    labelling job per round labels them all; ``round`` may be the pattern "{round}"."""
    return list(dict.fromkeys(phase for phase, _ in round_pairs(round)))


def round_forks(round):
    return [LAYOUT.forks(phase) for phase in round_phases(round)]


def label_round_phases(wildcards):
    """The phases of the labelling job, in the order of its outputs."""
    return round_phases(collection_round(wildcards))


def label_checkpoints(wildcards):
    """Per phase of the round, the meta-learners its runs followed (none in round 0)."""
    return {phase: phase_meta_checkpoints(CONFIG, LAYOUT, phase) for phase in label_round_phases(wildcards)}


def label_settings(wildcards):
    return stable_hash([labelling_settings_hash(CONFIG, phase) for phase in label_round_phases(wildcards)])


def label_inputs(wildcards):
    """Per (phase, task) of the round: its collection job's branch-point snapshots; per dataset its data."""
    pairs = round_pairs(collection_round(wildcards))
    inputs = {f"data_{CONFIG.task(task).dataset}": LAYOUT.data(CONFIG.task(task).dataset) for _, task in pairs}
    inputs |= {f"snapshots_{phase}_{task}": LAYOUT.snapshots(phase, task) for phase, task in pairs}
    return inputs


def fit_inputs(wildcards):
    """Runs, trajectories and branching labels of every collection round up to this fit's round."""
    round = int(getattr(wildcards, "round", FINAL_ROUND))
    inputs = {}
    for base in ("collect", "metaval"):
        phases = CONFIG.collection_phases(base, round)
        tasks = [(phase, task) for phase in phases for task in CONFIG.phase_tasks(phase)]
        inputs[f"{base}_runs"] = [LAYOUT.runs_part(p, t) for p, t in tasks]
        inputs[f"{base}_trajectories"] = [LAYOUT.trajectories(p, t) for p, t in tasks]
        inputs[f"{base}_forks"] = [LAYOUT.forks(p) for p in phases if CONFIG.phase_tasks(p)]
    return inputs


def intermediates():
    """Every file a later stage reads, as targets of the all rule, so one deleted by hand is rebuilt.

    (Snakemake otherwise rebuilds a missing intermediate only when a final output is out of date.)
    """
    phases = [p for base in ("collect", "metaval") for p in CONFIG.collection_phases(base)] + ["eval"]
    files = [f for phase in phases for f in phase_runs(phase) + phase_trajectories(phase)]
    files += [LAYOUT.forks(p) for p in phases if p != "eval" and CONFIG.phase_tasks(p)]
    for phase in phases:
        for path in phase_meta_checkpoints(CONFIG, LAYOUT, phase).values():
            files += [f"{path}/model.safetensors", f"{path}/config.json"]
    return sorted(set(files))


# A corrupt Parquet intermediate is named (and how to rebuild it) while Snakemake reads the
# workflow, before any job starts: a started job would first remove its own, still good,
# outputs (a fit of round 0 whose input part was truncated lost round 0's checkpoint).
try:
    check_parquet_inputs(f for f in intermediates() if f.endswith(".parquet"))
except ParquetInputError as err:
    raise WorkflowError(str(err)) from None


def final_weights():
    return [checkpoint_weights(variant, FINAL_ROUND) for variant in META_VARIANTS]


def eval_inputs(wildcards):
    return {f"data_{CONFIG.task(wildcards.task).dataset}": data_for_task(wildcards), "weights": final_weights()}


def final_checkpoints(wildcards):
    return phase_meta_checkpoints(CONFIG, LAYOUT, "eval")


def evaluation_tables():
    return [LAYOUT.evaluation_table(name) for name in EVALUATION_TABLES]


def eval_trajectories_of_task(wildcards):
    return LAYOUT.trajectories("eval", wildcards.task)
