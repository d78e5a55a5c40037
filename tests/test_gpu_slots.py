"""The GPU slot allocator, with real processes holding real flock locks."""

import multiprocessing
import os
import signal
import time

import pytest

from metalr.gpu import ENV, GpuSlotError, gpu_pool, gpu_slots, job_gpus, lock_dir


def _hold(environ, barrier, out, release):
    with gpu_slots(1, log=lambda _: None, poll_s=0.05, environ=environ) as claimed:
        out.put((os.getpid(), claimed, environ[ENV]))
        barrier.wait(timeout=60)  # every process holds its slot at this point
        release.wait(timeout=60)


def _fake_machine(tmp_path, gpus="0,1,2,3", **extra):
    return {ENV: gpus, "METALR_GPU_LOCK_DIR": str(tmp_path)} | extra


def test_four_concurrent_jobs_on_four_gpus_get_four_distinct_gpus(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, out, release = ctx.Barrier(4), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_hold, args=(_fake_machine(tmp_path), barrier, out, release)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    release.set()
    for p in procs:
        p.join(timeout=60)
    assert sorted(visible for _, _, visible in got) == ["0", "1", "2", "3"]
    assert all(claimed == [visible] for _, claimed, visible in got)


def test_a_fifth_job_waits_until_a_killed_job_frees_its_gpu(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, out, release = ctx.Barrier(1), ctx.Queue(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(_fake_machine(tmp_path, "7"), barrier, out, release))
    holder.start()
    pid, _, visible = out.get(timeout=60)
    assert visible == "7"
    messages = []
    environ = _fake_machine(tmp_path, "7")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # the kernel drops a dead process's flock: no stale slot
    with gpu_slots(1, log=messages.append, poll_s=0.05, environ=environ) as claimed:
        assert claimed == ["7"] and environ[ENV] == "7"
    assert time.monotonic() - killed_at < 30
    holder.join(timeout=10)


def test_the_pool_is_cuda_visible_devices_when_set_so_slurm_allocations_are_respected(tmp_path):
    slurm = _fake_machine(tmp_path, "2,5", SLURM_JOB_ID="41")
    assert gpu_pool(slurm) == ["2", "5"]
    assert lock_dir(slurm).name == "slurm-41"  # ids are per allocation, so locks are too
    with gpu_slots(1, log=lambda _: None, environ=slurm) as claimed:
        assert claimed == ["2"] and slurm[ENV] == "2"
    assert slurm[ENV] == "2,5"  # restored after the job


def test_a_job_that_asked_for_no_gpu_sees_none(tmp_path):
    environ = _fake_machine(tmp_path)
    with gpu_slots(0, log=lambda _: None, environ=environ) as claimed:
        assert claimed == [] and environ[ENV] == ""


def test_asking_for_more_gpus_than_visible_names_the_config_field(tmp_path):
    environ = _fake_machine(tmp_path, "0,1")
    with (
        pytest.raises(GpuSlotError, match="requests 3 GPU.*only 2 are visible.*resources.gpu"),
        gpu_slots(3, log=lambda _: None, environ=environ),
    ):
        pass


def test_job_gpus_reads_the_gpu_resource_or_a_gres_string():
    assert job_gpus({"gpu": 2}) == 2
    assert job_gpus({"gpu": 0, "gres": "gpu:a100:3"}) == 3
    assert job_gpus({"gres": "gpu"}) == 1
    assert job_gpus({"gres": "tmpfs:10G"}) == 0
    assert job_gpus({}) == 0
