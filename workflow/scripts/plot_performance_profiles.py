from metalr.logs import log_to
from metalr.pipeline import plot_performance_profiles

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    plot_performance_profiles(sm.params.evaluation_dir, sm.output[0])
