from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import log, train_runs

# Worker processes are spawned and re-import this file as __mp_main__: run only as main.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
        train_runs(
            parse_config(sm.config),
            phase=sm.params.phase,
            task_id=sm.wildcards.task,
            data_path=sm.input.data,
            trajectories_out=sm.output.trajectories,
            runs_out=sm.output.runs,
            threads=sm.threads,
            meta_checkpoints=sm.params.meta_checkpoints,
            resume_dir=sm.params.resume_dir,
            snapshots_out=sm.output.get("snapshots"),
        )
