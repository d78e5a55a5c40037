rule evaluate_schedulers:
    input:
        data=data_for_task,
        weights=final_weights(),
    output:
        trajectories=LAYOUT.trajectories("eval", "{task}"),
        runs=LAYOUT.runs_part("eval", "{task}"),
    params:
        phase="eval",
        resume_dir=LAYOUT.resume("eval", "{task}"),
        meta_checkpoints=final_checkpoints,
    threads: training_threads
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("evaluate_schedulers/{task}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/train_runs.py"


rule merge_runs:
    input:
        all_runs,
    output:
        LAYOUT.runs(),
    log:
        LAYOUT.log("merge_runs"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/merge_runs.py"


rule compare_schedulers:
    input:
        runs=LAYOUT.runs(),
        trajectories=phase_trajectories("eval"),
    output:
        evaluation_tables(),
    log:
        LAYOUT.log("compare_schedulers"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/compare_schedulers.py"
