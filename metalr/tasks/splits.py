"""Data carved into train/val/test: ``SplitData`` with its ``DatasetInfo`` and Parquet form, and the
carving helpers. The bottom layer that built-in (``datasets``) and declared (``preprocess``) datasets share.

Labelled data is split stratified, a series in time order; image statistics come from the
training split only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from metalr.tasks.registry import HIGHER_IS_BETTER, KIND_METRICS
from metalr.tasks.sources import DataError

SPLITS = ("train", "val", "test")


@dataclass
class DatasetInfo:
    name: str
    kind: str  # "classification" | "regression" (forecasting) | "ctc" (speech recognition)
    modality: str  # "image" | "tabular" | "text" | "timeseries" | "audio"
    input_shape: tuple[int, ...]
    n_classes: int = 0
    vocab_size: int = 0
    synthetic: bool = False
    sizes: dict[str, int] = field(default_factory=dict)
    metric: str = ""  # the primary metric; default: the kind's first
    source: str = ""
    class_names: list[str] = field(default_factory=list)
    # Per-channel statistics of the training images, for Normalize at batch time.
    norm_mean: list[float] = field(default_factory=list)
    norm_std: list[float] = field(default_factory=list)
    augment: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metric = self.metric or KIND_METRICS[self.kind][0]

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric reported for this dataset (top-5 needs at least 10 classes, AUC two)."""
        names = KIND_METRICS[self.kind]
        if self.kind == "classification":
            names = tuple(
                m for m in names if (m != "top5" or self.n_classes >= 10) and (m != "auc" or self.n_classes == 2)
            )
        return names


@dataclass
class SplitData:
    """A dataset carved into train/val/test arrays, plus what a model needs to know.

    ``arrays`` holds ``<column>_<split>``: ``X`` inputs and ``y`` targets always; ``L`` input
    lengths and ``M`` target lengths for speech; ``W``/``K`` raw waveforms and their lengths;
    ``O``/``S`` each forecast window's offset and scale (original units = O + S * value).
    """

    info: DatasetInfo
    arrays: dict[str, np.ndarray]

    def X(self, split: str) -> np.ndarray:
        return self.arrays[f"X_{split}"]

    def y(self, split: str) -> np.ndarray:
        return self.arrays[f"y_{split}"]

    def split(self, split: str) -> dict[str, np.ndarray]:
        """The columns of one split, keyed without the split suffix."""
        suffix = f"_{split}"
        return {k[: -len(suffix)]: v for k, v in self.arrays.items() if k.endswith(suffix)}

    def tensors(self, device) -> dict[str, dict]:
        """Every split's columns as tensors on ``device``: {split: {column: tensor}}."""
        import torch  # lazy: the data layer is read by the Snakefile side, which must not load torch

        return {s: {k: torch.as_tensor(v, device=device) for k, v in self.split(s).items()} for s in SPLITS}

    def save(self, path: str | Path) -> None:
        """Write ``path/info.json`` and ``path/<split>.parquet`` (one row per example), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            shapes = {}
            for split in SPLITS:
                columns = {}
                for name, array in self.split(split).items():
                    array = np.ascontiguousarray(array)
                    shapes[f"{name}_{split}"] = [list(array.shape[1:]), array.dtype.str]
                    flat = pa.array(array.reshape(len(array), -1).reshape(-1))
                    width = int(np.prod(array.shape[1:], dtype=np.int64))
                    columns[name] = pa.FixedSizeListArray.from_arrays(flat, max(width, 1)) if array.ndim > 1 else flat
                pq.write_table(pa.table(columns), tmp / f"{split}.parquet")
            (tmp / "info.json").write_text(json.dumps({"info": asdict(self.info), "arrays": shapes}, indent=1))
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, path: str | Path) -> SplitData:
        path = Path(path)
        meta = json.loads((path / "info.json").read_text())
        info = meta["info"]
        info["input_shape"] = tuple(info["input_shape"])
        arrays = {}
        for split in SPLITS:
            table = pq.read_table(path / f"{split}.parquet")
            for name in table.column_names:
                shape, dtype = meta["arrays"][f"{name}_{split}"]
                column = table.column(name).combine_chunks()
                values = column.flatten() if shape else column
                arrays[f"{name}_{split}"] = values.to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, *shape)
        return cls(DatasetInfo(**info), arrays)

    @staticmethod
    def load_info(path: str | Path) -> DatasetInfo:
        info = json.loads((Path(path) / "info.json").read_text())["info"]
        info["input_shape"] = tuple(info["input_shape"])
        return DatasetInfo(**info)


def carve_indices(
    n: int, labels: np.ndarray | None, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Indices of train / val / test, stratified by ``labels`` when given."""
    index = np.arange(n)
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    rest_labels = None if labels is None else labels[rest]
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=rest_labels, random_state=seed
    )
    return {"train": train, "val": val, "test": test}


