"""The pretrained default ships intact, loads by name, and `metalr export-pretrained` regenerates one."""

from __future__ import annotations

import json

import pytest
import torch
from meta_fixtures import fitted_checkpoint

from metalr.cli import main
from metalr.config import stable_hash
from metalr.meta.checkpoint import CONFIG, WEIGHTS, CheckpointError
from metalr.meta.pretrained import SUMS, pretrained_root, verify_pretrained
from metalr.schedulers import MetaScheduler


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)


def test_the_shipped_default_matches_its_recorded_hashes_and_loads_by_name():
    directory = pretrained_root() / "default"
    verify_pretrained(directory)
    provenance = json.loads((directory / CONFIG).read_text())["provenance"]
    assert provenance["pipeline_config_hash"] == stable_hash(provenance["pipeline_config"], length=64)
    assert provenance["tasks"]["meta_train"] and provenance["commit"]
    assert (directory / WEIGHTS).stat().st_size < 200_000  # small enough to ship in the package
    scheduler = MetaScheduler.from_pretrained("default", _optimizer(), 100)
    assert scheduler.decision_every >= 1


def test_export_pretrained_writes_provenance_and_hashes_that_catch_an_edit(tmp_path, repo, capsys):
    checkpoint = fitted_checkpoint(tmp_path / "fitted", random_weights=True)
    target = tmp_path / "shipped"
    args = ["export-pretrained", str(checkpoint), "--config", str(repo / "config/smoke.yaml"), "--to", str(target)]
    assert main(args) == 0
    assert str(target) in capsys.readouterr().out
    verify_pretrained(target)
    provenance = json.loads((target / CONFIG).read_text())["provenance"]
    assert provenance["tasks"]["meta_train"] == ["digits-mlp"] and provenance["held_out_results"] is None
    MetaScheduler.from_pretrained(target, _optimizer(), 100)
    weights = bytearray((target / WEIGHTS).read_bytes())
    weights[-1] ^= 1
    (target / WEIGHTS).write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS} does not match its hash in .*{SUMS}"):
        verify_pretrained(target)


def test_an_unknown_pretrained_name_is_refused_naming_the_shipped_ones():
    with pytest.raises(CheckpointError, match="shipped name: .*default"):
        MetaScheduler.from_pretrained("no-such-checkpoint", _optimizer(), 100)
