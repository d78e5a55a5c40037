"""Send everything a pipeline step prints, its workers' output included, to its log file."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metalr.errors import message, user_errors


@contextmanager
def log_to(path: str | Path) -> Iterator[None]:
    """Redirect this process's stdout and stderr (file descriptors 1 and 2) to ``path``.

    Redirecting the descriptors rather than ``sys.stdout`` also captures worker processes
    and C-level messages. A user error (bad input, see ``metalr.errors``) lands in the log as
    one message and exits with status 2; any other exception lands there with its traceback.
    """
    started = time.time()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        except SystemExit:
            raise
        except user_errors() as err:
            print(message(err), flush=True)
            raise SystemExit(2) from None
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            _record_job_time(path, started)


def _record_job_time(path: str | Path, started: float) -> None:
    """Append this job's in-job interval and CPU to ``$METALR_JOB_TIMES`` (benchmarks/pipeline_wall.py
    reads it to tell the jobs' work from process start-up and scheduling)."""
    target = os.environ.get("METALR_JOB_TIMES")
    if not target:
        return
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    record = {
        "log": str(Path(path).resolve()),
        "start": started,
        "end": time.time(),
        "cpu_s": sum(u.ru_utime + u.ru_stime for u in usage),
    }
    # One short O_APPEND write per job: concurrent jobs do not interleave their lines.
    with open(target, "a") as fh:
        fh.write(json.dumps(record) + "\n")
