"""Careless or hostile input (issue 17): names that climb out of results/, unsafe names,
labels as users write them, tampered meta checkpoints, broken data files.

docs/faults.md lists these cases; each row there names its test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from metalr.config import ConfigError, parse_config
from metalr.paths import PathEscapeError, ResultsLayout
from metalr.resume import RunCheckpoints

EVIL_SED = [
    "sed",
    "-e",
    's|^  digits-mlp:|  "../../../..":|',
    "-e",
    's|meta_train: \\[digits-mlp\\]|meta_train: ["../../../.."]|',
]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def _metalr(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "metalr", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_the_issue_reproduction_exits_2_and_touches_nothing_outside_results(tmp_path):
    # Four folders deep, so that ../../../.. is still inside tmp_path where the tree is compared.
    work = tmp_path / "a" / "b" / "c" / "d"
    work.mkdir(parents=True)
    evil = work / "evil.yaml"
    evil.write_text(
        subprocess.run(
            [*EVIL_SED, str(REPO / "config" / "smoke.yaml")], capture_output=True, text=True, check=True
        ).stdout
    )
    assert '"../../../..":' in evil.read_text()
    (work / "results").mkdir()
    (work / "results" / "KEEP").write_text("")
    (tmp_path / "outside.txt").write_text("not metalr's")
    before = _tree(tmp_path)
    prepare = _metalr(work, "--config", "evil.yaml", "prepare-data", "--dataset", "digits")
    train = _metalr(work, "--config", "evil.yaml", "train-runs", "--phase", "collect", "--task", "../../../..")
    for proc in (prepare, train):
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "'../../../..' does not match '^[A-Za-z0-9][A-Za-z0-9._-]*" in proc.stderr
        assert "a name starts with a letter or digit" in proc.stderr
    assert _tree(tmp_path) == before


UNSAFE_NAMES = ["../../../..", "", "a/b", "a\n", "$(touch x)", "`id`", "a|b(c", " spaced"]


@pytest.mark.parametrize("where", ["tasks", "datasets", "families"])
@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_unsafe_names_are_refused_showing_the_pattern(name, where):
    raw = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    if where == "tasks":
        raw["tasks"][name] = raw["tasks"].pop("digits-mlp")
        raw["splits"]["meta_train"] = [name]
    elif where == "datasets":
        raw["datasets"] = {name: {"source": "csv", "path": "x.csv", "columns": {"label": "y"}}}
    else:
        raw["families"] = {name: {"task": raw["tasks"]["digits-mlp"], "count": 2}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert f"config field '{where}': {name!r} does not match '^[A-Za-z0-9][A-Za-z0-9._-]*" in str(err.value)


def test_a_results_path_built_from_a_name_must_lie_inside_results(tmp_path):
    layout = ResultsLayout(str(tmp_path / "results"))
    assert layout.trajectories("collect", "digits-mlp").startswith(str(tmp_path / "results"))
    for build in (
        lambda: layout.trajectories("collect", "../../../../.."),
        lambda: layout.data("../../elsewhere"),
        lambda: layout.log("../../../outside"),
        lambda: layout.checkpoint("../..", 0),
    ):
        with pytest.raises(PathEscapeError, match="outside the results folder"):
            build()


def test_clearing_a_resume_folder_refuses_a_folder_holding_anything_but_run_checkpoints(tmp_path):
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "KEEP").write_text("")
    (precious / "r.ckpt").write_text("")
    (precious / "resume" / "phase=collect" / "task=x").mkdir(parents=True)
    for directory in (precious, precious / "resume" / "phase=collect" / "task=x" / ".." / ".." / ".."):
        with pytest.raises(PathEscapeError, match="refusing to remove .*KEEP"):
            RunCheckpoints(directory, 0).clear()
    assert (precious / "KEEP").exists()
    resume = precious / "resume" / "phase=collect" / "task=digits-mlp"
    resume.mkdir(parents=True)
    for name in ("r.ckpt", "s.done", ".s.done.x1y2.tmp"):
        (resume / name).write_text("")
    RunCheckpoints(resume, 0).clear()
    assert not resume.exists() and (precious / "KEEP").exists()
