"""The meta-learners a pipeline fits: the main model, other architectures, controls and ablations.

Every variant is fitted on the same labelled states and evaluated exactly like the main
model; only its architecture, its inputs, or (for the shuffled control) the pairing of
inputs with labels differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from metalr.config import MetaConfig
from metalr.meta.inputs import AVAILABILITY, FEATURE_GROUPS, INPUT_FEATURES, MAIN_GROUPS, PROGRESS_ONLY_FEATURES
from metalr.schedulers import META
from metalr.schedulers.registry import DEPLOYMENTS, LOSS_ONLY, Deployment

PROGRESS_ONLY = "meta-progress-only"
SHUFFLED = "meta-shuffled"
__all__ = [
    "DEPLOYMENTS",
    "LOSS_ONLY",
    "PROGRESS_ONLY",
    "SHUFFLED",
    "Deployment",
    "MetaVariant",
    "meta_variants",
    "variant",
]


@dataclass(frozen=True)
class MetaVariant:
    name: str  # the scheduler name in runs.parquet
    arch: str
    features: tuple[str, ...]
    role: str  # main, architecture, control or ablation
    about: str
    shuffled: bool = False


def meta_variants(cfg: MetaConfig) -> list[MetaVariant]:
    # Imported here: the evaluation and report steps read the variants but need no torch model.
    from metalr.meta.model import ARCHITECTURE_LABELS

    label = ARCHITECTURE_LABELS[cfg.arch]
    variants = [MetaVariant(META, cfg.arch, INPUT_FEATURES, "main", f"{label} on the run-state inputs")]
    variants += [
        MetaVariant(f"{META}-{arch}", arch, INPUT_FEATURES, "architecture", f"{ARCHITECTURE_LABELS[arch]}, same inputs")
        for arch in cfg.architectures
        if arch != cfg.arch
    ]
    if cfg.controls:
        variants += [
            MetaVariant(
                PROGRESS_ONLY, cfg.arch, PROGRESS_ONLY_FEATURES, "control", "inputs: progress and log(lr/base)"
            ),
            MetaVariant(SHUFFLED, cfg.arch, INPUT_FEATURES, "control", "inputs permuted across runs", shuffled=True),
        ]
    if cfg.ablations:
        variants += [
            MetaVariant(
                f"{META}-no-{group}",
                cfg.arch,
                tuple(f for f in INPUT_FEATURES if f not in (*FEATURE_GROUPS[group], AVAILABILITY[group])),
                "ablation",
                f"without the {group} inputs",
            )
            for group in MAIN_GROUPS
        ]
        variants.append(
            MetaVariant(
                f"{META}-plus-resources",
                cfg.arch,
                INPUT_FEATURES + FEATURE_GROUPS["resources"],
                "ablation",
                "with the resource inputs (task- and machine-identifying)",
            )
        )
    return variants


def variant(cfg: MetaConfig, name: str) -> MetaVariant:
    by_name = {v.name: v for v in meta_variants(cfg)}
    if name not in by_name:
        raise ValueError(f"unknown meta-learner variant {name!r}; this config fits: {', '.join(by_name)}")
    return by_name[name]
