"""README's own-loop example runs as printed, against a test checkpoint, and feeds real features."""

from __future__ import annotations

import re

import pytest
import torch
from meta_fixtures import fitted_checkpoint
from torch.optim.lr_scheduler import CosineAnnealingLR

from metalr.schedulers import MetaScheduler

SECTION = "## Use a fitted meta-scheduler in your own loop"
PLACEHOLDER = '"results/meta/round-1/meta"'


def _code_blocks(readme: str) -> list[str]:
    """The ```python blocks of README's own-loop section, in order."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def snippet(repo) -> str:
    return _code_blocks((repo / "README.md").read_text())[0]


def _run(snippet: str, checkpoint, monkeypatch) -> tuple[list[dict], dict]:
    """Execute the snippet with its checkpoint path pointed at ``checkpoint``; returns observed rows, namespace."""
    assert snippet.count(PLACEHOLDER) == 1
    observed: list[dict] = []
    observe = MetaScheduler.observe

    def recording(self, features):
        observed.append(dict(features))
        observe(self, features)

    monkeypatch.setattr(MetaScheduler, "observe", recording)
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(snippet.replace(PLACEHOLDER, repr(str(checkpoint))), "README.md", "exec"), namespace)
    monkeypatch.undo()  # schedulers the test builds afterwards must not record into ``observed``
    return observed, namespace


def test_the_readme_loop_is_at_most_20_lines(snippet):
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 20


def test_the_readme_loop_runs_its_budget_and_passes_loss_gradient_and_validation_features(
    snippet, tmp_path, monkeypatch
):
    observed, namespace = _run(snippet, fitted_checkpoint(tmp_path / "ckpt"), monkeypatch)
    budget = namespace["budget"]
    assert namespace["scheduler"].last_epoch == budget
    assert [row["step"] for row in observed] == list(range(1, budget + 1))
    for key in ("loss_train", "loss_ema", "grad_norm", "lr"):
        assert all(isinstance(row[key], float) and row[key] > 0 for row in observed), key
    validated = [row["step"] for row in observed if "val_loss" in row]
    assert validated and len(validated) < budget / 5  # at intervals, not every step
    assert observed[-1]["loss_ema"] < observed[0]["loss_ema"]  # the toy model learns


def test_the_readme_loop_follows_cosine_with_an_untrained_checkpoint(snippet, tmp_path, monkeypatch):
    observed, namespace = _run(snippet, fitted_checkpoint(tmp_path / "ckpt"), monkeypatch)
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=observed[0]["lr"])
    cosine = CosineAnnealingLR(reference, T_max=namespace["budget"])
    expected = []
    for _ in observed:
        expected.append(cosine.get_last_lr()[0])
        reference.step()
        cosine.step()
    assert [row["lr"] for row in observed] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_the_readme_loops_features_move_a_fitted_schedule(snippet, tmp_path, monkeypatch):
    """With weights that read the inputs, the LR leaves cosine: the features the loop passes reach the model."""
    observed, namespace = _run(snippet, fitted_checkpoint(tmp_path / "ckpt", random_weights=True), monkeypatch)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=observed[0]["lr"])
    blind = MetaScheduler.from_pretrained(tmp_path / "ckpt", optimizer, namespace["budget"])
    blind_lrs = []
    for row in observed:
        blind_lrs.append(optimizer.param_groups[0]["lr"])
        blind.observe({"step": row["step"], "lr": row["lr"]})  # progress and LR only, no run state
        optimizer.step()
        blind.step()
    assert [row["lr"] for row in observed] != pytest.approx(blind_lrs, rel=1e-3)


def test_the_readme_hugging_face_import_resolves(repo):
    hf_block = _code_blocks((repo / "README.md").read_text())[1]
    imports = "\n".join(line for line in hf_block.splitlines() if line.startswith("from metalr"))
    namespace: dict = {}
    exec(imports, namespace)
    assert callable(namespace["meta_scheduler_for_trainer"])
