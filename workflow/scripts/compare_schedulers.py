from metalr.config import parse_config
from metalr.logs import log_to
from metalr.pipeline import compare_schedulers

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    compare_schedulers(parse_config(sm.config), sm.input.runs, list(sm.input.trajectories), sm.params.out_dir)
