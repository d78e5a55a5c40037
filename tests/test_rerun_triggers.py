"""Config edits re-run exactly the jobs whose outputs they change (Snakemake's params rerun trigger)."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TEST_CONFIG, TRAINING_RULES, snakemake_cmd

JOB = re.compile(r"^(?:local)?rule (\w+):$")
WILDCARDS = re.compile(r"^\s+wildcards: (.+)$")
REPORTING = {"merge_runs", "compare_schedulers", "summarize_results", "plot_task_curves", "plot_lr_gallery"}


def _planned_jobs(workdir: Path, config: Path) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run of ``config`` in ``workdir`` would run."""
    proc = subprocess.run(
        snakemake_cmd(config, "-n", "--cores", "2", "--resources", "gpu=1"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs, rule = set(), None
    for line in proc.stdout.splitlines():
        if m := JOB.match(line):
            if rule is not None:
                jobs.add((rule, ""))
            rule = m.group(1)
        elif rule is not None and (m := WILDCARDS.match(line)):
            jobs.add((rule, m.group(1)))
            rule = None
        elif rule is not None and not line.strip():
            jobs.add((rule, ""))
            rule = None
    return {job for job in jobs if job[0] != "all"}


def _edited(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(TEST_CONFIG.read_text())
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _training(jobs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {job for job in jobs if job[0] in TRAINING_RULES}


@pytest.fixture
def workdir(smoke_run) -> Path:
    results, _ = smoke_run
    return results.parent


def test_an_unchanged_config_re_runs_nothing(workdir):
    assert _planned_jobs(workdir, TEST_CONFIG) == set()


def test_a_held_out_tasks_width_re_runs_that_tasks_evaluation_and_the_summary_only(workdir, tmp_path):
    config = _edited(tmp_path, lambda raw: raw["tasks"]["breast-cancer-mlp"]["model"].update(width=32))
    jobs = _planned_jobs(workdir, config)
    assert _training(jobs) == {("evaluate_schedulers", "task=breast-cancer-mlp")}
    assert {rule for rule, _ in jobs} - {"evaluate_schedulers", "plot_performance_profiles"} == REPORTING


def test_the_evaluation_seeds_re_run_the_evaluation_and_nothing_before_it(workdir, tmp_path):
    config = _edited(tmp_path, lambda raw: raw["evaluate"].update(seeds=1))
    jobs = _planned_jobs(workdir, config)
    assert _training(jobs) == {("evaluate_schedulers", "task=breast-cancer-mlp")}


def test_a_meta_training_task_re_runs_its_collection_labels_fits_and_the_evaluation(workdir, tmp_path):
    config = _edited(tmp_path, lambda raw: raw["tasks"]["digits-mlp"]["model"].update(width=32))
    rules = {rule for rule, _ in _training(_planned_jobs(workdir, config))}
    assert rules == set(TRAINING_RULES)


def test_the_meta_config_re_runs_the_fits_and_what_follows_them_but_not_round_0(workdir, tmp_path):
    config = _edited(tmp_path, lambda raw: raw["meta"].update(epochs=14))
    rules = {rule for rule, _ in _training(_planned_jobs(workdir, config))}
    assert "collect_trajectories" not in rules
    assert {"fit_dagger_model", "fit_meta_learner", "evaluate_schedulers"} <= rules
