"""Send everything a pipeline step prints, its workers' output included, to its log file."""

from __future__ import annotations

import os
import sys
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
