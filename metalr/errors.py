"""Errors caused by input a user can fix: shown as one message, never as a traceback."""

from __future__ import annotations

import sys

# Each error lives beside the code that raises it: (module, class).
_USER_ERRORS = (
    ("metalr.config", "ConfigError"),
    ("metalr.tasks.sources", "DataError"),
    ("metalr.evaluate.leakage", "LeakageError"),
    ("metalr.meta.checkpoint", "CheckpointError"),
    ("metalr.trajectories", "ParquetInputError"),
    ("metalr.gpu", "GpuSlotError"),
    ("metalr.paths", "PathEscapeError"),
    ("metalr.pipeline", "RunsFailedError"),
)


def user_errors() -> tuple[type[Exception], ...]:
    # Only modules already imported can have raised one; importing the others would pull in
    # polars and torch, which a core install (no [pipeline] extra) does not have.
    return tuple(getattr(sys.modules[module], name) for module, name in _USER_ERRORS if module in sys.modules)


def message(err: BaseException) -> str:
    return f"metalr: error: {err}"
