from pathlib import Path

from metalr.config import parse_config
from metalr.logs import log_to
from metalr.pipeline import compare_schedulers

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    out_dir = Path(sm.output[0]).parent  # every table lands in one folder
    compare_schedulers(parse_config(sm.config), sm.input.runs, list(sm.input.trajectories), out_dir)
