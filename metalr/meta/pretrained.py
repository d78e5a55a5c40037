"""Meta-scheduler checkpoints shipped inside the package (``metalr/pretrained/<name>/``).

A shipped checkpoint is a pipeline checkpoint (``model.safetensors`` + ``config.json``) whose
``config.json`` also carries ``provenance``: the pipeline config it was fitted with and that
config's hash, the commit, the tasks it saw, its held-out results when the fitting run
evaluated any, and the SHA-256 of the weights. ``SHA256SUMS`` lists both files' hashes, so a
test (and ``verify_pretrained``) can tell a shipped file from an edited one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from metalr.meta.checkpoint import CONFIG, WEIGHTS, CheckpointError, load_checkpoint

SUMS = "SHA256SUMS"


def pretrained_root() -> Path:
    return Path(str(resources.files("metalr") / "pretrained"))


def shipped_names() -> list[str]:
    root = pretrained_root()
    return sorted(p.name for p in root.iterdir() if (p / CONFIG).is_file()) if root.is_dir() else []


def pretrained_path(path: str | Path) -> Path:
    """``path`` if it is a directory, else the shipped checkpoint of that name (``"default"``)."""
    candidate = Path(path)
    if candidate.is_dir():
        return candidate
    if isinstance(path, str) and path in shipped_names():
        return pretrained_root() / path
    raise CheckpointError(
        f"no meta-scheduler checkpoint at {str(path)!r}: give a directory holding {WEIGHTS} and {CONFIG} "
        f"(a pipeline writes results/meta/round-<n>/meta) or a shipped name: {', '.join(shipped_names()) or 'none'}"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _held_out_results(results: Path | None) -> dict[str, Any] | None:
    """The fitting run's held-out summary rows for the main meta-learner, when it evaluated any."""
    if results is None:
        return None
    summary = results / "summary.parquet"
    if not summary.is_file():
        return None
    import polars as pl  # pipeline extra: only when a summary exists

    return {"summary": str(summary), "rows": pl.read_parquet(summary).to_dicts()}


def export_pretrained(
    checkpoint: str | Path,
    config_file: str | Path,
    name: str = "default",
    commit: str | None = None,
    results: str | Path | None = None,
    notes: str | None = None,
    destination: str | Path | None = None,
) -> Path:
    """Copy the fitted checkpoint directory ``checkpoint`` into ``metalr/pretrained/<name>``
    (or ``destination``) with provenance; returns the directory written."""
    import yaml

    from metalr.config import load_config, stable_hash  # pipeline config: only for exporting

    checkpoint, config_file = Path(checkpoint), Path(config_file)
    load_checkpoint(checkpoint)  # refuse to ship what would not load
    pipeline = load_config(config_file)
    raw = yaml.safe_load(config_file.read_text())
    target = Path(destination) if destination is not None else pretrained_root() / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint / WEIGHTS, target / WEIGHTS)
    config = json.loads((checkpoint / CONFIG).read_text())
    config["provenance"] = {
        "source": str(checkpoint),
        "pipeline_config_file": config_file.name,
        "pipeline_config": raw,
        "pipeline_config_hash": stable_hash(raw, length=64),
        "commit": commit or _commit(config_file.resolve().parent),
        "tasks": {"meta_train": list(pipeline.meta_train), "meta_val": list(pipeline.meta_val)},
        "held_out_results": _held_out_results(Path(results) if results is not None else None),
        "notes": notes,
        "weights_sha256": sha256(target / WEIGHTS),
    }
    (target / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (target / SUMS).write_text("".join(f"{sha256(target / f)}  {f}\n" for f in (WEIGHTS, CONFIG)))
    return target


def verify_pretrained(directory: Path) -> None:
    """Raise ``CheckpointError`` unless the files match ``SHA256SUMS`` and the weights' recorded hash."""
    for line in (directory / SUMS).read_text().splitlines():
        digest, file = line.split(maxsplit=1)
        if sha256(directory / file) != digest:
            raise CheckpointError(f"{directory / file} does not match its hash in {directory / SUMS}")
    recorded = json.loads((directory / CONFIG).read_text())["provenance"]["weights_sha256"]
    if sha256(directory / WEIGHTS) != recorded:
        raise CheckpointError(f"{directory / WEIGHTS} does not match provenance.weights_sha256 in {CONFIG}")
