"""Self-describing meta-learner checkpoints: safetensors weights plus a JSON config."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from metalr import __version__
from metalr.io import atomic_path
from metalr.meta.model import ARCHITECTURES

if TYPE_CHECKING:
    import polars as pl

    from metalr.config import MetaConfig, PipelineConfig
    from metalr.meta.fit import FitReport
    from metalr.meta.model import MetaLearner
    from metalr.meta.variants import MetaVariant

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
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory / CONFIG} is not a metalr meta-scheduler config (not a JSON object)")
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} is not a metalr meta-scheduler checkpoint (format {config.get('format')!r}, "
            f"version {config.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION})"
        )
    _check_config(config, directory / CONFIG)
    model = ARCHITECTURES[config["arch"]](len(config["features"]), config["hidden"], config["layers"])
    try:
        weights = load_file(str(directory / WEIGHTS))
        model.load_state_dict(weights)
    except Exception as err:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"cannot load meta-scheduler weights {directory / WEIGHTS}: {err}") from err
    _check_weights(weights, directory / WEIGHTS)
    model.eval()
    return model, config


def checkpoint_metadata(
    config: PipelineConfig,
    chosen: MetaVariant,
    point: MetaConfig,
    model: MetaLearner,
    report: FitReport,
    labels: pl.DataFrame,
    runs: pl.DataFrame,
) -> dict[str, Any]:
    """What a fitted variant's ``config.json`` records: the chosen search point and the grid searched,
    the variant's inputs and the probe cadences they were computed at, the normalisation, the
    objective, the labels and runs it learnt from, and the fit report.

    ``point`` is the chosen search point, ``labels`` the state labels, ``runs`` the collection runs."""
    from dataclasses import asdict

    probes = {config.tasks[t].probes for t in runs["task"].unique().to_list()}
    return {
        **{
            k: v
            for k, v in asdict(point).items()
            if k not in ("architectures", "controls", "ablations", "search_hidden", "search_lr")
        },
        "searched": {
            "hidden": [p.hidden for p in config.meta.search_points()],
            "lr": [p.lr for p in config.meta.search_points()],
        },
        "variant": chosen.name,
        "role": chosen.role,
        "about": chosen.about,
        "arch": chosen.arch,
        "features": list(chosen.features),
        "shuffled_inputs": chosen.shuffled,
        "probe_cadences": [asdict(p) for p in probes],
        "normalisation": {
            "mean": model.input_mean.tolist(),
            "std": model.input_std.tolist(),
            "fallback_z": config.meta.fallback_z,
        },
        "objective": (
            "branching expert: per branch point, the LR multiplier with the lowest final validation loss "
            "(mean over fork seeds), as an absolute log-multiplier on cosine"
        ),
        "label_counts": {
            f"{m:g}": n for m, n in labels.group_by("best_multiplier").len().sort("best_multiplier").iter_rows()
        },
        "trained_on": runs.select("task", "task_hash").unique().sort("task").to_dicts(),
        "trained_on_phases": sorted(runs["phase"].unique().to_list()),
        "fit": asdict(report),
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_config(config: dict[str, Any], path: Path) -> None:
    """Refuse a config.json that would build a broken scheduler, naming the file and the field."""
    if not isinstance(config.get("arch"), str) or config["arch"] not in ARCHITECTURES:
        raise CheckpointError(
            f"{path}: unknown meta-learner arch {config.get('arch')!r}; known: {', '.join(ARCHITECTURES)}"
        )
    features = config.get("features")
    if not (isinstance(features, list) and features and all(isinstance(f, str) for f in features)):
        raise CheckpointError(f"{path}: 'features' must be a non-empty list of input names, got {features!r}")
    for name in ("hidden", "layers"):
        value = config.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise CheckpointError(f"{path}: {name!r} must be a positive integer, got {value!r}")
    fraction = config.get("decision_fraction")
    if not (_is_number(fraction) and 0 < fraction <= 0.5):
        raise CheckpointError(f"{path}: 'decision_fraction' must be a number in (0, 0.5], got {fraction!r}")
    # Optional (older checkpoints lack it); when present a finite positive number, not "nan" or a string.
    fallback_z = config.get("fallback_z", 6.0)
    if not (_is_number(fallback_z) and fallback_z > 0):
        raise CheckpointError(f"{path}: 'fallback_z' must be a finite number > 0, got {fallback_z!r}")


def _check_weights(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Finite weights and normalisation, and a positive input std: a NaN there makes every LR NaN."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or inf; refit the meta-learner or use another")
    std = weights.get("input_std")
    if std is not None and not bool((std > 0).all()):
        raise CheckpointError(
            f"{path}: 'input_std' must be > 0 for every input (it divides the inputs); got {std.min().item():g}"
        )
