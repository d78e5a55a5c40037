from metalr.config import parse_config
from metalr.logs import log_to
from metalr.pipeline import prepare_data

# log_to turns a DataError (a user error) into one message in the log and exit status 2, like every other step.
with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    prepare_data(parse_config(snakemake.config), snakemake.wildcards.dataset, snakemake.output[0])  # noqa: F821
