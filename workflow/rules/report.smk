rule summarize_results:
    input:
        evaluation=evaluation_tables(),
        runs=LAYOUT.runs(),
        checkpoint_configs=[checkpoint_config(variant, FINAL_ROUND) for variant in META_VARIANTS],
    output:
        markdown=LAYOUT.summary_md(),
        html=report(LAYOUT.summary_html(), caption="../report/summary.rst", category="1. Summary"),
        table=LAYOUT.summary_parquet(),
        gain=LAYOUT.gain_plot(),
    log:
        LAYOUT.log("summarize_results"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/summarize_results.py"


rule plot_task_curves:
    input:
        runs=LAYOUT.runs(),
        trajectories=eval_trajectories_of_task,
    output:
        report(
            LAYOUT.task_curves_plot("{task}"),
            caption="../report/task_curves.rst",
            category="3. Curves per held-out task",
            labels={"task": "{task}"},
        ),
    log:
        LAYOUT.log("plot_task_curves/{task}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/plot_task_curves.py"


rule plot_performance_profiles:
    input:
        evaluation=evaluation_tables(),
    output:
        report(LAYOUT.profiles_plot(), caption="../report/performance_profiles.rst", category="2. Across tasks"),
    log:
        LAYOUT.log("plot_performance_profiles"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/plot_performance_profiles.py"


rule plot_lr_gallery:
    input:
        runs=LAYOUT.runs(),
        trajectories=phase_trajectories("eval"),
    output:
        report(LAYOUT.lr_gallery_plot(), caption="../report/lr_gallery.rst", category="2. Across tasks"),
    log:
        LAYOUT.log("plot_lr_gallery"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/plot_lr_gallery.py"
