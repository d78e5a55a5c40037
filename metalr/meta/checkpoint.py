"""Self-describing meta-learner checkpoints: safetensors weights plus a JSON config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
