"""Typed, validated pipeline configuration.

The JSON schema in ``workflow/schemas`` is the single source of truth for field names,
allowed values and defaults; this module turns a validated dict into dataclasses and
adds the cross-field checks a schema cannot express.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
PHASES = ("collect", "metaval", "eval")
PROTOCOL_FIELDS = ("optimizer", "batch_size", "base_lr", "weight_decay", "budget_steps", "val_every", "probes")


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the config."""


def stable_hash(payload: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable value that does not depend on key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class ModelSpec:
    family: str
    width: int = 64
    depth: int = 1
    dropout: float = 0.0


@dataclass(frozen=True)
class ProbeConfig:
    """Cadences (in optimizer steps) and sizes of the trajectory probes; see docs/trajectory-schema.md."""

    enabled: bool = True
    grad_norm_every: int = 10  # always on, even with enabled=False
    geometry_every: int = 5
    optimizer_every: int = 5
    noise_every: int = 25
    noise_micro_batches: int = 4
    curvature_every: int = 25
    curvature_batch: int = 32
    power_iters: int = 2
    hutchinson_samples: int = 1
    uncertainty_every: int | None = None  # None: at every validation
    uncertainty_examples: int = 256
    mc_passes: int = 8
    resources_every: int = 10


@dataclass(frozen=True)
class TaskSpec:
    """A dataset, a model and a fixed training protocol."""

    task_id: str
    dataset: str
    model: ModelSpec
    optimizer: str
    batch_size: int
    base_lr: float
    weight_decay: float
    budget_steps: int
    val_every: int
    probes: ProbeConfig = ProbeConfig()

    def content(self) -> dict[str, Any]:
        """Everything that defines the task except its name and what is logged about it."""
        content = asdict(self)
        del content["task_id"], content["probes"]
        return content

    @functools.cached_property
    def config_hash(self) -> str:
        # Excludes the id, so a renamed copy of a task hashes the same (leakage check).
        return stable_hash(self.content())


@dataclass(frozen=True)
class RunGrid:
    schedulers: tuple[str, ...]
    seeds: int


@dataclass(frozen=True)
class MetaConfig:
    arch: str
    hidden: int
    layers: int
    lr: float
    epochs: int
    patience: int
    decision_fraction: float
    seed: int


@dataclass(frozen=True)
class PipelineConfig:
    split_seed: int
    val_fraction: float
    test_fraction: float
    device: str
    divergence_factor: float
    loss_ema_beta: float
    gpu_per_job: int
    threads: int
    tasks: dict[str, TaskSpec]
    meta_train: tuple[str, ...]
    meta_val: tuple[str, ...]
    held_out: tuple[str, ...]
    collect: RunGrid
    evaluate: RunGrid
    meta: MetaConfig

    def phase_tasks(self, phase: str) -> tuple[str, ...]:
        return {"collect": self.meta_train, "metaval": self.meta_val, "eval": self.held_out}[phase]

    def phase_grid(self, phase: str) -> RunGrid:
        return self.evaluate if phase == "eval" else self.collect

    def task(self, task_id: str) -> TaskSpec:
        if task_id not in self.tasks:
            raise ConfigError(f"unknown task {task_id!r}; the config defines: {', '.join(sorted(self.tasks))}")
        return self.tasks[task_id]

    def datasets(self) -> tuple[str, ...]:
        used = {self.tasks[t].dataset for p in PHASES for t in self.phase_tasks(p)}
        return tuple(sorted(used))


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema (filling defaults in place) and return the dict."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(raw, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as err:
        raise ConfigError(_schema_message(raw)) from err
    return raw


def _schema_message(raw: dict[str, Any]) -> str:
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    lines = []
    for error in errors[:10]:
        where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        lines.append(f"config field '{where}': {error.message}")
    return "invalid config:\n  " + "\n  ".join(lines or ["schema validation failed"])


def parse_config(raw: dict[str, Any]) -> PipelineConfig:
    """Validate ``raw`` and build the typed config; raises ConfigError on any problem."""
    raw = validate_config(raw)
    defaults = raw["defaults"]
    tasks = {}
    for task_id, entry in raw["tasks"].items():
        protocol = {f: entry.get(f, defaults[f]) for f in PROTOCOL_FIELDS}
        protocol["probes"] = ProbeConfig(**protocol["probes"])
        tasks[task_id] = TaskSpec(
            task_id=task_id,
            dataset=entry["dataset"],
            model=ModelSpec(**entry["model"]),
            **protocol,
        )
    splits = raw["splits"]
    config = PipelineConfig(
        split_seed=raw["split_seed"],
        val_fraction=raw["split_fractions"]["val"],
        test_fraction=raw["split_fractions"]["test"],
        device=raw["device"],
        divergence_factor=raw["divergence_factor"],
        loss_ema_beta=raw["loss_ema_beta"],
        gpu_per_job=raw["resources"]["gpu"],
        threads=raw["resources"]["threads"],
        tasks=tasks,
        meta_train=tuple(splits["meta_train"]),
        meta_val=tuple(splits["meta_val"]),
        held_out=tuple(splits["held_out"]),
        collect=RunGrid(tuple(raw["collect"]["schedulers"]), raw["collect"]["seeds"]),
        evaluate=RunGrid(tuple(raw["evaluate"]["schedulers"]), raw["evaluate"]["seeds"]),
        meta=MetaConfig(**raw["meta"]),
    )
    _check_splits(config)
    return config


def _check_splits(config: PipelineConfig) -> None:
    for phase in PHASES:
        for task_id in config.phase_tasks(phase):
            if task_id not in config.tasks:
                raise ConfigError(
                    f"config field 'splits': task {task_id!r} is not defined under 'tasks'; "
                    f"defined tasks: {', '.join(sorted(config.tasks))}"
                )
    seen = {config.tasks[t].config_hash: t for t in config.meta_train + config.meta_val}
    for task_id in config.held_out:
        twin = seen.get(config.tasks[task_id].config_hash)
        if twin is not None:
            raise ConfigError(
                f"config field 'splits.held_out': task {task_id!r} is also used for meta-training "
                f"(as {twin!r}, same dataset, model and protocol); a held-out task must be unseen. "
                "Remove it from 'held_out' or from 'meta_train'/'meta_val'."
            )


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return parse_config(raw)
