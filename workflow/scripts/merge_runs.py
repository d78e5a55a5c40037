from metalr.logs import log_to
from metalr.pipeline import merge_runs

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    merge_runs(list(sm.input), sm.output[0])
