"""Each bad input gets one clear message and no Python traceback, on the Snakemake path and the CLI.

docs/faults.md lists these cases; each row there names its test here.
"""

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEST_CONFIG, snakemake_cmd

from metalr.config import load_config
from metalr.paths import ResultsLayout
from metalr.pipeline import phase_run_specs


@pytest.fixture(scope="module")
def smoke_raw(repo):
    return yaml.safe_load((TEST_CONFIG).read_text())


def _bad_config(raw, change) -> dict:
    raw = copy.deepcopy(raw)
    change(raw)
    return raw


def _unknown_scheduler(raw):
    raw["collect"]["schedulers"] = ["cosine", "cosinus"]


def _unknown_device(raw):
    raw["device"] = "tpu"


def _misspelt_field(raw):
    raw["tasks"]["digits-mlp"]["base_rl"] = 0.1


def _undefined_task(raw):
    raw["splits"]["held_out"] = ["mnist-resnet"]


def _held_out_copy(raw):
    raw["tasks"]["renamed-copy"] = copy.deepcopy(raw["tasks"]["digits-mlp"])
    raw["splits"]["held_out"] = ["renamed-copy"]


BAD_CONFIGS = {
    "unknown scheduler": (_unknown_scheduler, ["collect.schedulers.1", "'cosinus'", "'constant', 'step'"]),
    "unknown device": (_unknown_device, ["config field 'device'", "'auto', 'cpu', 'cuda'"]),
    "misspelt field": (_misspelt_field, ["tasks.digits-mlp", "'base_rl' was unexpected", "allowed fields:", "base_lr"]),
    "undefined task": (
        _undefined_task,
        ["'mnist-resnet' is not defined", "defined tasks: breast-cancer-mlp, digits-mlp"],
    ),
    "held-out copy of a meta-train task": (_held_out_copy, ["'renamed-copy' is also used for meta-training"]),
}


def _assert_one_clear_message(output: str, expected: list[str]) -> None:
    for text in expected:
        assert text in output, f"{text!r} missing from:\n{output}"
    assert "Traceback" not in output
    assert output.count("\n") < 12, f"more than one short message:\n{output}"


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_snakemake_reports_a_bad_config_in_one_message(tmp_path, smoke_raw, case):
    change, expected = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_bad_config(smoke_raw, change)))
    proc = subprocess.run(snakemake_cmd(path, "-n", "--cores", "1"), cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    _assert_one_clear_message(proc.stdout + proc.stderr, expected)


def _cli(tmp_path, config, *args):
    cmd = [sys.executable, "-m", "metalr", "--config", str(config), "--results", str(tmp_path / "results"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_cli_reports_a_bad_config_in_one_message(tmp_path, smoke_raw, case):
    change, expected = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_bad_config(smoke_raw, change)))
    proc = _cli(tmp_path, path, "validate")
    assert proc.returncode == 2
    _assert_one_clear_message(proc.stderr, ["metalr: error:", *expected])


def test_cli_lists_the_defined_tasks_for_an_unknown_task(tmp_path, repo):
    proc = _cli(tmp_path, TEST_CONFIG, "train-runs", "--phase", "collect", "--task", "digits-cnn")
    assert proc.returncode == 2
    _assert_one_clear_message(proc.stderr, ["unknown task 'digits-cnn'", "breast-cancer-mlp, digits-mlp, wine-mlp"])


@pytest.fixture
def prepared(tmp_path, repo):
    """The smoke config with the wine dataset carved, ready for its metaval training job."""
    config = TEST_CONFIG
    subprocess.run(
        [sys.executable, "-m", "metalr", "--config", str(config), "--results", str(tmp_path / "results")]
        + ["prepare-data", "--dataset", "wine"],
        check=True,
        capture_output=True,
    )
    return config, ResultsLayout(str(tmp_path / "results"))


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_parquet_input_is_named(tmp_path, prepared, damage):
    config, layout = prepared
    runs = _cli(tmp_path, config, "train-runs", "--phase", "metaval", "--task", "wine-mlp")
    assert runs.returncode == 0, runs.stderr
    bad = layout.runs_part("collect", "digits-mlp")  # the fit reads it first
    if damage == "corrupt":
        Path(bad).parent.mkdir(parents=True)
        shutil.copy(layout.runs_part("metaval", "wine-mlp"), bad)
        with open(bad, "r+b") as fh:
            fh.truncate(100)
    proc = _cli(tmp_path, config, "fit")
    assert proc.returncode == 2
    _assert_one_clear_message(proc.stderr, [f"cannot read Parquet input '{bad}'"])


def test_a_corrupt_run_checkpoint_is_refused_naming_the_file(tmp_path, prepared):
    config, layout = prepared
    spec = phase_run_specs(load_config(config), "metaval", "wine-mlp")[0]
    checkpoint = tmp_path / "results" / "resume" / "phase=metaval" / "task=wine-mlp" / f"{spec.run_id}.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"\x00" * 64)
    proc = _cli(tmp_path, config, "train-runs", "--phase", "metaval", "--task", "wine-mlp")
    assert proc.returncode == 2
    _assert_one_clear_message(proc.stderr, [f"cannot read run checkpoint '{checkpoint}'", "delete it"])
    assert not (tmp_path / layout.trajectories("metaval", "wine-mlp")).exists()


def test_a_foreign_meta_scheduler_checkpoint_is_refused(tmp_path, prepared):
    config, layout = prepared
    raw = yaml.safe_load(config.read_text())
    raw["splits"]["held_out"] = ["wine-mlp"]
    raw["splits"]["meta_val"] = []
    held_out_config = tmp_path / "eval.yaml"
    held_out_config.write_text(yaml.safe_dump(raw))
    # Where the evaluation looks for the main meta-learner of the last DAgger round.
    foreign = Path(layout.checkpoint("meta", 1))
    foreign.mkdir(parents=True)
    (foreign / "config.json").write_text('{"format": "someone-elses-model"}')
    proc = _cli(tmp_path, held_out_config, "train-runs", "--phase", "eval", "--task", "wine-mlp")
    assert proc.returncode == 2
    _assert_one_clear_message(proc.stderr, [f"{foreign} is not a metalr meta-scheduler checkpoint"])


def test_a_corrupt_parquet_input_on_the_snakemake_path_is_named_before_any_job(tmp_path, smoke_run, repo):
    results, _ = smoke_run
    shutil.copytree(results, tmp_path / "results")
    layout = ResultsLayout()
    bad = layout.runs_part("collect", "digits-mlp")
    (tmp_path / bad).write_bytes(b"PAR1 but not really")
    (tmp_path / layout.leakage_report()).unlink()
    target = layout.leakage_report()
    old_log = (tmp_path / layout.log("check_leakage")).read_text()  # the smoke run's
    # Only this job: the collection jobs upstream are done (their temporary snapshots consumed).
    cmd = snakemake_cmd(TEST_CONFIG, "--cores", "1", "--allowed-rules", "check_leakage", target)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    _assert_one_clear_message(proc.stdout + proc.stderr, [f"cannot read Parquet input '{bad}'", "delete it and rerun"])
    assert (tmp_path / layout.log("check_leakage")).read_text() == old_log  # no job started
