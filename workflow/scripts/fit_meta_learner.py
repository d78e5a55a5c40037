from pathlib import Path

from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import fit, log

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
    fit(
        parse_config(sm.config),
        sm.params.variant,
        collect={kind: list(sm.input[f"collect_{kind}"]) for kind in ("runs", "trajectories", "forks")},
        metaval={kind: list(sm.input[f"metaval_{kind}"]) for kind in ("runs", "trajectories", "forks")},
        out_dir=Path(sm.output.weights).parent,
    )
