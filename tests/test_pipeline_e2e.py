"""The real Snakemake binary runs the whole pipeline (.test/config/config.yaml, one shared run)."""

import json
import re
import subprocess
from dataclasses import replace

import numpy as np
import polars as pl
import yaml
from conftest import TEST_CONFIG, TRAINING_RULES, run_smoke_pipeline, snakemake_exe

from metalr.meta.variants import DEPLOYMENTS, meta_variants
from metalr.pipeline import fit
from metalr.trajectories import REQUIRED_TRAJECTORY_COLUMNS, scan_trajectories


def test_runs_table_has_one_row_per_task_scheduler_and_seed_in_each_phase(smoke_run):
    results, config = smoke_run
    runs = pl.read_parquet(results / "runs.parquet")
    grid = config.evaluate.lr_multipliers
    variants = meta_variants(config.meta)
    per_task = {
        "collect": len(config.collect.schedulers) * config.collect.seeds,
        "metaval": len(config.collect.schedulers) * config.collect.seeds,
        "collect-r1": config.collect.seeds,  # the round-0 meta-scheduler only
        "metaval-r1": config.collect.seeds,
        # every baseline and meta-learner on the base-LR grid; ablations and deployments at the default only
        "eval": config.evaluate.seeds
        * (
            len(config.evaluate.schedulers) * len(grid)
            + sum(1 if v.role == "ablation" else len(grid) for v in variants)
            + (len(DEPLOYMENTS) if config.meta.controls else 0)
        ),
    }
    for phase, n in per_task.items():
        assert runs.filter(pl.col("phase") == phase).height == len(config.phase_tasks(phase)) * n, phase
    assert set(runs["phase"]) == set(per_task)
    assert runs["run_id"].is_unique().all()
    assert set(runs.filter(pl.col("phase") == "eval")["scheduler"]) >= {v.name for v in variants} | {"cosine"}
    assert set(runs.filter(pl.col("phase") == "collect-r1")["scheduler"]) == {"meta"}


def test_collection_spreads_base_lrs_and_every_collected_run_is_branched(smoke_run):
    results, config = smoke_run
    runs = pl.read_parquet(results / "runs.parquet").filter(pl.col("phase") != "eval")
    assert runs["lr_multiplier"].n_unique() == runs.height  # one draw per run
    forks = pl.scan_parquet(str(results / "meta" / "forks" / "**" / "*.parquet"), hive_partitioning=True).collect()
    finished = set(runs.filter(pl.col("status") == "ok")["run_id"])
    assert finished <= set(forks["run_id"]) <= set(runs["run_id"])
    branching = config.meta.branching
    per_run = forks.group_by("run_id").len()["len"]
    assert (per_run == branching.points * len(branching.multipliers) * branching.seeds).all()


def test_run_ids_match_both_ways_between_runs_and_trajectories(smoke_run):
    results, _ = smoke_run
    runs = pl.read_parquet(results / "runs.parquet")
    traj = scan_trajectories(results).collect()
    assert set(traj["run_id"]) == set(runs.filter(pl.col("steps_done") > 0)["run_id"])
    joined = traj.select("run_id", "phase", "task").unique().join(runs.select("run_id", "phase", "task"), on="run_id")
    assert (joined["phase"] == joined["phase_right"]).all() and (joined["task"] == joined["task_right"]).all()


def test_every_finished_trajectory_ends_at_the_budget_without_nan(smoke_run):
    results, _ = smoke_run
    runs = pl.read_parquet(results / "runs.parquet")
    traj = scan_trajectories(results).collect()
    last = traj.group_by("run_id").agg(pl.col("step").max()).join(runs, on="run_id")
    finished = last.filter(pl.col("status") == "ok")
    assert finished.height > 0 and (finished["step"] == finished["budget_steps"]).all()
    required = traj.select(REQUIRED_TRAJECTORY_COLUMNS)
    assert required.null_count().sum_horizontal()[0] == 0
    nan_counts = required.drop("run_id").select(pl.all().cast(pl.Float64).is_nan().sum()).row(0)
    assert sum(nan_counts) == 0


