"""Every loop in docs/schedulers.md runs as written, and names a registered scheduler."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from metalr.schedulers import REGISTRY

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "schedulers.md").read_text(), flags=re.S)


def test_the_docs_show_every_scheduler_but_the_meta_scheduler():
    shown = {name for block in BLOCKS for name in re.findall(r'build_scheduler\("([\w-]+)"', block)}
    documented = set(re.findall(r"^## (.+)$", (REPO / "docs" / "schedulers.md").read_text(), flags=re.M))
    names = {name for title in documented for name in re.findall(r"[\w-]+", title)}
    assert {name for name, entry in REGISTRY.items() if entry.kind != "meta"} <= names | shown


@pytest.mark.parametrize("block", BLOCKS, ids=[re.findall(r'build_scheduler\("([\w-]+)"', b)[0] for b in BLOCKS])
def test_each_documented_loop_runs(block):
    assert len(block.strip().splitlines()) <= 20
    exec(compile(block, "docs/schedulers.md", "exec"), {})
