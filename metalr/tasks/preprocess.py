"""Preprocessing of declared datasets with the stack's own tools, fitted on the training split only.

images: torchvision transforms v2 (decode, resize; normalise and augment at batch time);
text: a WordPiece/BPE tokenizer trained with ``tokenizers``, or a local ``transformers`` one;
tabular: a scikit-learn ``ColumnTransformer``; time series: windows with a horizon;
audio: log-mel features computed with torch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from metalr.config import DatasetSpec
from metalr.tasks.sources import DataError, load_source
from metalr.tasks.splits import SPLITS, DatasetInfo, SplitData, carve_indices, draw, image_stats, split_series

Log = Callable[[str], None]


def prepare_declared(spec: DatasetSpec, seed: int, val_fraction: float, test_fraction: float, log: Log) -> SplitData:
    log(f"{spec.name}: loading {spec.describe()}")
    return prepare_tables(spec, load_source(spec), seed, val_fraction, test_fraction, log)


def prepare_tables(
    spec: DatasetSpec,
    found: dict[str, Any],
    seed: int,
    val_fraction: float,
    test_fraction: float,
    log: Log = lambda _: None,
) -> SplitData:
    """Carve and preprocess splits already in memory: ``datasets.Dataset`` objects (or IDX arrays)
    keyed train / val / test, as ``load_source`` returns them."""
    found = dict(found)
    if spec.modality == "timeseries":
        return _prepare_series(spec, found, val_fraction, test_fraction)
    target = spec.columns.get("transcript") if spec.modality == "audio" else spec.columns.get("label", "label")
    for split, table in found.items():
        if target not in _column_names(table):
            raise DataError(
                f"dataset {spec.name!r}: column {target!r} is not in split {split!r}; "
                f"it has: {', '.join(_column_names(table))}. Set datasets.{spec.name}.columns."
            )
    if spec.modality == "tabular":
        _check_features(spec, found)
    info = DatasetInfo(spec.name, spec.kind, spec.modality, (), source=spec.describe(), augment=spec.augment)
    if spec.kind == "classification":
        found, labels = _encode_labels(found, target, info)
    else:
        labels = {s: None for s in found}
    found, labels = _carve_missing(found, labels, seed, val_fraction, test_fraction)
    for split in SPLITS:
        cap = spec.max_train if split == "train" else spec.max_eval
        if cap is not None and cap < _length(found[split]):
            keep = draw(_length(found[split]), cap, labels[split], seed)
            found[split], labels[split] = _take(found[split], keep), _take_labels(labels[split], keep)
    log(f"{spec.name}: splits { ({s: _length(t) for s, t in found.items()}) }; preprocessing {spec.modality}")
    arrays = {f"y_{s}": labels[s] for s in SPLITS if labels[s] is not None}
    convert = {"image": _images, "text": _texts, "tabular": _tabular, "audio": _audio}[spec.modality]
    arrays |= convert(spec, found, info)
    return SplitData(info, arrays)


# ---------------------------------------------------------------------------------------
# Tables: a datasets.Dataset, or a dict of equal-length numpy arrays (IDX).


def _column_names(table) -> list[str]:
    return list(table) if isinstance(table, dict) else table.column_names


def _length(table) -> int:
    return len(next(iter(table.values()))) if isinstance(table, dict) else len(table)


def _column(table, name: str) -> Any:
    return table[name] if isinstance(table, dict) else list(table[name])


def _take(table, index: np.ndarray):
    if isinstance(table, dict):
        return {k: v[index] for k, v in table.items()}
    return table.select(index.tolist())


def _take_labels(labels: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    return None if labels is None else labels[index]


def _check_features(spec: DatasetSpec, found: dict[str, Any]) -> None:
    """inf in a feature is refused, naming the column and row; NaN is missing data and imputed, but a
    column missing in every training row has nothing to impute from and is refused too."""
    label = spec.columns.get("label", "label")
    for split, table in found.items():
        for column in spec.columns.get("features") or [c for c in _column_names(table) if c != label]:
            if column not in _column_names(table):
                continue  # named by _tabular, which lists what the data has
            values = np.asarray(_column(table, column))
            # An all-missing column reads as floats (NaN) or, through Arrow, as nulls (None).
            if values.dtype.kind == "f":
                empty = bool(np.isnan(values).all())
            else:
                empty = values.dtype.kind == "O" and all(v is None for v in values)
            if split == "train" and empty:
                raise DataError(
                    f"dataset {spec.name!r} ({spec.describe()}): column {column!r} is missing (NaN) in every "
                    "training row; drop it from the file or list the others in columns.features"
                )
            if values.dtype.kind != "f":
                continue
            bad = np.flatnonzero(np.isinf(values))
            if bad.size:
                raise DataError(
                    f"dataset {spec.name!r} ({spec.describe()}): column {column!r} holds {values[bad[0]]} in "
                    f"data row {bad[0]} of split {split!r} (0-based, header excluded; {bad.size} such row(s)); "
                    "replace it, or mark it missing (empty, NaN, or options.na_values)"
                )


def _missing_label(value: Any, class_label: bool) -> bool:
    """Null or NaN. With a datasets ``ClassLabel`` column, -1 too: that library's "no label" (GLUE test)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return True
    return class_label and isinstance(value, (int, np.integer)) and value < 0


