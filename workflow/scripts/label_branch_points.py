from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import label_branch_points, log

# Worker processes spawned (on GPU machines) re-import this file as __mp_main__: run only as main.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    config = parse_config(sm.config)
    tasks = config.phase_tasks(sm.params.phase)
    with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
        label_branch_points(
            config,
            phase=sm.params.phase,
            data_paths={t: sm.input[f"data_{t}"] for t in tasks},
            snapshots_paths={t: sm.input[f"snapshots_{t}"] for t in tasks},
            forks_out=sm.output[0],
            meta_checkpoints=sm.params.meta_checkpoints,
            threads=sm.threads,
        )