def test_no_held_out_task_reaches_meta_training_or_meta_validation_by_id_or_by_config_hash(smoke_run):
    results, config = smoke_run
    runs = pl.read_parquet(results / "runs.parquet")
    fit_rows = runs.filter(pl.col("phase") != "eval")
    held = {config.tasks[t].config_hash: t for t in config.held_out}
    assert not set(fit_rows["task"]) & set(config.held_out)
    assert not set(fit_rows["task_hash"]) & set(held)
    # Every file the fits read: no eval run id anywhere in their rows.
    trajectories = scan_trajectories(results)
    read = trajectories.filter(pl.col("phase") != "eval").select("run_id").unique().collect()["run_id"]
    forks = pl.scan_parquet(str(results / "meta" / "forks" / "**" / "*.parquet")).select("run_id").collect()["run_id"]
    eval_ids = set(runs.filter(pl.col("phase") == "eval")["run_id"])
    assert not (set(read) | set(forks)) & eval_ids
    leakage = json.loads((results / "meta" / "leakage_check.json").read_text())
    assert leakage["ok"] and not set(leakage["fit_tasks"]) & set(config.held_out)
    assert all("phase=eval" not in path for path in leakage["fit_inputs"])
    final = results / "meta" / f"round-{config.meta.dagger_rounds}"
    for variant in meta_variants(config.meta):
        checkpoint = json.loads((final / variant.name / "config.json").read_text())
        assert {t["task"] for t in checkpoint["trained_on"]} == set(config.meta_train)
        assert not {t["task_hash"] for t in checkpoint["trained_on"]} & set(held)


def test_the_final_fit_reads_the_on_policy_round_and_its_checkpoint_describes_itself(smoke_run):
    results, config = smoke_run
    checkpoint = json.loads((results / "meta" / "round-1" / "meta" / "config.json").read_text())
    assert checkpoint["trained_on_phases"] == ["collect", "collect-r1"]
    assert checkpoint["features"] and checkpoint["arch"] == config.meta.arch
    assert checkpoint["probe_cadences"][0]["curvature_every"] == 25
    assert len(checkpoint["normalisation"]["mean"]) == len(checkpoint["features"])
    assert checkpoint["format_version"] == 1 and checkpoint["metalr_version"]
    assert checkpoint["fit"]["n_train_labels"] > 0
    assert checkpoint["searched"]["hidden"] == [4, 8] and checkpoint["hidden"] in (4, 8)
    round0 = json.loads((results / "meta" / "round-0" / "meta" / "config.json").read_text())
    assert round0["trained_on_phases"] == ["collect"]


def test_summary_reports_every_architecture_and_control_at_each_base_lr(smoke_run):
    results, config = smoke_run
    summary = (results / "summary.md").read_text()
    assert "## Every meta-learner at each base LR" in summary
    header = next(line for line in summary.splitlines() if line.startswith("| variant | base LR |"))
    for column in (*config.evaluate.schedulers, "meta-progress-only", "meta-shuffled", "diverged", "OOD rate"):
        assert f"| {column} |" in header + "|", column
    assert "steps to target / cosine" in header
    for name in ("**meta**", "meta-gru", "meta-transformer", "meta-progress-only", "meta-shuffled"):
        for multiplier in config.evaluate.lr_multipliers:
            assert re.search(rf"^\| {re.escape(name)} \| x{multiplier:g} \| \d+/\d+/\d+ ", summary, re.M), (
                name,
                multiplier,
            )
    assert re.search(r"^\| meta-no-curvature \| x1 \|", summary, re.M)
    # The loss-only deployment of the main model, against it, with machine-readable lines.
    assert re.search(r"^\| meta-loss-only \| x1 \|", summary, re.M)
    assert re.search(r"^loss_only_within_1pct_of_full: \d+/\d+$", summary, re.M)
    assert re.search(r"^loss_only_fallback_rate: \d\.\d{3}$", summary, re.M)
    table = pl.read_parquet(results / "evaluation" / "meta_variants.parquet")
    assert (table["wins"] + table["ties"] + table["losses"] == table["n_tasks"]).all()


def test_summary_shows_every_scheduler_on_every_held_out_task_with_intervals_and_verdicts(smoke_run):
    results, config = smoke_run
    summary = (results / "summary.md").read_text()
    assert "Indicative only" in summary and "## Where the meta-scheduler stands" in summary
    table = pl.read_parquet(results / "summary.parquet")
    schedulers = {*config.evaluate.schedulers, "meta"}
    for framing in ("self-tuning", "externally tuned"):
        for task in config.held_out:
            assert f"#### {task} ({framing};" in summary
            rows = table.filter((pl.col("framing") == framing) & (pl.col("task") == task))
            assert set(rows["scheduler"]) == schedulers
            assert rows.filter(pl.col("scheduler") != "meta")["verdict"].null_count() == 0
    # Every row carries a bootstrap interval: "mean [low, high]".
    assert len(re.findall(r"\| \d+\.\d{4} \[\d+\.\d{4}, \d+\.\d{4}\] \|", summary)) >= len(schedulers)
    plots = ["gain.png", "performance_profiles.png", "lr_gallery.png", *(f"curves/{t}.png" for t in config.held_out)]
    for plot in plots:
        assert (results / "plots" / plot).stat().st_size > 10_000, plot
    assert "<table>" in (results / "summary.html").read_text()


