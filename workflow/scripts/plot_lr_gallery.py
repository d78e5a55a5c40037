from metalr.logs import log_to
from metalr.pipeline import plot_lr_gallery

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    plot_lr_gallery(sm.input.runs, list(sm.input.trajectories), sm.output[0])
