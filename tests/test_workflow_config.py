"""How the real Snakemake reads configs: --config and --configfile overlay the embedded default,
and every config writes to its own results folder (dry runs: nothing is trained here)."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import REPO, snakemake_cmd


def _dry_run_outputs(workdir, configfile, *args: str) -> set[str]:
    cmd = snakemake_cmd(configfile, "-n", "--cores", "2", "--resources", "gpu=1", *args)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    outputs = set()
    for line in re.findall(r"^\s+output: (.*)$", proc.stdout, flags=re.MULTILINE):
        outputs |= {path.strip() for path in line.split(",")}
    assert outputs, proc.stdout[-3000:]
    return outputs


def test_config_on_the_command_line_overlays_the_embedded_default(tmp_path):
    # As README's users write it: the default config, one nested setting changed.
    outputs = _dry_run_outputs(tmp_path, None, "--config", "evaluate={seeds: 3}")
    assert "results/runs.parquet" in outputs
    assert any("task=digits-cnn" in path for path in outputs)  # the default's held-out tasks are kept


def test_a_config_file_and_a_config_override_together(tmp_path):
    outputs = _dry_run_outputs(tmp_path, REPO / "config" / "smoke.yaml", "--config", "results=elsewhere")
    assert all(path.startswith("elsewhere/") for path in outputs), sorted(outputs)[:5]
    assert not any("task=digits-cnn" in path for path in outputs)  # smoke declares its own tasks


def test_an_override_is_validated_after_merging(tmp_path):
    cmd = snakemake_cmd(None, "-n", "--cores", "1", "--config", "evaluate={seeds: zero}")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "config field 'evaluate.seeds'" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("configfile", "folder"), [(None, "results"), (REPO / "config" / "bench.yaml", "results/bench")]
)
def test_default_and_bench_write_only_under_their_own_folder(tmp_path, configfile, folder):
    outputs = _dry_run_outputs(tmp_path, configfile)
    assert all(path.startswith(folder + "/") for path in outputs)
    others = ("results/smoke/", "results/bench/") if folder == "results" else ("results/smoke/",)
    assert not any(path.startswith(others) for path in outputs)


def test_the_cli_writes_to_the_configs_results_folder_unless_told_otherwise(tmp_path):
    import sys

    smoke = str(REPO / "config" / "smoke.yaml")
    base = [sys.executable, "-m", "metalr", "--config", smoke]
    prepare = ["prepare-data", "--dataset", "wine"]
    subprocess.run([*base, *prepare], cwd=tmp_path, check=True, timeout=600)
    assert (tmp_path / "results" / "smoke" / "data" / "wine" / "info.json").is_file()
    subprocess.run([*base, "--results", "mine", *prepare], cwd=tmp_path, check=True, timeout=600)
    assert (tmp_path / "mine" / "data" / "wine" / "info.json").is_file()


def test_a_failed_shared_pipeline_fails_the_first_test_that_needs_it_and_skips_the_rest():
    from conftest import SharedPipeline

    calls = []

    def broken():
        calls.append(1)
        raise AssertionError("MissingInputException: the log's last lines")

    shared = SharedPipeline("smoke", broken)
    with pytest.raises(pytest.fail.Exception, match="MissingInputException"):
        shared.get()
    for _ in range(3):
        with pytest.raises(pytest.skip.Exception, match="first failing test"):
            shared.get()
    assert calls == [1]  # run once, never retried per test
