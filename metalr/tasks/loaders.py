"""What a batch goes through between the stored arrays and the model.

Images are stored as uint8 (or [0, 1] floats for the built-ins); at batch time they are
converted and normalised with torchvision transforms v2, and, for a dataset declared with
``augment: true``, randomly cropped and flipped per image during training only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import BatchSampler, RandomSampler

if TYPE_CHECKING:  # metalr.tasks.splits needs scikit-learn, a [pipeline] package
    from metalr.tasks.splits import DatasetInfo

Batch = dict[str, torch.Tensor]


class InputTransform:
    """Callable on a batch (``{"X": ..., "y": ..., ...}``); returns the batch the model sees."""

    def __init__(self, info: DatasetInfo, train: bool):
        from torchvision.transforms import v2  # lazy: ~1 s to import, and only image tasks transform inputs

        self.image = info.modality == "image" and bool(info.norm_mean)
        if not self.image:
            return
        size = info.input_shape[-1]
        self.augment = (
            v2.Compose([v2.RandomCrop(size, padding=max(1, size // 8)), v2.RandomHorizontalFlip()])
            if train and info.augment
            else None
        )
        self.normalize = v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.norm_mean, info.norm_std)]
        )

    def __call__(self, batch: Batch) -> Batch:
        if not self.image:
            return batch
        x = batch["X"]
        if self.augment is not None:
            # Per image, so every image gets its own crop and flip.
            x = torch.stack([self.augment(image) for image in x])
        return batch | {"X": self.normalize(x)}


def seeded_batches(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless mini-batch indices; the order depends on the seed alone, never on the scheduler."""
    generator = torch.Generator().manual_seed(seed)
    sampler = BatchSampler(RandomSampler(range(n), generator=generator), min(batch_size, n), drop_last=True)
    while True:
        for indices in sampler:
            yield torch.as_tensor(indices)


def take(split: Batch, index: torch.Tensor) -> Batch:
    """Rows ``index`` of every column of a split."""
    return {k: v[index.to(v.device)] for k, v in split.items()}


class BatchLoader:
    """Endless training batches of a split, transformed; what ``benchmarks/data_throughput.py`` measures."""

    def __init__(self, split: Batch, info: DatasetInfo, batch_size: int, seed: int, train: bool = True):
        self.split = split
        self.transform = InputTransform(info, train)
        self.indices = seeded_batches(len(split["y"]), batch_size, seed)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return self.transform(take(self.split, next(self.indices)))
