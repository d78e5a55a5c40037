rule collect_trajectories:
    input:
        unpack(collect_inputs),
    output:
        trajectories=LAYOUT.trajectories("{phase}", "{task}"),
        runs=LAYOUT.runs_part("{phase}", "{task}"),
        snapshots=temp(LAYOUT.snapshots("{phase}", "{task}")),
    params:
        phase="{phase}",
        resume_dir=LAYOUT.resume("{phase}", "{task}"),
        meta_checkpoints=collect_checkpoints,
    wildcard_constraints:
        phase="collect|metaval",
    threads: training_threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("collect_trajectories/{phase}/{task}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/train_runs.py"


# DAgger rounds: the same job, following the previous round's meta-scheduler. A rule of its
# own so that a cluster profile can group it apart from round 0 (it waits on a fit).
use rule collect_trajectories as collect_on_policy with:
    wildcard_constraints:
        phase=ON_POLICY_PHASE,
    log:
        LAYOUT.log("collect_on_policy/{phase}/{task}"),


rule label_branch_points:
    input:
        unpack(label_inputs),
    output:
        LAYOUT.forks("{phase}"),
    params:
        phase="{phase}",
        meta_checkpoints=collect_checkpoints,
    wildcard_constraints:
        phase=COLLECTION_PHASE,
    threads: CONFIG.threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("label_branch_points/{phase}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/label_branch_points.py"
