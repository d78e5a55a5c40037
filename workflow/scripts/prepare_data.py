from metalr.config import parse_config
from metalr.logs import log_to
from metalr.pipeline import prepare_data

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    prepare_data(parse_config(snakemake.config), snakemake.wildcards.dataset, snakemake.output[0])  # noqa: F821
