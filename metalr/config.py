"""Typed, validated pipeline configuration.

The JSON schema ``metalr/schemas/config.schema.yaml`` (package data, so a wheel install
validates too) is the single source of truth for field names,
allowed values and defaults; this module turns a validated dict into dataclasses and
adds the cross-field checks a schema cannot express.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metalr.tasks.registry import (
    BUILTIN_SOURCES,
    KIND_METRICS,
    MODEL_FAMILIES,
    SOURCE_MODALITY,
    families_for,
    modality_kind,
)

SCHEMA_RESOURCE = importlib.resources.files("metalr.schemas") / "config.schema.yaml"
# Together these declare a config's task catalogue. A config (or --config) that gives any of
# them replaces all three and the default's splits, which name the default's tasks: it never
# inherits tasks, families, datasets or split entries it did not declare.
CATALOGUE_KEYS = ("tasks", "families", "datasets")
PHASES = ("collect", "metaval", "eval")
PROTOCOL_FIELDS = ("optimizer", "batch_size", "base_lr", "weight_decay", "budget_steps", "val_every", "probes")
DATA_FIELDS = ("subset", "label_noise")
NAME_DESCRIPTION = "a task, dataset or family name"  # the schema's $defs/name


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the config."""


def stable_hash(payload: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable value that does not depend on key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _normalise_numbers(spec: Any) -> None:
    """Store every field declared ``float`` as a float, so ``0`` and ``0.0`` (YAML reads both) are one value.

    Hashes of a spec (the leakage guard, run ids) see its canonical form: numbers by their
    declared type, defaults filled in, keys sorted. Without this a renamed copy of a task with
    ``weight_decay: 0`` instead of ``0.0`` hashed differently and passed the leakage guard.
    """
    for f in fields(spec):
        value = getattr(spec, f.name)
        if f.type in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(spec, f.name, float(value))


@dataclass(frozen=True)
class ModelSpec:
    family: str
    width: int = 64
    depth: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _normalise_numbers(self)


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
    curvature_tol: float = 0.01
    curvature_max_iters: int = 20
    hutchinson_samples: int = 1
    uncertainty_every: int | None = None  # None: at every validation
    uncertainty_examples: int = 256
    mc_passes: int = 8
    resources_every: int = 10


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and how it is preprocessed; ``source='builtin'`` for embedded ones."""

    name: str
    source: str
    modality: str
    path: str = ""
    config_name: str | None = None
    data_files: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    max_train: int | None = None
    max_eval: int | None = None
    tokenizer: str = "wordpiece"
    vocab_size: int = 8000
    max_length: int = 64
    image_size: int | None = None
    augment: bool = False
    window: int | None = None
    horizon: int = 1
    stride: int = 1
    scale: str = "diff_std"
    sample_rate: int = 16000
    n_mels: int = 40

    @property
    def kind(self) -> str:
        return modality_kind(self.modality)

    def describe(self) -> str:
        """One line saying where the data comes from."""
        if self.source == "builtin":
            return BUILTIN_SOURCES[self.name][1]
        if self.source == "hub":
            return f"hub:{self.path}" + (f"/{self.config_name}" if self.config_name else "")
        return f"{self.source}:{self.path}"


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
    subset: float = 1.0
    label_noise: float = 0.0

    def __post_init__(self) -> None:
        _normalise_numbers(self)

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


# The normalised score is the ratio to this scheduler at the task's default base LR.
REFERENCE_SCHEDULER = "cosine"


@dataclass(frozen=True)
class EvalConfig(RunGrid):
    default_lr_only: tuple[str, ...] = ()
    lr_ratio: float = 3.0
    lr_steps: int = 1
    bootstrap_resamples: int = 2000

    @property
    def lr_multipliers(self) -> tuple[float, ...]:
        """The log-spaced base-LR grid of the externally tuned framing, as multiples of the default."""
        return tuple(self.lr_ratio**k for k in range(-self.lr_steps, self.lr_steps + 1))


@dataclass(frozen=True)
class CollectConfig(RunGrid):
    lr_spread: float = 1.5

    def lr_multiplier(self, task_id: str, scheduler: str, seed: int) -> float:
        """10^U(-lr_spread, lr_spread), a pure function of the run's identity."""
        if self.lr_spread == 0:
            return 1.0
        unit = int(stable_hash([task_id, scheduler, seed], 12), 16) / 16**12
        return float(round(10 ** (self.lr_spread * (2 * unit - 1)), 6))


@dataclass(frozen=True)
class BranchConfig:
    points: int = 4
    multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    hold_fraction: float = 0.1
    seeds: int = 2


@dataclass(frozen=True)
class MetaConfig:
    arch: str = "lstm"
    hidden: int = 64
    layers: int = 1
    lr: float = 0.003
    epochs: int = 150
    patience: int = 25
    decision_fraction: float = 0.02
    seed: int = 0
    input_dropout: float = 0.25
    label_temperatures: tuple[float, ...] = ()
    architectures: tuple[str, ...] = ("gru", "lstm", "transformer")
    controls: bool = True
    ablations: bool = True
    dagger_rounds: int = 1
    fallback_z: float = 6.0
    branching: BranchConfig = BranchConfig()
    search_hidden: tuple[int, ...] = ()
    search_lr: tuple[float, ...] = ()

    def search_points(self) -> list[MetaConfig]:
        """The (hidden, lr) grid to fit, as configs; just this one without ``search``."""
        hidden = self.search_hidden or (self.hidden,)
        lrs = self.search_lr or (self.lr,)
        return [replace(self, hidden=h, lr=lr) for h in hidden for lr in lrs]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MetaConfig:
        raw = dict(raw)
        branching = dict(raw.pop("branching", {}))
        if "multipliers" in branching:
            branching["multipliers"] = tuple(branching["multipliers"])
        if "architectures" in raw:
            raw["architectures"] = tuple(raw["architectures"])
        if "label_temperatures" in raw:
            raw["label_temperatures"] = tuple(raw["label_temperatures"])
        search = raw.pop("search", {})
        return cls(
            **raw,
            branching=BranchConfig(**branching),
            search_hidden=tuple(search.get("hidden", ())),
            search_lr=tuple(search.get("lr", ())),
        )


@dataclass(frozen=True)
class PipelineConfig:
    split_seed: int
    val_fraction: float
    test_fraction: float
    device: str
    divergence_factor: float
    loss_ema_beta: float
    checkpoint_every: int
    checkpoint_min_interval_s: float
    gpu_per_job: int
    threads: int
    results: str
    tasks: dict[str, TaskSpec]
    dataset_specs: dict[str, DatasetSpec]
    meta_train: tuple[str, ...]
    meta_val: tuple[str, ...]
    held_out: tuple[str, ...]
    collect: CollectConfig
    evaluate: EvalConfig
    meta: MetaConfig

    def phase_tasks(self, phase: str) -> tuple[str, ...]:
        return {"collect": self.meta_train, "metaval": self.meta_val, "eval": self.held_out}[base_phase(phase)]

    def phase_grid(self, phase: str) -> RunGrid:
        return self.evaluate if phase == "eval" else self.collect

    def collection_phases(self, base: str, up_to_round: int | None = None) -> list[str]:
        """``base`` (collect or metaval) and its on-policy DAgger rounds up to ``up_to_round`` (default: all)."""
        last = self.meta.dagger_rounds if up_to_round is None else up_to_round
        return [base] + [on_policy_phase(base, r) for r in range(1, last + 1)]

    def task(self, task_id: str) -> TaskSpec:
        if task_id not in self.tasks:
            raise ConfigError(f"unknown task {task_id!r}; the config defines: {', '.join(sorted(self.tasks))}")
        return self.tasks[task_id]

    def datasets(self) -> tuple[str, ...]:
        used = {self.tasks[t].dataset for p in PHASES for t in self.phase_tasks(p)}
        return tuple(sorted(used))

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.dataset_specs:
            raise ConfigError(f"unknown dataset {name!r}; the config uses: {', '.join(sorted(self.dataset_specs))}")
        return self.dataset_specs[name]


def on_policy_phase(base: str, round: int) -> str:
    """The phase of DAgger round ``round``'s runs: the meta-scheduler of round - 1 on ``base``'s tasks."""
    return f"{base}-r{round}"


def base_phase(phase: str) -> str:
    """collect-r2 -> collect; the phase whose tasks a (possibly on-policy) phase runs."""
    return phase.split("-r")[0]


def phase_round(phase: str) -> int:
    return int(phase.split("-r")[1]) if "-r" in phase else 0


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema (filling defaults in place) and return the dict."""
    import jsonschema

    try:
        _defaulting_validator().validate(raw)
    except jsonschema.ValidationError as err:
        raise ConfigError(_schema_message(raw)) from err
    return raw


@functools.cache
def config_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_RESOURCE.read_text())


def _defaulting_validator():
    """A Draft 2020-12 validator that fills each property's ``default`` before checking it.

    The recipe of the jsonschema FAQ, as ``snakemake.utils.validate(set_default=True)`` applies
    it; done here with jsonschema alone so that a core install (no Snakemake) validates too.
    """
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": fill_defaults})(config_schema())


def _schema_message(raw: dict[str, Any]) -> str:
    import jsonschema  # lazy: only the error path needs it

    validator = jsonschema.Draft202012Validator(config_schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    lines = []
    for error in errors[:10]:
        where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        hint = ""
        if error.validator == "additionalProperties" and isinstance(error.schema.get("properties"), dict):
            hint = f"; allowed fields: {', '.join(error.schema['properties'])}"
        elif error.validator == "type" and _yaml_number_text(error.instance):
            hint = (
                f"; YAML reads {error.instance!r} as text (YAML 1.1 needs a dot and a signed exponent): "
                f"write {_yaml_float(float(error.instance))}"
            )
        elif error.validator == "pattern" and error.schema.get("description") == NAME_DESCRIPTION:
            hint = "; a name starts with a letter or digit and holds only letters, digits, '.', '_' and '-'"
        lines.append(f"config field '{where}': {error.message}{hint}")
    return "invalid config:\n  " + "\n  ".join(lines or ["schema validation failed"])


# A task family's sampled fields: many cheap variants of one task, drawn from a seed, so meta-training sees variety.
FAMILY_MODEL_FIELDS = ("width", "depth")
FAMILY_TASK_FIELDS = ("batch_size", "base_lr", "optimizer", "subset", "label_noise", "budget_steps")


def expand_family(base: TaskSpec, sample: Mapping[str, Sequence[Any]], count: int, seed: int) -> list[TaskSpec]:
    """``count`` variants of ``base``, ids ``<base id>-00`` ..., each field drawn uniformly from ``sample``.

    The draw depends on ``seed`` and the family's name only, so adding a family to a config
    never changes the variants of another.
    """
    rng = np.random.default_rng([seed, zlib.crc32(base.task_id.encode())])
    variants = []
    for i in range(count):
        drawn = {name: values[int(rng.integers(len(values)))] for name, values in sorted(sample.items())}
        model = replace(base.model, **{k: v for k, v in drawn.items() if k in FAMILY_MODEL_FIELDS})
        task_fields = {k: v for k, v in drawn.items() if k in FAMILY_TASK_FIELDS}
        variants.append(replace(base, task_id=f"{base.task_id}-{i:02d}", model=model, **task_fields))
    return variants


def _yaml_number_text(value: Any) -> bool:
    """A string that Python reads as a number, such as ``1e9`` (which PyYAML keeps as text)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _yaml_float(value: float) -> str:
    """``value`` as YAML 1.1 reads a float: 1e9 -> 1.0e+9, 0.001 -> 1.0e-3."""
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0")
    return f"{mantissa}0e{int(exponent):+d}" if mantissa.endswith(".") else f"{mantissa}e{int(exponent):+d}"


def parse_config(raw: dict[str, Any]) -> PipelineConfig:
    """Validate ``raw`` and build the typed config; raises ConfigError on any problem."""
    raw = validate_config(raw)
    dataset_specs = {name: _dataset_spec(name, entry) for name, entry in raw["datasets"].items()}
    tasks = {task_id: _task_spec(task_id, entry, raw["defaults"]) for task_id, entry in raw["tasks"].items()}
    family_members: dict[str, list[str]] = {}
    for name, family in raw["families"].items():
        if name in tasks:
            raise ConfigError(f"config field 'families.{name}': a task has the same name; rename one of them")
        base = _task_spec(name, family["task"], raw["defaults"], where=f"families.{name}.task")
        for size in ("width", "depth"):
            for value in family["sample"].get(size, []):
                _check_size(f"families.{name}.sample", base.model.family, size, value)
        variants = expand_family(base, family["sample"], family["count"], family["seed"])
        for variant in variants:
            if variant.task_id in tasks:
                raise ConfigError(f"config field 'families.{name}': variant id {variant.task_id!r} is also a task")
            tasks[variant.task_id] = variant
        family_members[name] = [v.task_id for v in variants]
    if not tasks:
        raise ConfigError("config field 'tasks': declare at least one task (or a task family under 'families')")
    for task in tasks.values():
        if task.dataset not in dataset_specs:
            dataset_specs[task.dataset] = _builtin_dataset(task)
    for task in tasks.values():
        _check_model_fits(task, dataset_specs[task.dataset])
    splits = {key: _expand(value, family_members) for key, value in raw["splits"].items()}
    config = PipelineConfig(
        split_seed=raw["split_seed"],
        val_fraction=raw["split_fractions"]["val"],
        test_fraction=raw["split_fractions"]["test"],
        device=raw["device"],
        divergence_factor=raw["divergence_factor"],
        loss_ema_beta=raw["loss_ema_beta"],
        checkpoint_every=raw["checkpoint_every"],
        checkpoint_min_interval_s=raw["checkpoint_min_interval_s"],
        gpu_per_job=raw["resources"]["gpu"],
        threads=raw["resources"]["threads"],
        results=raw["results"],
        tasks=tasks,
        dataset_specs=dataset_specs,
        meta_train=tuple(splits["meta_train"]),
        meta_val=tuple(splits["meta_val"]),
        held_out=tuple(splits["held_out"]),
        collect=CollectConfig(
            tuple(raw["collect"]["schedulers"]), raw["collect"]["seeds"], lr_spread=raw["collect"]["lr_spread"]
        ),
        evaluate=EvalConfig(
            tuple(raw["evaluate"]["schedulers"]),
            raw["evaluate"]["seeds"],
            default_lr_only=tuple(raw["evaluate"]["default_lr_only"]),
            lr_ratio=raw["evaluate"]["lr_grid"]["ratio"],
            lr_steps=raw["evaluate"]["lr_grid"]["steps"],
            bootstrap_resamples=raw["evaluate"]["bootstrap_resamples"],
        ),
        meta=MetaConfig.from_dict(raw["meta"]),
    )
    _check_splits(config)
    return config


def _task_spec(task_id: str, entry: dict[str, Any], defaults: dict[str, Any], where: str = "") -> TaskSpec:
    where = where or f"tasks.{task_id}"
    model = dict(entry["model"])
    family = MODEL_FAMILIES[model["family"]]
    for size in ("width", "depth"):
        _check_size(where, model["family"], size, model.get(size))
        model.setdefault(size, getattr(family, size) or 0)
    protocol = {f: entry.get(f, defaults[f]) for f in PROTOCOL_FIELDS}
    protocol["probes"] = ProbeConfig(**protocol["probes"])
    data = {f: entry[f] for f in DATA_FIELDS if f in entry}
    return TaskSpec(task_id=task_id, dataset=entry["dataset"], model=ModelSpec(**model), **protocol, **data)


def _check_size(where: str, family_name: str, size: str, value: int | None) -> None:
    family = MODEL_FAMILIES[family_name]
    if value is None:
        return
    if getattr(family, size) is None:
        raise ConfigError(
            f"config field '{where}.model.{size}': model family {family_name!r} has a fixed "
            f"architecture ({family.about}); remove '{size}'"
        )
    if size == "depth" and family.depths and value not in family.depths:
        raise ConfigError(
            f"config field '{where}.model.depth': {family_name!r} comes in depths "
            f"{', '.join(map(str, family.depths))}, not {value}"
        )


def _expand(task_list: list[str], family_members: dict[str, list[str]]) -> list[str]:
    """A split list may name a family: it stands for all the family's variants."""
    out: list[str] = []
    for name in task_list:
        out += family_members.get(name, [name])
    return out


def _builtin_dataset(task: TaskSpec) -> DatasetSpec:
    if task.dataset not in BUILTIN_SOURCES:
        raise ConfigError(
            f"config field 'tasks.{task.task_id}.dataset': {task.dataset!r} is neither a built-in dataset "
            f"({', '.join(sorted(BUILTIN_SOURCES))}) nor declared under 'datasets'"
        )
    return DatasetSpec(name=task.dataset, source="builtin", modality=BUILTIN_SOURCES[task.dataset][0])


def _dataset_spec(name: str, entry: dict[str, Any]) -> DatasetSpec:
    if name in BUILTIN_SOURCES:
        raise ConfigError(f"config field 'datasets.{name}': {name!r} is a built-in dataset; choose another name")
    entry = dict(entry)
    columns = entry.get("columns", {})
    modality = entry.pop("modality", None) or _infer_modality(entry["source"], columns)
    if modality is None:
        raise ConfigError(
            f"config field 'datasets.{name}.modality' is needed: the source {entry['source']!r} and columns "
            f"{sorted(columns)} do not say it; allowed: image, text, tabular, timeseries, audio"
        )
    entry["config_name"] = entry.pop("name", None)
    spec = DatasetSpec(name=name, modality=modality, **entry)
    _check_dataset(spec)
    return spec


def _infer_modality(source: str, columns: dict[str, Any]) -> str | None:
    if source in SOURCE_MODALITY:
        return SOURCE_MODALITY[source]
    for column, modality in (("image", "image"), ("audio", "audio"), ("text", "text"), ("value", "timeseries")):
        if column in columns:
            return modality
    if "id" in columns:
        return "timeseries"
    if "label" in columns or "features" in columns:
        return "tabular"
    return None


_NEEDED_COLUMNS = {
    "text": ("text", "label"),
    "tabular": ("label",),
    "audio": ("transcript",),
}


def _check_dataset(spec: DatasetSpec) -> None:
    where = f"datasets.{spec.name}"
    # Folder sources name the text or image column themselves and label by folder.
    needed = () if spec.source in ("text", "imagefolder", "idx") else _NEEDED_COLUMNS.get(spec.modality, ())
    for column in needed:
        if column not in spec.columns:
            raise ConfigError(f"config field '{where}.columns.{column}' is needed for a {spec.modality} dataset")
    if spec.modality == "image" and spec.source not in ("imagefolder", "idx") and "label" not in spec.columns:
        raise ConfigError(f"config field '{where}.columns.label' is needed for an image dataset from {spec.source!r}")
    allowed = KIND_METRICS[spec.kind]
    if spec.metric is not None and spec.metric not in allowed:
        raise ConfigError(
            f"config field '{where}.metric': {spec.metric!r} does not apply to a {spec.modality} dataset; "
            f"allowed: {', '.join(allowed)}"
        )


def _check_model_fits(task: TaskSpec, dataset: DatasetSpec) -> None:
    if dataset.modality not in MODEL_FAMILIES[task.model.family].modalities:
        raise ConfigError(
            f"config field 'tasks.{task.task_id}.model.family': {task.model.family!r} does not fit "
            f"{dataset.modality} dataset {dataset.name!r}; families for {dataset.modality}: "
            + ", ".join(families_for(dataset.modality))
        )
    if task.label_noise and dataset.kind != "classification":
        raise ConfigError(f"config field 'tasks.{task.task_id}.label_noise' applies to classification tasks only")


def _check_splits(config: PipelineConfig) -> None:
    if REFERENCE_SCHEDULER not in config.evaluate.schedulers:
        raise ConfigError(
            f"config field 'evaluate.schedulers': add {REFERENCE_SCHEDULER!r}; the normalised score of every "
            f"scheduler is its ratio to {REFERENCE_SCHEDULER} at the task's default base LR"
        )
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


def overlay(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, as Snakemake merges --configfile and --config.

    Mappings merge key by key and anything else, lists included, is replaced. The task
    catalogue (CATALOGUE_KEYS) is the exception: an override that gives any of its keys
    replaces all of them and ``splits``. Neither argument is modified.
    """
    merged = copy.deepcopy(base)
    if any(key in override for key in CATALOGUE_KEYS):
        for key in (*CATALOGUE_KEYS, "splits"):
            merged.pop(key, None)
    return _merge(merged, override)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's own mapping, not yet overlaid or validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return raw


def with_default(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` overlaid on the embedded default (config/config.yaml): what the pipeline runs.

    Text where the schema wants a number, boolean or list is read as YAML first: Snakemake
    hands nested ``--config`` values over as text (``evaluate='{seeds: 3}'`` gives ``'3'``).
    """
    schema = config_schema()
    return overlay(read_config_file(default_config_path()), _typed(raw, schema, schema))


def default_config_path() -> Path:
    """The embedded default, what every other config overlays: config/config.yaml of the checkout,
    or the copy a wheel install ships as package data."""
    checkout = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
    shipped = importlib.resources.files("metalr") / "configs" / "config.yaml"
    return checkout if checkout.is_file() else Path(str(shipped))


def _typed(value: Any, node: dict[str, Any], schema: dict[str, Any]) -> Any:
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/").split("/")
        target = functools.reduce(lambda n, key: n[key], ref, schema)
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(value, dict):
        extra = node.get("additionalProperties")
        fallback = extra if isinstance(extra, dict) else {}
        return {k: _typed(v, node.get("properties", {}).get(k, fallback), schema) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v, node.get("items", {}), schema) for v in value]
    types = node.get("type", [])
    if isinstance(value, str) and types and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-3 (no dot) as text
            try:
                return float(value)
            except ValueError:
                return value
        return _typed(parsed, node, schema)
    return value


def load_config(path: str | Path) -> PipelineConfig:
    """The config file at ``path`` overlaid on the embedded default, as ``snakemake --configfile`` reads it."""
    return parse_config(with_default(read_config_file(path)))
