from pathlib import Path

from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import fit, log

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
    fit(
        parse_config(sm.config),
        collect_runs=list(sm.input.collect_runs),
        collect_trajectories=list(sm.input.collect_trajectories),
        metaval_runs=list(sm.input.metaval_runs),
        metaval_trajectories=list(sm.input.metaval_trajectories),
        out_dir=Path(sm.output.weights).parent,
    )