def _integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    return isinstance(value, (int, np.integer))


def _encode_labels(found: dict[str, Any], column: str, info: DatasetInfo):
    """Class ids 0..n-1 per split; splits without labels (all missing, e.g. GLUE test) are dropped.

    Labels are taken as users write them: any integers ({-1, 1} included; a CSV column with a
    gap reads as floats 0.0, 1.0, NaN) or strings. Only null and NaN mean "no label".
    """
    feature = None if isinstance(found["train"], dict) else found["train"].features.get(column)
    class_label = feature is not None and hasattr(feature, "names")
    raw = {s: np.asarray(_column(t, column), dtype=object) for s, t in found.items()}
    kept = {}
    for split, values in raw.items():
        missing = np.array([_missing_label(v, class_label) for v in values], dtype=bool)
        if missing.all():
            continue
        if missing.any():
            found[split] = _take(found[split], np.flatnonzero(~missing))
            values = values[~missing]
        kept[split] = values
    if "train" not in kept:
        raise DataError(f"dataset {info.name!r}: the training split has no labels in column {column!r}")
    if class_label:
        names = list(feature.names)
        labels = {s: v.astype(np.int64) for s, v in kept.items()}
    elif all(_integral(v) for values in kept.values() for v in values):
        ints = {s: np.array([int(x) for x in v], dtype=np.int64) for s, v in kept.items()}
        if min(v.min() for v in ints.values()) >= 0:  # already class ids: keep them (and the gaps' names)
            labels = ints
            names = [str(i) for i in range(int(max(v.max() for v in labels.values())) + 1)]
        else:
            values = sorted({int(x) for v in ints.values() for x in v})
            lookup = {value: i for i, value in enumerate(values)}
            labels = {s: np.array([lookup[int(x)] for x in v], dtype=np.int64) for s, v in ints.items()}
            names = [str(value) for value in values]
    else:
        names = sorted({str(x) for v in kept.values() for x in v})
        lookup = {name: i for i, name in enumerate(names)}
        labels = {s: np.array([lookup[str(x)] for x in v], dtype=np.int64) for s, v in kept.items()}
    present = np.unique(labels["train"])
    if len(present) < 2:
        shown = ", ".join(names[i] for i in present)
        raise DataError(
            f"dataset {info.name!r}: column {column!r} holds {len(present)} class ({shown}) in the training "
            "split; a classification task needs at least 2"
        )
    info.class_names, info.n_classes = names, len(names)
    return {s: found[s] for s in kept}, labels


