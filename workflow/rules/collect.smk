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
        phase=COLLECTION_PHASE,
    threads: training_threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("collect_trajectories/{phase}/{task}"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/train_runs.py"


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
        "../../envs/metalr.yaml"
    script:
        "../scripts/label_branch_points.py"
