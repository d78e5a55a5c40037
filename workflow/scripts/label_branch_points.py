from metalr.config import parse_config
from metalr.gpu import gpu_slots, job_gpus
from metalr.logs import log_to
from metalr.pipeline import PhaseForks, label_phases, log

# Worker processes spawned (on GPU machines) re-import this file as __mp_main__: run only as main.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    config = parse_config(sm.config)
    phases = []
    # params.phases and output.forks list the round's phases in one order.
    for phase, forks_out in zip(sm.params.phases, sm.output.forks, strict=True):
        tasks = config.phase_tasks(phase)
        phases.append(
            PhaseForks(
                phase,
                data_paths={t: sm.input[f"data_{config.task(t).dataset}"] for t in tasks},
                snapshots_paths={t: sm.input[f"snapshots_{phase}_{t}"] for t in tasks},
                forks_out=forks_out,
                meta_checkpoints=sm.params.meta_checkpoints[phase],
            )
        )
    with log_to(sm.log[0]), gpu_slots(job_gpus(sm.resources), log=log):
        label_phases(config, phases, threads=sm.threads)
