from metalr.logs import log_to
from metalr.pipeline import plot_task_curves

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    plot_task_curves(sm.input.runs, sm.input.trajectories, sm.wildcards.task, sm.output[0])
