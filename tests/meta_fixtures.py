"""The one place tests build a meta-scheduler checkpoint.

Tests of code that only uses ``MetaScheduler.from_pretrained`` go through
``fitted_checkpoint``, so a change of the checkpoint format or of the meta-learner's
constructor is adapted here once.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from metalr.config import MetaConfig
from metalr.meta.checkpoint import save_checkpoint
from metalr.meta.inputs import INPUT_FEATURES
from metalr.meta.model import ARCHITECTURES

TEST_META = MetaConfig(arch="lstm", hidden=8, layers=1, lr=0.01, epochs=1, patience=1, decision_fraction=0.1, seed=0)


def fitted_checkpoint(directory: str | Path, random_weights: bool = False, **meta: object) -> Path:
    """Save a meta-scheduler checkpoint the way the pipeline's fit rule does, without fitting.

    Untrained (the default), the zero-initialised head makes it exactly cosine. With
    ``random_weights`` every parameter is drawn at random, so its decisions depend on the
    features it observes: tests use that to see whether features reach it.
    ``meta`` overrides fields of ``TEST_META`` (arch, hidden, decision_fraction, ...).
    """
    config = replace(TEST_META, **meta)
    torch.manual_seed(config.seed)
    model = ARCHITECTURES[config.arch](len(INPUT_FEATURES), config.hidden, config.layers)
    if random_weights:
        for parameter in model.parameters():
            torch.nn.init.normal_(parameter, std=0.5)
    save_checkpoint(model, {**asdict(config), "features": list(INPUT_FEATURES)}, directory)
    return Path(directory)


def cosine_lrs(base_lr: float, budget: int) -> list[float]:
    """The LR of each of ``budget`` updates under torch's ``CosineAnnealingLR(T_max=budget)``."""
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=budget)
    lrs = []
    for _ in range(budget):
        lrs.append(cosine.get_last_lr()[0])
        reference.step()
        cosine.step()
    return lrs
