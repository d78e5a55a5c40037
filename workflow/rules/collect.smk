# Collection: one training job per DAgger round trains every (phase, task) of the round on one pool of
# workers (a job per task paid torch's import for two or three short runs each).
rule collect_trajectories:
    input:
        unpack(collect_inputs),
    output:
        trajectories=round_outputs("trajectories", 0),
        runs=round_outputs("runs_part", 0),
        snapshots=[temp(path) for path in round_outputs("snapshots", 0)],
    params:
        tasks=round_tasks,
        resume_dirs=round_resume_dirs,
        meta_checkpoints=round_checkpoints,
        # Exactly the settings that determine the outputs (rerun trigger: params).
        settings=round_settings,
    threads: round_threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("collect_trajectories/round-0"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/train_runs.py"


# DAgger rounds: the same job, following the previous round's meta-scheduler. A rule of its
# own so that a cluster profile can group it apart from round 0 (it waits on a fit).
use rule collect_trajectories as collect_on_policy with:
    output:
        trajectories=round_outputs("trajectories", "{round}"),
        runs=round_outputs("runs_part", "{round}"),
        snapshots=[temp(path) for path in round_outputs("snapshots", "{round}")],
    wildcard_constraints:
        round="[1-9][0-9]*",
    log:
        LAYOUT.log("collect_on_policy/round-{round}"),


# Labelling: one job per DAgger round runs the branching expert on every phase of the round
# (meta-training and meta-validation) on one pool of workers; each phase keeps its own forks
# file (a job per phase paid a process start-up for a few seconds of forks).
rule label_branch_points:
    input:
        unpack(label_inputs),
    output:
        forks=round_forks(0),
    params:
        phases=label_round_phases,
        meta_checkpoints=label_checkpoints,
        # Exactly the settings that determine the outputs (rerun trigger: params).
        settings=label_settings,
    threads: CONFIG.threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("label_branch_points/round-0"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/label_branch_points.py"


# DAgger rounds: the same job on the states of the previous round's meta-scheduler. A rule of
# its own, as for the collection, since its outputs are named by the round.
use rule label_branch_points as label_on_policy with:
    output:
        forks=round_forks("{round}"),
    wildcard_constraints:
        round="[1-9][0-9]*",
    log:
        LAYOUT.log("label_branch_points/round-{round}"),
