"""Careless or hostile input (issue 17): names that climb out of results/, unsafe names,
labels as users write them, tampered meta checkpoints, broken data files.

docs/faults.md lists these cases; each row there names its test.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TEST_CONFIG
from meta_fixtures import fitted_checkpoint
from safetensors.torch import load_file, save_file

from metalr.config import ConfigError, parse_config
from metalr.meta.checkpoint import CheckpointError, load_checkpoint
from metalr.paths import PathEscapeError, ResultsLayout
from metalr.resume import RunCheckpoints
from metalr.schedulers import MetaScheduler
from metalr.tasks import DataError

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


def _tamper_config(**changes):
    def tamper(directory: Path) -> None:
        path = directory / "config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | changes))

    return tamper


def _tamper_tensor(name: str, value: float):
    def tamper(directory: Path) -> None:
        path = directory / "model.safetensors"
        weights = load_file(str(path))
        weights[name] = torch.full_like(weights[name], value)
        save_file(weights, str(path))

    return tamper


TAMPERED = {
    "NaN weight": (_tamper_tensor("head.weight", math.nan), "model.safetensors: tensor 'head.weight' holds NaN"),
    "NaN input_std": (_tamper_tensor("input_std", math.nan), "tensor 'input_std' holds NaN or inf"),
    "zero input_std": (_tamper_tensor("input_std", 0.0), "'input_std' must be > 0"),
    "inf input_mean": (_tamper_tensor("input_mean", math.inf), "tensor 'input_mean' holds NaN or inf"),
    "unknown arch": (_tamper_config(arch="mamba"), "unknown meta-learner arch 'mamba'; known: gru, lstm, transformer"),
    "fallback_z as a string": (_tamper_config(fallback_z="nan"), "'fallback_z' must be a finite number > 0, got 'nan'"),
    "fallback_z NaN": (_tamper_config(fallback_z=math.nan), "'fallback_z' must be a finite number > 0, got nan"),
    "hidden as a string": (_tamper_config(hidden="8"), "'hidden' must be a positive integer, got '8'"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_meta_checkpoint_is_refused_on_load_naming_the_file(tmp_path, case):
    tamper, expected = TAMPERED[case]
    directory = fitted_checkpoint(tmp_path / "meta", random_weights=True)
    MetaScheduler.from_pretrained(directory, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 100)
    tamper(directory)
    with pytest.raises(CheckpointError, match=re.escape(expected)) as err:
        load_checkpoint(directory)
    assert str(directory) in str(err.value)


def test_an_eval_job_whose_meta_checkpoint_has_an_unknown_arch_exits_2_naming_it(tmp_path):
    raw = yaml.safe_load(TEST_CONFIG.read_text())
    raw["splits"] |= {"held_out": ["wine-mlp"], "meta_val": []}
    raw["evaluate"] |= {"schedulers": ["cosine"], "seeds": 1, "lr_grid": {"steps": 0}}
    raw["meta"] = raw["meta"] | {"controls": False, "ablations": False, "architectures": []}
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(raw))
    results = ResultsLayout(str(tmp_path / "results"))
    assert _metalr(tmp_path, "--config", str(config), "prepare-data", "--dataset", "wine").returncode == 0
    checkpoint = fitted_checkpoint(results.checkpoint("meta", 1))
    _tamper_config(arch="mamba")(checkpoint)
    proc = _metalr(tmp_path, "--config", str(config), "train-runs", "--phase", "eval", "--task", "wine-mlp")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "results/meta/round-1/meta/config.json: unknown meta-learner arch 'mamba'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Path(results.runs_part("eval", "wine-mlp")).exists()


def test_a_training_job_whose_runs_all_fail_raises_with_the_first_error(tmp_path, monkeypatch):
    from metalr import pipeline
    from metalr.config import load_config

    config = load_config(REPO / "config" / "smoke.yaml")
    layout = ResultsLayout(str(tmp_path / "results"))
    pipeline.prepare_data(config, "wine", layout.data("wine"))

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in every run")

    monkeypatch.setattr("metalr.train.train_run", broken)
    runs_out = layout.runs_part("metaval", "wine-mlp")
    with pytest.raises(
        pipeline.RunsFailedError, match="metaval/wine-mlp: all 4 runs failed; the first: .*a bug in every run"
    ):
        pipeline.train_runs(config, "metaval", "wine-mlp", layout.data("wine"), tmp_path / "t.parquet", runs_out)
    assert not Path(runs_out).exists()


# --- labels as users write them, and broken data files -----------------------------------


def _csv_dataset(tmp_path: Path, name: str, content: str, family: str = "mlp", **columns):
    path = tmp_path / f"{name}.csv"
    path.write_text(content)
    raw = {
        "datasets": {name: {"source": "csv", "path": str(path), "columns": columns or {"label": "y"}}},
        "tasks": {
            "t": {"dataset": name, "model": {"family": family}},
            "holdout": {"dataset": "digits", "model": {"family": "mlp", "width": 8}},
        },
        "splits": {"meta_train": ["t"], "held_out": ["holdout"]},
        "collect": {"schedulers": ["constant"], "seeds": 1},
        "evaluate": {"schedulers": ["cosine"], "seeds": 1},
    }
    return parse_config(raw).dataset(name), path


def _prepare(spec):
    from metalr.tasks import prepare_dataset

    return prepare_dataset(spec, 0, 0.15, 0.15)


def _table(labels, header="a,b,y") -> str:
    return header + "\n" + "".join(f"{i},{i % 7},{y}\n" for i, y in enumerate(labels))


def test_minus_one_and_one_labels_are_two_classes_and_no_row_is_lost(tmp_path):
    spec, _ = _csv_dataset(tmp_path, "signs", _table([-1, 1] * 100))
    data = _prepare(spec)
    assert data.info.class_names == ["-1", "1"] and data.info.n_classes == 2
    assert sum(len(data.y(s)) for s in ("train", "val", "test")) == 200
    assert set(data.y("train").tolist()) == {0, 1}


def test_only_empty_or_nan_labels_are_missing(tmp_path):
    # An empty cell makes pandas read the column as floats (1.0, 2.0, NaN): one row dropped, classes kept.
    labels = [1, 2, 3] * 40
    text = _table(labels).replace("\n5,5,3\n", "\n5,5,\n")
    spec, _ = _csv_dataset(tmp_path, "gappy", text)
    data = _prepare(spec)
    assert data.info.class_names == ["0", "1", "2", "3"]  # integer labels are class ids already
    assert sum(len(data.y(s)) for s in ("train", "val", "test")) == 119


def test_string_labels_are_classes(tmp_path):
    spec, _ = _csv_dataset(tmp_path, "words", _table(["cat", "dog", "-1"] * 30))
    assert _prepare(spec).info.class_names == ["-1", "cat", "dog"]


def test_a_single_class_training_split_is_refused_naming_dataset_and_column(tmp_path):
    spec, _ = _csv_dataset(tmp_path, "oneclass", _table([7] * 100))
    with pytest.raises(DataError, match=r"dataset 'oneclass': column 'y' holds 1 class \(7\) in the training split"):
        _prepare(spec)


def test_a_text_column_without_content_is_refused_naming_dataset_and_column(tmp_path):
    text = "review,y\n" + "".join(f'"",{i % 2}\n' for i in range(80))
    spec, _ = _csv_dataset(tmp_path, "blank", text, family="bilstm", text="review", label="y")
    with pytest.raises(DataError, match="dataset 'blank': text column 'review' is empty in every training row"):
        _prepare(spec)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.tobytes()


def _idx_folder(tmp_path: Path, damage) -> dict:
    folder = tmp_path / "idx"
    folder.mkdir()
    images = np.random.default_rng(0).integers(0, 255, (20, 4, 4)).astype(np.uint8)
    labels = (np.arange(20) % 2).astype(np.uint8)
    damage(folder, _idx_bytes(images))
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    return {"source": "idx", "path": str(folder)}


def _jpeg_folder(tmp_path: Path, damage) -> dict:
    from PIL import Image

    root = tmp_path / "images"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(root / label / f"{i}.jpg")
    damage(root / "a" / "3.jpg")
    return {"source": "imagefolder", "path": str(root)}


def _write_csv(tmp_path: Path, text: str) -> dict:
    (tmp_path / "table.csv").write_text(text)
    return {"source": "csv", "path": str(tmp_path / "table.csv"), "columns": {"label": "y"}}


BROKEN_DATA = {
    "empty CSV": (
        lambda tmp: _write_csv(tmp, ""),
        r"cannot read '.*table\.csv' \(datasets\.d\.path\) as csv: EmptyDataError: .*; the file is empty",
    ),
    "inf in a feature": (
        lambda tmp: _write_csv(tmp, _table([0, 1] * 30).replace("\n5,5,1\n", "\n5,inf,1\n")),
        r"table\.csv\): column 'b' holds inf in data row 5 of split 'train'",
    ),
    "a feature NaN in every row": (
        lambda tmp: _write_csv(tmp, "a,b,y\n" + "".join(f"{i},nan,{i % 2}\n" for i in range(60))),
        r"table\.csv\): column 'b' is missing \(NaN\) in every training row",
    ),
    "IDX truncated in its header": (
        lambda tmp: _idx_folder(tmp, lambda d, b: (d / "train-images-idx3-ubyte").write_bytes(b[:10])),
        r"train-images-idx3-ubyte': truncated IDX header \(10 bytes; 3 dimensions need 16\)",
    ),
    "truncated .gz": (
        lambda tmp: _idx_folder(
            tmp, lambda d, b: (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b)[:200])
        ),
        r"train-images-idx3-ubyte\.gz' is a truncated or corrupt \.gz file",
    ),
    "garbage JPEG": (
        lambda tmp: _jpeg_folder(tmp, lambda f: f.write_bytes(b"not a jpeg" * 20)),
        r"cannot decode image '.*a/3\.jpg' \(UnidentifiedImageError",
    ),
    "truncated JPEG": (
        lambda tmp: _jpeg_folder(tmp, lambda f: f.write_bytes(f.read_bytes()[:60])),
        r"cannot decode image '.*a/3\.jpg' \(OSError",
    ),
}


@pytest.mark.parametrize("case", BROKEN_DATA)
def test_a_broken_data_file_is_one_data_error_naming_the_file(tmp_path, case):
    make, expected = BROKEN_DATA[case]
    entry = make(tmp_path)
    family = "cnn" if entry["source"] in ("idx", "imagefolder") else "mlp"
    raw = {
        "datasets": {"d": entry},
        "tasks": {
            "t": {"dataset": "d", "model": {"family": family}},
            "holdout": {"dataset": "digits", "model": {"family": "mlp", "width": 8}},
        },
        "splits": {"meta_train": ["t"], "held_out": ["holdout"]},
        "collect": {"schedulers": ["constant"], "seeds": 1},
        "evaluate": {"schedulers": ["cosine"], "seeds": 1},
    }
    with pytest.raises(DataError, match=expected) as err:
        _prepare(parse_config(raw).dataset("d"))
    assert "\n" not in str(err.value)
    if case in ("empty CSV", "truncated JPEG"):  # and from the CLI: exit 2, one line, no traceback
        config = tmp_path / "broken.yaml"
        config.write_text(yaml.safe_dump(raw))
        proc = _metalr(tmp_path, "--config", str(config), "prepare-data", "--dataset", "d")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("metalr: error:")]
        assert errors == [f"metalr: error: {err.value}"]


# --- config files that YAML reads otherwise than meant ------------------------------------


def test_a_yaml_syntax_error_names_the_line_and_column(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text((REPO / "config" / "smoke.yaml").read_text().replace("split_seed: 0", "split_seed: [0"))
    proc = _metalr(tmp_path, "--config", str(config), "validate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"metalr: error: config file '{config}' is not valid YAML at line 4, column 7: expected ',' or ']', but got ':'"
    )


def test_base_lr_1e9_written_without_yamls_dot_is_read_as_the_number_it_spells(tmp_path):
    """PyYAML keeps 1e9 as text; the overlay reads text where the schema wants a number as YAML,
    then as a float, on the Snakemake path and the CLI alike, so the user gets what they wrote."""
    from conftest import snakemake_cmd

    from metalr.config import load_config

    config = tmp_path / "big.yaml"
    config.write_text((REPO / "config" / "smoke.yaml").read_text().replace("defaults: {", "defaults: {base_lr: 1e9, "))
    proc = subprocess.run(snakemake_cmd(config, "-n", "--cores", "1"), cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert {task.base_lr for task in load_config(config).tasks.values()} == {1e9}


# --- missing or corrupt intermediates (one smoke run, copied per test) ---------------------


def _dry_run(workdir: Path) -> subprocess.CompletedProcess:
    from conftest import snakemake_cmd

    cmd = snakemake_cmd(TEST_CONFIG, "-n", "--cores", "1")
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)


def _copy_results(smoke_run, tmp_path: Path) -> ResultsLayout:
    import shutil

    results, _ = smoke_run
    shutil.copytree(results, tmp_path / "results")
    return ResultsLayout(str(tmp_path / "results"))


@pytest.mark.parametrize(
    "deleted, rebuilt_by",
    [
        (lambda layout: Path(layout.checkpoint("meta", 1)) / "model.safetensors", "fit_meta_learner"),
        (lambda layout: Path(layout.checkpoint("meta", 0)) / "model.safetensors", "fit_meta_learner"),
        (lambda layout: Path(layout.trajectories("collect", "digits-mlp")), "collect_trajectories"),
        (lambda layout: Path(layout.forks("metaval")), "label_branch_points"),
    ],
    ids=["final meta checkpoint", "round-0 checkpoint", "trajectory part", "forks"],
)
def test_a_deleted_intermediate_is_rebuilt(smoke_run, tmp_path, deleted, rebuilt_by):
    layout = _copy_results(smoke_run, tmp_path)
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(_dry_run(tmp_path))
    deleted(layout).unlink()
    proc = _dry_run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"rule {rebuilt_by}:" in proc.stdout + proc.stderr
    assert str(deleted(ResultsLayout())) in proc.stdout + proc.stderr


def test_a_corrupt_parquet_part_is_named_before_any_job_removes_another_rounds_checkpoint(smoke_run, tmp_path):
    layout = _copy_results(smoke_run, tmp_path)
    part = Path(ResultsLayout().trajectories("collect", "digits-mlp"))
    with open(tmp_path / part, "r+b") as fh:
        fh.truncate(200)
    before = _tree(tmp_path / "results")
    proc = _dry_run(tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"cannot read Parquet input '{part}'" in output and "delete it and rerun" in output
    assert "Traceback" not in output
    # A real run stops the same way, before any job: round 0's checkpoint (and everything else) stays.
    from conftest import snakemake_cmd

    real = subprocess.run(
        snakemake_cmd(TEST_CONFIG, "--cores", "1"), cwd=tmp_path, capture_output=True, text=True
    )
    assert real.returncode != 0 and f"cannot read Parquet input '{part}'" in real.stdout + real.stderr
    assert _tree(tmp_path / "results") == before
    assert (Path(layout.checkpoint("meta", 0)) / "model.safetensors").exists()
