"""README's own-loop example runs as printed through the shipped pretrained default."""

from __future__ import annotations

import math
import re

import pytest
import torch
from meta_fixtures import cosine_lrs, fitted_checkpoint

from metalr.schedulers import MetaScheduler

SECTION = "## Use a fitted meta-scheduler in your own loop"
PRETRAINED = '"default"'


def _code_blocks(readme: str) -> list[str]:
    """The ```python blocks of README's own-loop section, in order."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def snippet(repo) -> str:
    return _code_blocks((repo / "README.md").read_text())[0]


def _run(snippet: str, monkeypatch, checkpoint=None) -> tuple[list[float], dict]:
    """Execute the snippet (on ``checkpoint`` instead of the shipped default when given);
    returns the LR of every update and the snippet's namespace."""
    assert snippet.count(PRETRAINED) == 1
    lrs: list[float] = []
    step = MetaScheduler.step

    def recording(self, *args, **kwargs):
        if self.last_epoch >= 0:  # not the constructor's initial step
            lrs.append(self.get_last_lr()[0])  # the LR the update just made used
        step(self, *args, **kwargs)

    monkeypatch.setattr(MetaScheduler, "step", recording)
    torch.manual_seed(0)
    namespace: dict = {}
    code = snippet if checkpoint is None else snippet.replace(PRETRAINED, repr(str(checkpoint)))
    exec(compile(code, "README.md", "exec"), namespace)
    monkeypatch.undo()
    return lrs, namespace


def test_the_readme_loop_is_at_most_20_lines(snippet):
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 20


def test_the_readme_loop_on_the_pretrained_default_rarely_falls_back_and_leavescosine_lrs(snippet, monkeypatch, capsys):
    lrs, namespace = _run(snippet, monkeypatch)
    scheduler, budget = namespace["scheduler"], namespace["budget"]
    assert scheduler.last_epoch == budget and len(lrs) == budget
    assert scheduler.decisions > 10
    print(f"fallback rate {scheduler.fallback_rate:.3f} over {scheduler.decisions} decisions")
    assert scheduler.fallback_rate < 0.05
    assert "fallback rate" in capsys.readouterr().out  # the snippet prints it
    assert all(math.isfinite(lr) and lr >= 0 for lr in lrs)
    assert lrs != pytest.approx(cosine_lrs(lrs[0], budget), rel=1e-3)


def test_the_readme_loop_follows_cosine_with_an_untrained_checkpoint(snippet, tmp_path, monkeypatch):
    lrs, namespace = _run(snippet, monkeypatch, fitted_checkpoint(tmp_path / "ckpt"))
    assert lrs == pytest.approx(cosine_lrs(lrs[0], namespace["budget"]), rel=1e-12, abs=1e-15)


def test_the_readme_loops_features_move_a_fitted_schedule(snippet, tmp_path, monkeypatch):
    """With weights that read the inputs, the loop's measured features reach the model."""
    checkpoint = fitted_checkpoint(tmp_path / "ckpt", random_weights=True)
    lrs, namespace = _run(snippet, monkeypatch, checkpoint)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lrs[0])
    blind = MetaScheduler.from_pretrained(checkpoint, optimizer, namespace["budget"])
    blind_lrs = []
    for _ in lrs:
        blind_lrs.append(blind.get_last_lr()[0])
        blind.observe()  # progress and LR only, no run state
        optimizer.step()
        blind.step()
    assert lrs != pytest.approx(blind_lrs, rel=1e-3)
    assert {"grad_norm", "upd_ratio", "grad_cos_prev", "loss_ema", "val_loss"} <= set(
        namespace["scheduler"].inputs.first
    )


def test_the_readme_hugging_face_import_resolves(repo):
    hf_block = _code_blocks((repo / "README.md").read_text())[1]
    imports = "\n".join(line for line in hf_block.splitlines() if line.startswith("from metalr"))
    namespace: dict = {}
    exec(imports, namespace)
    assert callable(namespace["meta_scheduler_for_trainer"])
