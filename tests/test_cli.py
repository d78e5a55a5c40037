import argparse
import subprocess
import sys

import polars as pl
import yaml
from conftest import TEST_CONFIG


def test_cli_reports_a_bad_config_in_one_message_without_a_traceback(tmp_path, repo):
    raw = yaml.safe_load((TEST_CONFIG).read_text())
    raw["device"] = "tpu"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "metalr", "--config", str(bad), "validate"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "config field 'device'" in proc.stderr and "'cpu'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_runs_a_pipeline_step_into_the_results_layout(tmp_path, repo):
    args = [sys.executable, "-m", "metalr", "--config", str(TEST_CONFIG), "--results", str(tmp_path)]
    subprocess.run([*args, "prepare-data", "--dataset", "wine"], check=True, capture_output=True)
    proc = subprocess.run(
        [*args, "train-runs", "--phase", "metaval", "--task", "wine-mlp"], capture_output=True, text=True, check=True
    )
    assert "[4/4]" in proc.stdout  # cosine and explore, 2 seeds
    assert (tmp_path / "trajectories" / "phase=metaval" / "task=wine-mlp" / "part-0.parquet").is_file()
    proc = subprocess.run([*args, "label", "--phase", "metaval"], capture_output=True, text=True, check=True)
    forks = pl.read_parquet(tmp_path / "meta" / "forks" / "phase=metaval" / "part-0.parquet")
    assert forks.height == 4 * 2 * 3  # runs x branch points x multipliers (1 fork seed)
    assert "[4/4] runs branched" in proc.stdout


def test_cli_refuses_a_phase_that_does_not_exist(repo):
    proc = subprocess.run(
        [sys.executable, "-m", "metalr", "--config", str(TEST_CONFIG), "label", "--phase", "tune"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not a phase" in proc.stderr


def test_tasks_lists_every_task_with_modality_sizes_parameters_and_source(repo):
    proc = subprocess.run(
        [sys.executable, "-m", "metalr", "tasks", "--config", str(TEST_CONFIG), "--sizes"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 + 3
    digits = next(line.split() for line in lines if line.startswith("digits-mlp"))
    assert digits[1:3] == ["meta_train", "image"] and digits[6] == "1257/270/270"
    assert int(digits[7].replace(",", "")) == 64 * 16 + 16 + 16 * 10 + 10  # mlp width 16 on 8x8 digits
    assert "scikit-learn load_digits" in lines[1 + [line.split()[0] for line in lines[1:]].index("digits-mlp")]


def test_inspect_summarises_a_results_table_per_task_and_scheduler_without_a_config(tmp_path):
    from metalr.trajectories import runs_frame, write_parquet

    rows = [
        {"run_id": f"r{i}", "phase": "eval", "task": "t", "scheduler": s, "seed": i, "status": "ok", "test_metric": v}
        for i, (s, v) in enumerate([("cosine", 0.5), ("cosine", 0.7), ("meta", 0.9)])
    ]
    write_parquet(runs_frame(rows), tmp_path / "runs.parquet")
    proc = subprocess.run(
        [sys.executable, "-m", "metalr", "--config", str(tmp_path / "absent.yaml"), "inspect", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 rows x" in proc.stdout and "per phase x task x scheduler" in proc.stdout
    cosine = next(line for line in proc.stdout.splitlines() if "cosine" in line and "eval" in line)
    assert "0.6" in cosine  # mean test metric of 0.5 and 0.7


def test_inspect_names_a_missing_path_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "metalr", "inspect", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_bare_metalr_prints_help_and_version_prints_the_package_version():
    import metalr

    proc = subprocess.run([sys.executable, "-m", "metalr"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: metalr") and "schedulers" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "metalr", "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"metalr {metalr.__version__}"


def test_every_subcommand_help_has_a_description_and_an_example():
    from metalr.cli import SUBCOMMANDS, build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == set(SUBCOMMANDS)
    for name, parser in subparsers.choices.items():
        text = parser.format_help()
        assert SUBCOMMANDS[name][1] in " ".join(text.split()), name
        assert f"example:\n  metalr {name}" in text, name


def test_schedulers_tasks_and_validate_answer_without_importing_torch(repo):
    # torch's import alone takes seconds; these commands must not pay it.
    smoke = str(repo / "config" / "smoke.yaml")
    for args in (["schedulers"], ["tasks", "--config", smoke], ["validate", "--config", smoke]):
        code = f"import sys; from metalr.cli import main; main({args!r}); assert 'torch' not in sys.modules"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stdout.strip(), args
