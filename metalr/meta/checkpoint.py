"""Self-describing meta-learner checkpoints: safetensors weights plus a JSON config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from metalr import __version__
from metalr.io import atomic_path
from metalr.meta.model import ARCHITECTURES

FORMAT = "metalr-meta-scheduler"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    pass


def save_checkpoint(model: nn.Module, config: dict[str, Any], directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "metalr_version": __version__, **config}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_path(directory / CONFIG) as tmp:
        tmp.write_text(json.dumps(full, indent=2, sort_keys=True))


def load_checkpoint(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read meta-scheduler config {directory / CONFIG}: {err}") from err
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} is not a metalr meta-scheduler checkpoint (format {config.get('format')!r}, "
            f"version {config.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION})"
        )
    model = ARCHITECTURES[config["arch"]](len(config["features"]), config["hidden"], config["layers"])
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS)))
    except Exception as err:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"cannot load meta-scheduler weights {directory / WEIGHTS}: {err}") from err
    model.eval()
    return model, config
