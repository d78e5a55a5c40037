rule collect_trajectories:
    input:
        data=data_for_task,
    output:
        trajectories=LAYOUT.trajectories("{phase}", "{task}"),
        runs=LAYOUT.runs_part("{phase}", "{task}"),
    params:
        phase="{phase}",
        resume_dir=LAYOUT.resume("{phase}", "{task}"),
    wildcard_constraints:
        phase="collect|metaval",
    threads: CONFIG.threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("collect_trajectories/{phase}/{task}"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/train_runs.py"