def draw(n: int, size: int, labels: np.ndarray | None, seed: int) -> np.ndarray:
    """A fixed, stratified (when labels are given) draw of ``size`` of ``n`` indices, in order."""
    if size >= n:
        return np.arange(n)
    stratify = labels if labels is not None and np.bincount(labels).min() >= 2 else None
    keep, _ = train_test_split(np.arange(n), train_size=size, stratify=stratify, random_state=seed)
    return np.sort(keep)


def image_stats(train: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of training images, on the [0, 1] scale."""
    scale = 255.0 if train.dtype == np.uint8 else 1.0
    values = train.astype(np.float32).transpose(1, 0, 2, 3).reshape(train.shape[1], -1) / scale
    return values.mean(1).tolist(), np.maximum(values.std(1), 1e-6).tolist()


def split_series(
    series: Sequence[np.ndarray],
    futures: Sequence[np.ndarray] | None,
    window: int,
    horizon: int,
    stride: int,
    val_fraction: float,
    test_fraction: float,
    level_scale: bool = False,
) -> dict[str, np.ndarray]:
    """Forecast windows from each series, split in time order: train, then val, then test.

    Test targets are the given ``futures`` (e.g. M4's test file) or the series' last part;
    validation targets the part before it. Val and test windows do not overlap (a step of
    ``horizon``); their inputs may reach back into the earlier part, their targets never.
    Values are stored relative to each window's last input value ``O`` in units of ``S``:
    the series' training-part standard deviation of first differences, or, with
    ``level_scale``, the window's mean absolute level (errors then count relative to the
    level, as sMAPE does).
    """
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {s: [] for s in SPLITS}
    for i, values in enumerate(series):
        values = np.asarray(values, dtype=np.float64)
        n = len(values)
        n_test = 0 if futures is not None else max(horizon, int(round(n * test_fraction)))
        n_val = max(horizon, int(round(n * val_fraction)))
        end_train = n - n_test - n_val
        if end_train - window - horizon < 0:
            continue  # too short for one training window
        diffs = np.diff(values[:end_train])
        scale = float(diffs.std()) if len(diffs) > 1 and diffs.std() > 0 else 1.0
        full = values if futures is None else np.concatenate([values, np.asarray(futures[i], dtype=np.float64)])
        ranges = {
            "train": range(window, end_train - horizon + 1, stride),
            "val": range(end_train, end_train + n_val - horizon + 1, horizon),
            "test": range(n - n_test, n - n_test + max(n_test, horizon) - horizon + 1, horizon)
            if futures is None
            else range(n, n + 1),
        }
        for split, starts in ranges.items():
            starts = np.asarray([t for t in starts if t + horizon <= len(full)], dtype=np.int64)
            if len(starts) == 0:
                continue
            inputs = np.stack([full[t - window : t] for t in starts])
            targets = np.stack([full[t : t + horizon] for t in starts])
            offset = inputs[:, -1]
            if level_scale:
                window_scale = np.abs(inputs).mean(1)
                window_scale = np.where(window_scale > 0, window_scale, scale)
            else:
                window_scale = np.full(len(starts), scale)
            parts[split].append((inputs, targets, offset, window_scale))
    arrays = {}
    for split, chunks in parts.items():
        if not chunks:
            raise DataError(f"no {split} windows: the series are too short for window {window} + horizon {horizon}")
        inputs, targets, offset, scale = (np.concatenate(c) for c in zip(*chunks, strict=True))
        arrays[f"X_{split}"] = ((inputs - offset[:, None]) / scale[:, None])[:, :, None].astype(np.float32)
        arrays[f"y_{split}"] = ((targets - offset[:, None]) / scale[:, None]).astype(np.float32)
        arrays[f"O_{split}"] = offset.astype(np.float32)
        arrays[f"S_{split}"] = scale.astype(np.float32)
    return arrays
