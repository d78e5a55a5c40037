from pathlib import Path

from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import fit_variants, log

# Worker processes spawned (on GPU machines) re-import this file as __mp_main__: run only as main.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
        fit_variants(
            parse_config(sm.config),
            sm.params.variants,
            collect={kind: list(sm.input[f"collect_{kind}"]) for kind in ("runs", "trajectories", "forks")},
            metaval={kind: list(sm.input[f"metaval_{kind}"]) for kind in ("runs", "trajectories", "forks")},
            out_dirs=[Path(w).parent for w in sm.output.weights],
            threads=sm.threads,
        )
