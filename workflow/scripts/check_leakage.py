from metalr.config import parse_config
from metalr.logs import log_to
from metalr.pipeline import leakage_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    leakage_report(parse_config(sm.config), list(sm.input.runs), sm.output[0])