def _carve_missing(found, labels, seed: int, val_fraction: float, test_fraction: float):
    """Carve the splits the source lacks out of its training split, stratified where labels exist."""
    if "val" in found and "test" in found:
        return found, labels
    train, y = found["train"], labels["train"]
    n = _length(train)
    if "val" not in found and "test" not in found:
        index = carve_indices(n, y, seed, val_fraction, test_fraction)
    else:
        missing = "val" if "test" in found else "test"
        fraction = val_fraction if missing == "val" else test_fraction
        keep, carved = train_test_split(np.arange(n), test_size=fraction, stratify=y, random_state=seed)
        index = {"train": keep, missing: carved}
    for split, idx in index.items():
        found[split], labels[split] = _take(train, idx), _take_labels(y, idx)
    return found, labels


# ---------------------------------------------------------------------------------------
# Images


def _image_column(spec: DatasetSpec, table) -> str:
    if "image" in spec.columns:
        return spec.columns["image"]
    names = _column_names(table)
    if isinstance(table, dict):
        return "image"
    from datasets import Image  # lazy: Hugging Face datasets takes seconds to import; only hub/folder sources need it

    for name in names:
        if isinstance(table.features[name], Image):
            return name
    raise DataError(f"dataset {spec.name!r}: no image column among {', '.join(names)}; set columns.image")


def _decoded_images(spec: DatasetSpec, table, column: str) -> list:
    """The column's images, decoded here so that a garbage or truncated file is named (datasets' lazy
    decoding raises a bare PIL error from deep inside, without the file)."""
    from datasets import Image
    from PIL import Image as PILImage

    if not isinstance(table.features[column], Image):
        return _column(table, column)
    images = []
    for row, item in enumerate(table.cast_column(column, Image(decode=False))[column]):
        where = item.get("path") or f"row {row}"
        try:
            image = PILImage.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"])
            image.load()
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unreadable and truncated files
            raise DataError(
                f"dataset {spec.name!r}: cannot decode image {where!r} ({type(err).__name__}: {err}); "
                "replace or delete that file"
            ) from None
        images.append(image)
    return images


def _images(spec: DatasetSpec, found: dict[str, Any], info: DatasetInfo) -> dict[str, np.ndarray]:
    # Lazy here and below: each modality imports its own stack, so preparing one dataset loads only what it needs.
    import torch
    from torchvision.transforms import v2

    column = _image_column(spec, found["train"])
    arrays = {}
    for split in SPLITS:
        table = found[split]
        if isinstance(table, dict):  # IDX: already (N, H, W) or (N, C, H, W) uint8
            images = torch.as_tensor(table[column])
            images = images[:, None] if images.ndim == 3 else images
        else:
            pil = _decoded_images(spec, table, column)
            mode = "L" if all(im.mode in ("L", "1") for im in pil[:256]) else "RGB"
            tensors = [v2.functional.pil_to_tensor(im.convert(mode)) for im in pil]
            if spec.image_size is None and len({t.shape for t in tensors}) > 1:
                raise DataError(
                    f"dataset {spec.name!r}: images have different sizes; set datasets.{spec.name}.image_size"
                )
            if spec.image_size is not None:
                tensors = [v2.functional.resize(t, [spec.image_size] * 2, antialias=True) for t in tensors]
            images = torch.stack(tensors)
        if spec.image_size is not None and images.shape[-1] != spec.image_size:
            images = v2.functional.resize(images, [spec.image_size] * 2, antialias=True)
        arrays[f"X_{split}"] = images.numpy().astype(np.uint8)
    channels = {arrays[f"X_{s}"].shape[1] for s in SPLITS}
    if len(channels) > 1:
        raise DataError(f"dataset {spec.name!r}: splits differ in colour channels {sorted(channels)}")
    info.input_shape = tuple(arrays["X_train"].shape[1:])
    info.norm_mean, info.norm_std = image_stats(arrays["X_train"])
    return arrays


