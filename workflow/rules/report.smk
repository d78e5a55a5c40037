rule summarize_results:
    input:
        runs=LAYOUT.runs(),
        checkpoint_config=rules.fit_meta_learner.output.config,
    output:
        markdown=report(LAYOUT.summary_md(), caption="../report/summary.rst", category="Summary"),
        table=LAYOUT.summary_parquet(),
    log:
        LAYOUT.log("summarize_results"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/summarize_results.py"


rule plot_eval_curves:
    input:
        runs=LAYOUT.runs(),
        trajectories=phase_trajectories("eval"),
    output:
        report(LAYOUT.eval_plot(), caption="../report/eval_curves.rst", category="Plots"),
    log:
        LAYOUT.log("plot_eval_curves"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/plot_eval_curves.py"
