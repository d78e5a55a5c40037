"""Errors caused by input a user can fix: shown as one message, never as a traceback."""

from __future__ import annotations


def user_errors() -> tuple[type[Exception], ...]:
    # Imported here: each error lives beside the code that raises it.
    from metalr.config import ConfigError
    from metalr.evaluate import LeakageError
    from metalr.gpu import GpuSlotError
    from metalr.meta.checkpoint import CheckpointError
    from metalr.paths import PathEscapeError
    from metalr.pipeline import RunsFailedError
    from metalr.tasks.sources import DataError
    from metalr.trajectories import ParquetInputError

    return (
        ConfigError,
        DataError,
        LeakageError,
        CheckpointError,
        ParquetInputError,
        GpuSlotError,
        PathEscapeError,
        RunsFailedError,
    )


def message(err: BaseException) -> str:
    return f"metalr: error: {err}"