# ---------------------------------------------------------------------------------------
# Text

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def train_tokenizer(texts: Sequence[str], kind: str, vocab_size: int):
    """A WordPiece or BPE tokenizer trained on ``texts``; [PAD] is id 0."""
    # Lazy: per modality (see _images).
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    else:
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    tokenizer.train_from_iterator(texts, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer


def _texts(spec: DatasetSpec, found: dict[str, Any], info: DatasetInfo) -> dict[str, np.ndarray]:
    column = spec.columns.get("text", "text")
    pair = spec.columns.get("text_pair")
    texts = {s: [str(t or "") for t in _column(found[s], column)] for s in SPLITS}
    pairs = {s: [str(t or "") for t in _column(found[s], pair)] for s in SPLITS} if pair else None
    for name, split_texts in ((column, texts), (pair, pairs)):
        if split_texts is not None and not any(t.strip() for t in split_texts["train"]):
            raise DataError(
                f"dataset {spec.name!r}: text column {name!r} is empty in every training row; "
                f"set datasets.{spec.name}.columns.text to the column that holds the text"
            )
    if spec.tokenizer in ("wordpiece", "bpe"):
        tokenizer = train_tokenizer(texts["train"] + (pairs["train"] if pairs else []), spec.tokenizer, spec.vocab_size)
        tokenizer.enable_truncation(spec.max_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=spec.max_length)
        vocab, pad = tokenizer.get_vocab_size(), 0
        info.extra["tokenizer"] = {"kind": spec.tokenizer, "json": tokenizer.to_str()}

        def encode(split: str) -> list[list[int]]:
            inputs = list(zip(texts[split], pairs[split], strict=True)) if pairs else texts[split]
            return [e.ids for e in tokenizer.encode_batch(inputs)]
    else:
        tokenizer = _local_transformers_tokenizer(spec)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        tokenizer.pad_token_id = pad
        vocab = len(tokenizer)
        info.extra["tokenizer"] = {"kind": "transformers", "path": spec.tokenizer}

        def encode(split: str) -> list[list[int]]:
            second = pairs[split] if pairs else None
            kw = {"max_length": spec.max_length, "truncation": True, "padding": "max_length"}
            return tokenizer(texts[split], second, **kw)["input_ids"]

    arrays = {}
    for split in SPLITS:
        ids = np.asarray(encode(split), dtype=np.int64)
        if pad != 0:  # models mask on id 0: swap the padding id with id 0
            ids = np.where(ids == pad, -1, ids)
            ids = np.where(ids == 0, pad, ids)
            ids = np.where(ids == -1, 0, ids)
        arrays[f"X_{split}"] = ids.astype(np.int32)
    info.vocab_size, info.input_shape = int(vocab), (spec.max_length,)
    return arrays


def _local_transformers_tokenizer(spec: DatasetSpec):
    from transformers import AutoTokenizer  # lazy: per modality (see _images)

    if not Path(spec.tokenizer).is_dir():
        raise DataError(
            f"dataset {spec.name!r}: tokenizer {spec.tokenizer!r} is neither wordpiece, bpe nor a local folder "
            "holding a transformers tokenizer"
        )
    return AutoTokenizer.from_pretrained(spec.tokenizer, local_files_only=True)


# ---------------------------------------------------------------------------------------
# Tabular


def _tabular(spec: DatasetSpec, found: dict[str, Any], info: DatasetInfo) -> dict[str, np.ndarray]:
    # Lazy: per modality (see _images).
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frames = {s: found[s].to_pandas() if not isinstance(found[s], dict) else pd.DataFrame(found[s]) for s in SPLITS}
    label = spec.columns.get("label", "label")
    features = spec.columns.get("features") or [c for c in frames["train"].columns if c != label]
    missing = [c for c in features if c not in frames["train"].columns]
    if missing:
        raise DataError(f"dataset {spec.name!r}: feature columns {missing} are not in the data")
    numeric = frames["train"][features].select_dtypes("number").columns
    categorical = spec.columns.get("categorical") or [c for c in features if c not in numeric]
    continuous = [c for c in features if c not in categorical]
    transformer = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), continuous),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=5),
                ),
                categorical,
            ),
        ],
        sparse_threshold=0.0,
    )
    for frame in frames.values():
        frame[categorical] = frame[categorical].astype("object").where(frame[categorical].notna(), np.nan)
    transformer.fit(frames["train"][features])
    arrays = {f"X_{s}": transformer.transform(frames[s][features]).astype(np.float32) for s in SPLITS}
    info.input_shape = (arrays["X_train"].shape[1],)
    info.extra["features"] = {"continuous": continuous, "categorical": list(categorical)}
    return arrays


