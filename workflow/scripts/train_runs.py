from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import TaskOutputs, log, train_tasks

# Worker processes spawned (on GPU machines) re-import this file as __mp_main__: run only as main.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    config = parse_config(sm.config)
    snapshots = sm.output.get("snapshots") or [None] * len(sm.params.tasks)
    tasks = []
    # params.tasks ("phase/task"), the outputs and params.resume_dirs list the job's tasks in one order.
    for pair, trajectories, runs, resume_dir, snapshots_out in zip(
        sm.params.tasks, sm.output.trajectories, sm.output.runs, sm.params.resume_dirs, snapshots, strict=True
    ):
        phase, task_id = pair.split("/")
        data = sm.input[f"data_{config.task(task_id).dataset}"]
        tasks.append(TaskOutputs(phase, task_id, data, trajectories, runs, resume_dir, snapshots_out))
    with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
        train_tasks(config, tasks, threads=sm.threads, meta_checkpoints=sm.params.meta_checkpoints)
