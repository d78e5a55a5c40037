from pathlib import Path

from metalr.logs import log_to
from metalr.pipeline import plot_performance_profiles

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    plot_performance_profiles(Path(sm.input.evaluation[0]).parent, sm.output[0])
