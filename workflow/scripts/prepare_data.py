import sys

from metalr.config import parse_config
from metalr.logs import log_to
from metalr.pipeline import prepare_data
from metalr.tasks.sources import DataError

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    try:
        prepare_data(parse_config(snakemake.config), snakemake.wildcards.dataset, snakemake.output[0])  # noqa: F821
    except DataError as err:  # one clear message in the log, no traceback
        print(f"metalr: error: {err}", file=sys.stderr)
        sys.exit(1)
