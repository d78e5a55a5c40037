"""The wheel: what it ships, and a wheel install outside the checkout validating configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def wheel(repo, tmp_path_factory) -> Path:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    for folder in ("metalr", "config"):
        shutil.copytree(repo / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("metalr-*.whl")
    return built


def test_the_wheel_ships_every_package_the_schema_and_the_configs(repo, wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(repo)) for p in (repo / "metalr").rglob("__init__.py")}
    missing = {p for p in packages if f"{p}/__init__.py" not in names}
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert "metalr/schemas/config.schema.yaml" in names
    assert {f"metalr/configs/{p.name}" for p in (repo / "config").glob("*.yaml")} <= names
    shipped = {str(p.relative_to(repo)) for p in (repo / "metalr" / "pretrained").rglob("*") if p.is_file()}
    assert shipped <= names


def test_a_wheel_install_validates_a_config_outside_the_checkout(repo, wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # The CLI's validate needs only the config's own dependencies: no torch, which keeps
    # this test to seconds (tests/test_cli.py checks that validate does not import torch).
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True)
    subprocess.run([*pip, "pyyaml", "jsonschema", "numpy"], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    work = tmp_path / "elsewhere"
    work.mkdir()
    config = work / "mine.yaml"
    shutil.copy(repo / "config" / "smoke.yaml", config)

    def metalr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(env_dir / "bin" / "metalr"), *args], cwd=work, env=env, capture_output=True, text=True
        )

    proc = metalr("validate", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config OK: 3 tasks")
    proc = metalr("validate")  # no config/ here: the one shipped in the package
    assert proc.returncode == 0 and proc.stdout.startswith("config OK"), proc.stderr
    raw = yaml.safe_load(config.read_text())
    raw["device"] = "tpu"
    config.write_text(yaml.safe_dump(raw))
    proc = metalr("validate", "--config", str(config))
    assert proc.returncode == 2 and "config field 'device'" in proc.stderr and "Traceback" not in proc.stderr
    proc = metalr("schedulers")
    assert proc.returncode == 0 and "cosine" in proc.stdout, proc.stderr
    proc = metalr("inspect", str(work))  # a pipeline command: polars is in the [pipeline] extra
    assert proc.returncode == 2 and "pip install 'metalr[pipeline]'" in proc.stderr, proc.stderr


PIPELINE_ONLY = (
    "snakemake", "polars", "sklearn", "scipy", "statsmodels", "matplotlib", "datasets", "transformers",
    "accelerate", "torchvision", "mlxtend", "jiwer", "soundfile", "markdown_it", "tokenizers", "lightning",
)  # fmt: skip


def test_the_scheduler_path_runs_without_the_pipeline_packages(tmp_path):
    """What a core install (no extras) offers: every scheduler, the meta-scheduler from a checkpoint, its inputs."""
    # torch._dynamo probes optional packages with find_spec when an optimizer is first built:
    # imported before the blocker, it sees the environment as it is.
    code = f"""
import importlib.abc, sys
import torch, torch._dynamo
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PIPELINE_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in a core install)", name=name)
sys.meta_path.insert(0, Absent())
sys.path.insert(0, {str(Path(__file__).parent)!r})
from meta_fixtures import fitted_checkpoint
from metalr.features.basic import LossEMA
from metalr.schedulers import REGISTRY, MetaScheduler, build_scheduler
for name, entry in REGISTRY.items():
    if entry.build is not None and entry.optimizer is None:  # the peers that own the optimizer replace it
        build_scheduler(name, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 10)
optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
scheduler = MetaScheduler.from_pretrained(fitted_checkpoint({str(tmp_path / "ckpt")!r}), optimizer, 10)
ema = LossEMA()
for step in range(1, 11):
    scheduler.observe({{"step": step, "loss_train": 1.0, "loss_ema": ema.update(1.0)}})
    optimizer.step()
    scheduler.step()
print(scheduler.get_last_lr()[0], scheduler.fallback_rate)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
