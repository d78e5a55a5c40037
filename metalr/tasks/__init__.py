"""Tasks: datasets with fixed splits, and the models trained on them.

Imports are lazy so that ``metalr.config`` (read by the Snakefile) can use the registry
without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BUILTIN_DATASETS": "metalr.tasks.datasets",
    "DataError": "metalr.tasks.sources",
    "DatasetInfo": "metalr.tasks.splits",
    "SplitData": "metalr.tasks.splits",
    "prepare_dataset": "metalr.tasks.datasets",
    "build_model": "metalr.tasks.models",
    "count_parameters": "metalr.tasks.models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'metalr.tasks' has no attribute {name!r}")
