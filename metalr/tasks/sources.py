"""Raw data in: hub ids and local files through ``datasets.load_dataset``, and IDX files.

Every source returns its splits as tables (a ``datasets.Dataset``, or a dict of equal-length
numpy arrays for IDX), keyed by the canonical split names train / val / test. Nothing here
downloads anything unless ``datasets`` itself is allowed to (hub ids with a network and no
``HF_DATASETS_OFFLINE``).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from metalr.config import DatasetSpec

SPLIT_ALIASES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}


class DataError(RuntimeError):
    """A dataset that cannot be loaded, phrased for the person who declared it."""


def load_source(spec: DatasetSpec) -> dict[str, Any]:
    """The dataset's splits as found in its source (a subset of train / val / test)."""
    if spec.source == "idx":
        return _load_idx(Path(spec.path))
    found = _load_with_datasets(spec)
    return _canonical_splits(found, spec)


def _canonical_splits(found: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    out = {}
    for canonical, aliases in SPLIT_ALIASES.items():
        wanted = spec.splits.get(canonical)
        if wanted is not None:
            if wanted not in found:
                raise DataError(
                    f"dataset {spec.name!r}: split {wanted!r} (datasets.{spec.name}.splits.{canonical}) is not in "
                    f"the source; it has: {', '.join(found)}"
                )
            out[canonical] = found[wanted]
            continue
        for alias in aliases:
            if alias in found:
                out[canonical] = found[alias]
                break
    if "train" not in out:
        raise DataError(
            f"dataset {spec.name!r}: no training split among {', '.join(found)}; "
            f"name it with datasets.{spec.name}.splits.train"
        )
    return out


@contextmanager
def _quiet_hub():
    """Silence the hub clients' retry chatter; a failure is reported once, by DataError."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "datasets", "fsspec")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _load_with_datasets(spec: DatasetSpec) -> dict[str, Any]:
    import datasets  # lazy: Hugging Face datasets takes seconds to import; only these sources use it

    datasets.disable_progress_bars()
    kwargs = dict(spec.options)
    if spec.source == "hub":
        return _load_hub(spec, kwargs)
    builder = "csv" if spec.source == "tsv" else spec.source
    if spec.source == "tsv":
        kwargs.setdefault("sep", "\t")
    path = Path(spec.path)
    if spec.source == "text":  # a folder holds a document per file; a file, an example per line
        kwargs.setdefault("sample_by", "document" if path.is_dir() else "line")
    if spec.data_files is not None:
        kwargs["data_files"] = spec.data_files
    elif path.is_dir():
        kwargs["data_dir"] = str(path)
    elif path.exists() or any(c in spec.path for c in "*?["):
        kwargs["data_files"] = spec.path
    else:
        raise DataError(
            f"dataset {spec.name!r}: local path {spec.path!r} (datasets.{spec.name}.path) does not exist "
            f"(relative paths are read from the working directory, {Path.cwd()})"
        )
    if spec.source == "text" and path.is_dir():
        return _load_text_folder(spec, path, kwargs)
    if spec.source == "audiofolder":
        return _load_audiofolder(spec, path)
    try:
        return dict(datasets.load_dataset(builder, **kwargs))
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise DataError(f"dataset {spec.name!r}: datasets.load_dataset({builder!r}) failed: {err}") from err
    except datasets.exceptions.DatasetGenerationError as err:
        # The cause (an empty file, a parse error) is what the user can act on; the wrapper says nothing.
        cause = err.__cause__ or err
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise DataError(
            f"dataset {spec.name!r}: cannot read {spec.path!r} (datasets.{spec.name}.path) as {spec.source}: "
            f"{type(cause).__name__}: {detail}" + ("; the file is empty" if _empty_file(path) else "")
        ) from None


def _empty_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == 0


def _load_text_folder(spec: DatasetSpec, root: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``root/<split>/<class>/*.txt`` or ``root/<class>/*.txt``: one document per file, label from the folder."""
    import datasets  # lazy: Hugging Face datasets takes seconds to import; only these sources use it

    kwargs.pop("data_dir", None)
    split_dirs = {d.name: d for d in root.iterdir() if d.is_dir() and d.name in sum(SPLIT_ALIASES.values(), ())}
    split_dirs = split_dirs or {"train": root}
    label_column = spec.columns.get("label", "label")
    out = {}
    for split, folder in sorted(split_dirs.items()):
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if not classes:
            raise DataError(f"dataset {spec.name!r}: {str(folder)!r} holds no class folders (<class>/*.txt)")
        parts = []
        for label, name in enumerate(classes):
            part = datasets.load_dataset("text", data_files=str(folder / name / "*.txt"), split="train", **kwargs)
            parts.append(part.add_column(label_column, [label] * len(part)))
        merged = datasets.concatenate_datasets(parts)
        out[split] = merged.cast_column(label_column, datasets.ClassLabel(names=classes))
    return out


def _load_audiofolder(spec: DatasetSpec, root: Path) -> dict[str, Any]:
    """The audiofolder layout: ``[<split>/]metadata.csv|jsonl`` with ``file_name`` and transcript columns.

    The metadata goes through ``datasets.load_dataset``; the audio column holds file paths,
    decoded later with soundfile. (datasets' own Audio feature needs torchcodec, which ties
    itself to one torch build and to FFmpeg.)
    """
    import datasets  # lazy: Hugging Face datasets takes seconds to import; only these sources use it

    if not root.is_dir():
        raise DataError(f"dataset {spec.name!r}: audiofolder path {str(root)!r} is not a folder")
    out = {}
    folders = {d.name: d for d in root.iterdir() if d.is_dir() and d.name in sum(SPLIT_ALIASES.values(), ())}
    for split, folder in (folders or {"train": root}).items():
        metadata = next(
            (folder / f"metadata.{ext}" for ext in ("csv", "jsonl") if (folder / f"metadata.{ext}").is_file()), None
        )
        if metadata is None:
            raise DataError(f"dataset {spec.name!r}: {str(folder)!r} has no metadata.csv or metadata.jsonl")
        table = datasets.load_dataset(
            "csv" if metadata.suffix == ".csv" else "json", data_files=str(metadata), split="train"
        )
        if "file_name" not in table.column_names:
            raise DataError(f"dataset {spec.name!r}: {str(metadata)!r} lacks the file_name column")
        audio = spec.columns.get("audio", "audio")
        paths = [str(folder / name) for name in table["file_name"]]
        out[split] = table.remove_columns("file_name").add_column(audio, paths)
    return out


def _load_hub(spec: DatasetSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    import datasets  # lazy: Hugging Face datasets takes seconds to import; only these sources use it

    config = datasets.config
    where = f"{spec.path!r}" + (f" (config {spec.config_name!r})" if spec.config_name else "")
    if spec.data_files is not None:
        kwargs["data_files"] = spec.data_files
    try:
        with _quiet_hub():
            return dict(datasets.load_dataset(spec.path, spec.config_name, **kwargs))
    except (ConnectionError, FileNotFoundError, OSError) as err:
        offline = "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set" if config.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise DataError(
            f"dataset {spec.name!r}: hub dataset {where} is not in the Hugging Face cache "
            f"({config.HF_DATASETS_CACHE}) and {offline}.\n"
            f"  Fix: on a machine with network run\n"
            f'    python -c "import datasets; datasets.load_dataset({spec.path!r}'
            + (f", {spec.config_name!r}" if spec.config_name else "")
            + ')"\n'
            f"  and copy its HF cache here (HF_HOME), or point datasets.{spec.name} at local files "
            f"(source: csv/tsv/json/parquet/imagefolder/audiofolder/text, path: ...).\n"
            f"  ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None


IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (MNIST format), gzipped or not."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:  # truncated (EOFError) or corrupt (BadGzipFile) archives
        raise DataError(f"{str(path)!r} is a truncated or corrupt .gz file ({err}); copy it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{str(path)!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(
            f"{str(path)!r}: truncated IDX header ({len(raw)} bytes; {ndim} dimensions need {4 + 4 * ndim}); "
            "copy the file again"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{str(path)!r}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape).copy()  # frombuffer is read-only; torch wants writable arrays


def _load_idx(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for split, (images, labels) in IDX_FILES.items():
        found = [
            next((folder / (n + ext) for ext in ("", ".gz") if (folder / (n + ext)).is_file()), None)
            for n in (images, labels)
        ]
        if all(found):
            out[split] = {"image": read_idx(found[0]), "label": read_idx(found[1]).astype(np.int64)}
    if "train" not in out:
        raise DataError(
            f"IDX folder {str(folder)!r} lacks train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
            "(for Fashion-MNIST: apt-get install dataset-fashion-mnist, files in /usr/share/datasets/fashion-mnist)"
        )
    return out
