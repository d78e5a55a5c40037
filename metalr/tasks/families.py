"""Task families: many cheap variants of one task, drawn from a seed, so meta-training sees variety."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metalr.config import TaskSpec

MODEL_FIELDS = ("width", "depth")
TASK_FIELDS = ("batch_size", "base_lr", "optimizer", "subset", "label_noise")


def expand_family(base: TaskSpec, sample: Mapping[str, Sequence[Any]], count: int, seed: int) -> list[TaskSpec]:
    """``count`` variants of ``base``, ids ``<base id>-00`` ..., each field drawn uniformly from ``sample``.

    The draw depends on ``seed`` and the family's name only, so adding a family to a config
    never changes the variants of another.
    """
    rng = np.random.default_rng([seed, zlib.crc32(base.task_id.encode())])
    variants = []
    for i in range(count):
        drawn = {name: values[int(rng.integers(len(values)))] for name, values in sorted(sample.items())}
        model = dataclasses.replace(base.model, **{k: v for k, v in drawn.items() if k in MODEL_FIELDS})
        task_fields = {k: v for k, v in drawn.items() if k in TASK_FIELDS}
        variants.append(dataclasses.replace(base, task_id=f"{base.task_id}-{i:02d}", model=model, **task_fields))
    return variants
