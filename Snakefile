# metalr: learn learning-rate schedules from training trajectories.
#   snakemake --cores 2 --resources gpu=1                          # embedded default
#   snakemake --cores 2 --resources gpu=1 --configfile config/smoke.yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from metalr.config import ConfigError, parse_config, with_default

min_version("9.0")


# --configfile and --config overlay the embedded default (metalr.config.overlay: mappings
# merge, lists replace, and a config that declares tasks brings its whole task catalogue
# and its own splits).
# The merged config is put back into `config`, so every rule script parses the same one.
# Validated against metalr/schemas/config.schema.yaml (package data) by metalr, whose message
# names each bad field and its allowed values (Snakemake's own validate() prints the schema instead).
try:
    merged = with_default(config)
    CONFIG = parse_config(merged)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(merged)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/meta.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Bookkeeping rules that read and write a few small files: under a cluster executor they
# run on the submitting host instead of paying a cluster job's start-up each.
localrules:
    all,
    check_leakage,
    merge_runs,
    compare_schedulers,
    summarize_results,
    plot_task_curves,
    plot_performance_profiles,
    plot_lr_gallery,


rule all:
    input:
        LAYOUT.runs(),
        LAYOUT.leakage_report(),
        LAYOUT.summary_md(),
        LAYOUT.summary_html(),
        LAYOUT.summary_parquet(),
        LAYOUT.profiles_plot(),
        LAYOUT.lr_gallery_plot(),
        [LAYOUT.task_curves_plot(task) for task in CONFIG.held_out],
        intermediates(),
