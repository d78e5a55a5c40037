"""GPU slots: concurrent jobs on one machine land on distinct GPUs.

Snakemake counts the ``gpu`` resource (``--resources gpu=4`` runs at most four GPU jobs
at once) but does not say which GPU a job may use, and sets no ``CUDA_VISIBLE_DEVICES``.
A job therefore claims its GPUs here, by locking one file per GPU, and narrows
``CUDA_VISIBLE_DEVICES`` to them before torch initialises CUDA. The locks are ``flock``
locks: the kernel drops them when the job exits or is killed, so none go stale.

The pool of GPUs is ``CUDA_VISIBLE_DEVICES`` when it is set (by SLURM, or by the user),
otherwise every GPU the driver lists. Under SLURM, the lock directory is private to the
SLURM job, so the jobs of one group job share the GPUs SLURM gave it and never touch
another job's.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

ENV = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_ENV = "METALR_GPU_LOCK_DIR"


class GpuSlotError(RuntimeError):
    """A job asks for more GPUs than the machine (or its allocation) has."""


def gpu_pool(environ: dict[str, str] | None = None) -> list[str]:
    """The GPU ids this process may hand out, as ``CUDA_VISIBLE_DEVICES`` names them."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        return [d.strip() for d in environ[ENV].split(",") if d.strip()]
    return [str(i) for i in range(_driver_gpu_count())]


def _driver_gpu_count() -> int:
    # Counted without torch: once torch has asked CUDA, CUDA_VISIBLE_DEVICES is fixed.
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
        return sum(1 for line in listed.splitlines() if line.startswith("GPU "))
    except (OSError, subprocess.SubprocessError):
        proc = Path("/proc/driver/nvidia/gpus")
        return len(list(proc.iterdir())) if proc.is_dir() else 0


def job_gpus(resources: Mapping[str, object]) -> int:
    """GPUs a Snakemake job asked for: its ``gpu`` resource, or the count in a ``gres`` like ``gpu:a100:2``."""
    if resources.get("gpu"):
        return int(resources.get("gpu"))
    gres = str(resources.get("gres") or "")
    for item in gres.split(","):
        parts = item.strip().split(":")
        if parts[0] == "gpu":
            return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return 0


def lock_dir(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = Path(environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"metalr-gpu-slots-{os.getuid()}")
    # GPU ids are per SLURM allocation ("0" in two jobs may be two different GPUs).
    return base / (f"slurm-{environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in environ else "local")


def _try_lock(path: Path):
    fh = open(path, "a")  # noqa: SIM115 (held open for the life of the claim)
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


@contextmanager
def gpu_slots(
    count: int, log: Callable[[str], None] = print, poll_s: float = 0.5, environ: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """Claim ``count`` GPUs for the duration of the block and expose only them to CUDA.

    ``count == 0`` hides every GPU, so a job that asked for none cannot take one that
    another job holds. On a machine without GPUs the block runs on CPU. When all GPUs are
    taken (more concurrent GPU jobs than GPUs), it waits for one to be freed.
    """
    environ = os.environ if environ is None else environ
    before = environ.get(ENV)
    try:
        with _claim(count, log, poll_s, environ) as claimed:
            yield claimed
    finally:
        if before is None:
            environ.pop(ENV, None)
        else:
            environ[ENV] = before


@contextmanager
def _claim(count: int, log: Callable[[str], None], poll_s: float, environ) -> Iterator[list[str]]:
    pool = gpu_pool(environ)
    if count == 0 or not pool:
        if count:
            log(f"gpu: {count} GPU(s) requested but none is visible; running on CPU")
        environ[ENV] = ""
        yield []
        return
    if count > len(pool):
        raise GpuSlotError(
            f"this job requests {count} GPU(s) but only {len(pool)} are visible ({ENV}={','.join(pool)}); "
            "lower the config's resources.gpu"
        )
    directory = lock_dir(environ)
    directory.mkdir(parents=True, exist_ok=True)
    waited, started = False, time.monotonic()
    with ExitStack() as held:
        while True:
            claimed = []
            for gpu in pool:
                fh = _try_lock(directory / f"gpu-{gpu}.lock")
                if fh is not None:
                    held.callback(fh.close)
                    claimed.append(gpu)
                    if len(claimed) == count:
                        break
            if len(claimed) == count:
                break
            held.close()  # a partial claim would block others that could finish: let go and retry
            if not waited:
                log(f"gpu: all of {','.join(pool)} are taken by other jobs; waiting for {count} to free up")
                waited = True
            time.sleep(poll_s)
        environ[ENV] = ",".join(claimed)
        log(
            f"gpu: claimed {ENV}={environ[ENV]} from pool {','.join(pool)}"
            + (f" after waiting {time.monotonic() - started:.0f} s" if waited else "")
        )
        yield claimed