# ---------------------------------------------------------------------------------------
# Time series


def _series_values(spec: DatasetSpec, table) -> list[np.ndarray]:
    frame = table.to_pandas()
    if "value" in spec.columns:
        value = spec.columns["value"]
        if "id" in spec.columns:
            groups = frame.groupby(spec.columns["id"], sort=False)[value]
            return [g.dropna().to_numpy(dtype=np.float64) for _, g in groups]
        return [frame[value].dropna().to_numpy(dtype=np.float64)]
    id_column = spec.columns.get("id")
    values = frame.drop(columns=[id_column]) if id_column else frame
    # One series per row, ragged: empty cells pad the shorter rows.
    return [row[~np.isnan(row)] for row in values.to_numpy(dtype=np.float64)]


def _prepare_series(spec: DatasetSpec, found: dict[str, Any], val_fraction: float, test_fraction: float) -> SplitData:
    if "val" in found:
        raise DataError(f"dataset {spec.name!r}: a time-series source gives train and optionally test; drop 'val'")
    series = _series_values(spec, found["train"])
    futures = _series_values(spec, found["test"]) if "test" in found else None
    if futures is not None and len(futures) != len(series):
        raise DataError(f"dataset {spec.name!r}: {len(series)} training series but {len(futures)} test series")
    window = spec.window or 4 * spec.horizon
    arrays = split_series(
        series, futures, window, spec.horizon, spec.stride, val_fraction, test_fraction, spec.scale == "level"
    )
    info = DatasetInfo(spec.name, "regression", "timeseries", (window, 1), source=spec.describe())
    info.extra.update(horizon=spec.horizon, window=window, series=len(series))
    return SplitData(info, arrays)


# ---------------------------------------------------------------------------------------
# Audio


def _audio(spec: DatasetSpec, found: dict[str, Any], info: DatasetInfo) -> dict[str, np.ndarray]:
    # Lazy: per modality (see _images); metalr.tasks.audio loads torch.
    from metalr.tasks.audio import ALPHABET, decode_audio, encode_transcripts, log_mel, pad_stack

    column = spec.columns.get("audio", "audio")
    arrays = {}
    for split in SPLITS:
        table = found[split]
        if column not in table.column_names:
            raise DataError(f"dataset {spec.name!r}: no audio column {column!r}; it has {table.column_names}")
        from datasets import Audio  # lazy: see _image_column

        if isinstance(table.features[column], Audio):
            table = table.cast_column(column, Audio(decode=False))
        waves = [decode_audio(item, spec.sample_rate) for item in _column(table, column)]
        feats = [log_mel(w, spec.sample_rate, spec.n_mels) for w in waves]
        arrays[f"X_{split}"], arrays[f"L_{split}"] = pad_stack(feats)
        arrays[f"W_{split}"], arrays[f"K_{split}"] = pad_stack(waves)
        arrays[f"y_{split}"], arrays[f"M_{split}"] = encode_transcripts(_column(table, spec.columns["transcript"]))
    frames = np.concatenate([x[:n] for x, n in zip(arrays["X_train"], arrays["L_train"], strict=True)])
    info.extra.update(feature_mean=frames.mean(0).tolist(), feature_std=np.maximum(frames.std(0), 1e-3).tolist())
    info.input_shape = (spec.n_mels,)
    info.vocab_size = len(ALPHABET) + 1
    info.extra.update(alphabet=ALPHABET, sample_rate=spec.sample_rate, n_mels=spec.n_mels)
    return arrays
