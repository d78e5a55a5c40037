rule evaluate_schedulers:
    input:
        unpack(eval_inputs),
    output:
        # Lists, as in the collection rules: one script serves both.
        trajectories=[LAYOUT.trajectories("eval", "{task}")],
        runs=[LAYOUT.runs_part("eval", "{task}")],
    params:
        meta_checkpoints=final_checkpoints,
        tasks=lambda wildcards: [f"eval/{wildcards.task}"],
        resume_dirs=lambda wildcards: [LAYOUT.resume("eval", wildcards.task)],
        # Exactly the settings that determine the outputs (rerun trigger: params).
        settings=eval_settings,
    threads: eval_threads
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
