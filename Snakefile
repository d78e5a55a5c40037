# metalr: learn learning-rate schedules from training trajectories.
#   snakemake --cores 2 --resources gpu=1                          # embedded default
#   snakemake --cores 2 --resources gpu=1 --configfile config/smoke.yaml
import os

from snakemake.utils import min_version, validate

min_version("9.0")


# A --configfile given on the command line replaces the embedded default rather than
# being deep-merged into it, so a config never inherits tasks it did not declare.
if not config:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/meta.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        LAYOUT.runs(),
        LAYOUT.summary_md(),
        LAYOUT.summary_parquet(),
        LAYOUT.eval_plot(),