def test_snakemake_report_builds_after_the_run(smoke_run, repo):
    results, _ = smoke_run
    cmd = [snakemake_exe(), "-s", str(repo / "Snakefile"), "--configfile", str(TEST_CONFIG)]
    proc = subprocess.run(
        [*cmd, "--cores", "2", "--resources", "gpu=1", "--report", "report.html"],
        cwd=results.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (results.parent / "report.html").read_text()
    assert "performance_profiles.png" in html and "summary.html" in html


def test_dry_run_of_the_default_config_requests_a_gpu_for_every_training_rule(tmp_path, repo):
    proc = subprocess.run(
        [snakemake_exe(), "-s", str(repo / "Snakefile"), "-n", "--cores", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, flags=re.MULTILINE)
    seen = {rule for rule, _ in jobs}
    assert set(TRAINING_RULES) <= seen
    for rule, resources in jobs:
        if rule in TRAINING_RULES:
            assert "gpu=1" in resources.split(", "), (rule, resources)


def test_a_task_declared_only_in_yaml_on_a_local_csv_runs_through_the_pipeline(tmp_path, repo):
    """No code: a CSV file, a dataset declaration, a task family and a held-out task in YAML."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=300), rng.normal(size=300)
    colour = rng.choice(["red", "blue"], 300)
    label = np.where(x1 + (colour == "red") > 0.5, "high", "low")
    lines = ["x1,x2,colour,label"] + [
        f"{a:.3f},{b:.3f},{c},{d}" for a, b, c, d in zip(x1, x2, colour, label, strict=True)
    ]
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    config = {
        "resources": {"gpu": 1, "threads": 1},
        "defaults": {"budget_steps": 30, "val_every": 10, "batch_size": 32},
        "datasets": {"mytable": {"source": "csv", "path": "table.csv", "columns": {"label": "label"}, "metric": "auc"}},
        "tasks": {"mytable-wide": {"dataset": "mytable", "model": {"family": "mlp", "width": 48}}},
        "families": {
            "mytable-mlp": {
                "task": {"dataset": "mytable", "model": {"family": "mlp", "width": 8}},
                "count": 2,
                "sample": {"width": [4, 8, 16], "base_lr": [1.0e-3, 1.0e-2]},
            },
        },  # fmt: skip
        "splits": {"meta_train": ["mytable-mlp"], "held_out": ["mytable-wide"]},
        "collect": {"schedulers": ["constant", "explore"], "seeds": 1},
        "evaluate": {"schedulers": ["constant", "cosine"], "default_lr_only": [], "seeds": 1},
        "meta": {
            "hidden": 4,
            "epochs": 5,
            "patience": 5,
            "decision_fraction": 0.2,
            "architectures": [],
            "controls": False,
            "ablations": False,
            "dagger_rounds": 0,
        },
    }
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config))
    results = run_smoke_pipeline(tmp_path, "--resources", "gpu=1", configfile=tmp_path / "mine.yaml")
    runs = pl.read_parquet(results / "runs.parquet")
    assert set(runs["task"]) == {"mytable-mlp-00", "mytable-mlp-01", "mytable-wide"}
    assert set(runs.filter(pl.col("phase") == "eval")["scheduler"]) == {"constant", "cosine", "meta"}
    assert (runs["status"] == "ok").all() and (runs["metric"] == "auc").all()
    # At the task's own base LR it learns; collection runs start from base LRs up to 30x off.
    assert runs.filter((pl.col("phase") == "eval") & (pl.col("lr_multiplier") == 1.0))["test_auc"].min() > 0.5
    assert (results / "data" / "mytable" / "train.parquet").is_file()


def test_a_fit_over_label_temperatures_keeps_the_labels_whose_policy_regrets_least_on_meta_validation(
    smoke_run, tmp_path, capsys
):
    results, config = smoke_run
    files = {
        base: {
            "runs": sorted(results.glob(f"runs/phase={base}/*/part-0.parquet")),
            "trajectories": sorted(results.glob(f"trajectories/phase={base}/*/part-0.parquet")),
            "forks": [results / "meta" / "forks" / f"phase={base}" / "part-0.parquet"],
        }
        for base in ("collect", "metaval")
    }
    tuned = replace(config, meta=replace(config.meta, label_temperatures=(0.003, 0.3)))
    fit(tuned, "meta", files["collect"], files["metaval"], tmp_path / "meta")
    judged = {
        None if t == "None" else float(t): float(r)
        for t, r in re.findall(r"label temperature (\S+): policy regret (\S+)", capsys.readouterr().out)
    }
    assert list(judged) == [None, 0.003, 0.3]  # hard labels are always a candidate
    assert all(0.0 <= r <= 1.0 for r in judged.values())
    report = json.loads((tmp_path / "meta" / "config.json").read_text())["fit"]
    assert report["policy_regret"] == min(judged.values())
    assert report["label_temperature"] == min(judged, key=judged.get)
