"""One function per pipeline step. Snakemake rules and the ``metalr`` CLI both call these.

Every rule's script imports this module, so it imports at module level only what any step
needs (polars, the config): torch, scikit-learn and scipy are imported by the steps that use
them, and a job that merges or plots Parquet does not pay seconds for them.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from metalr.config import PipelineConfig, stable_hash
from metalr.io import atomic_path
from metalr.paths import ResultsLayout
from metalr.trajectories import TrajectoryWriter, read_parquet_files, runs_frame, write_parquet

if TYPE_CHECKING:
    from metalr.tasks import SplitData


def log(message: str) -> None:
    print(f"[metalr {time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_data(config: PipelineConfig, dataset: str, out: str | Path) -> None:
    from metalr.tasks import prepare_dataset

    spec = config.dataset(dataset)
    data = prepare_dataset(spec, config.split_seed, config.val_fraction, config.test_fraction, log=log)
    data.save(out)
    log(f"{dataset}: {data.info.sizes} ({data.info.modality}, {data.info.kind}) -> {out}")


def _phase_plan(
    config: PipelineConfig, phase: str, task_id: str, meta_names: Sequence[str]
) -> list[tuple[str, int, float, tuple[int, ...]]]:
    """(scheduler, seed, base-LR multiplier, snapshot steps) of every run of one task in one phase,
    with ``meta_names`` the fitted meta-learners the phase runs. Cheap: no RunSpec, no torch."""
    from metalr.config import phase_round
    from metalr.meta.branching import branch_steps
    from metalr.meta.variants import DEPLOYMENTS, meta_variants
    from metalr.schedulers import META, owns_optimizer

    unbranched: set[str] = set()
    task = config.task(task_id)
    if phase == "eval":
        grid = config.evaluate.lr_multipliers
        # (scheduler, base-LR multipliers): ablations and deployments run at the task's default base LR only.
        at_default_lr = {v.name for v in meta_variants(config.meta) if v.role == "ablation"} | set(DEPLOYMENTS)
        variants = [(name, grid) for name in config.evaluate.schedulers]
        variants += [
            (name, (1.0,)) for name in config.evaluate.default_lr_only if name not in config.evaluate.schedulers
        ]
        variants += [(name, (1.0,) if name in at_default_lr else grid) for name in meta_names]
        seeds, snapshot_steps = config.evaluate.seeds, ()
    else:
        names = (META,) if phase_round(phase) else config.collect.schedulers
        variants = [(name, None) for name in names]
        # A fork continues with the task's own optimizer: runs whose scheduler replaces it
        # (Schedule-Free) are collected but not branched.
        unbranched = {name for name in names if owns_optimizer(name)}
        seeds = config.collect.seeds
        branching = config.meta.branching
        snapshot_steps = tuple(branch_steps(task.budget_steps, branching.points, config.meta.decision_fraction))
    return [
        (name, seed, m, () if name in unbranched else snapshot_steps)
        for seed in range(seeds)
        for name, multipliers in variants
        # Collection draws each run's base-LR multiplier from the run's identity.
        for m in (multipliers or (config.collect.lr_multiplier(task_id, name, seed),))
    ]


def phase_run_specs(
    config: PipelineConfig, phase: str, task_id: str, meta_checkpoints: Mapping[str, str] | None = None
):
    """Every run of one task in one phase.

    collect/metaval: the collection grid, each run at a base LR spread over 10^U(-s, s) and
    snapshotted at the branch points. collect-rN/metaval-rN (DAgger): the meta-scheduler of
    round N-1 on the same tasks, seeds and spread base LRs. eval: every baseline and every
    meta-learner variant at each point of the base-LR grid (ablations at the default only).
    """
    from metalr.schedulers import is_meta
    from metalr.train import RunSpec

    checkpoints = dict(meta_checkpoints or {})
    plan = _phase_plan(config, phase, task_id, list(checkpoints))
    for name, *_ in plan:
        if is_meta(name) and name not in checkpoints:
            raise ValueError(f"phase {phase!r} runs {name!r} but no checkpoint was given for it")
    task = config.task(task_id)
    return [
        RunSpec(
            phase=phase,
            task=task,
            scheduler=name,
            seed=seed,
            device=config.device,
            divergence_factor=config.divergence_factor,
            loss_ema_beta=config.loss_ema_beta,
            meta_checkpoint=checkpoints.get(name),
            lr_multiplier=multiplier,
            snapshot_steps=snapshot_steps,
        )
        for name, seed, multiplier, snapshot_steps in plan
    ]


@functools.cache
def _cached_data(path: str) -> SplitData:
    from metalr.tasks import SplitData

    return SplitData.load(path)


def phase_run_count(config: PipelineConfig, phase: str, task_id: str) -> int:
    return len(_phase_plan(config, phase, task_id, list(phase_meta_checkpoints(config, ResultsLayout(), phase))))


def job_threads(config: PipelineConfig, runs: int) -> int:
    """Worker processes a training job of ``runs`` runs deserves: starting one costs seconds (torch's
    import), so a job of a few short runs trains them in its own process."""
    return config.threads if runs >= 2 * config.threads else 1


def training_settings_hash(config: PipelineConfig, phase: str, task_id: str) -> str:
    """Hash of exactly the settings that determine one task's runs in one phase: the task and its
    dataset (split included), every run's scheduler, seed, base-LR multiplier and snapshot steps,
    the divergence rule and the probes. A rule's ``params`` carries it, so that Snakemake's params
    rerun trigger re-runs the job when one of them changes, and only then."""
    task = config.task(task_id)
    names = list(phase_meta_checkpoints(config, ResultsLayout(), phase))
    return stable_hash(
        {
            "task": task.content(),
            "probes": asdict(task.probes),
            "dataset": dataset_settings(config, task.dataset),
            "divergence": [config.divergence_factor, config.loss_ema_beta],
            "runs": _phase_plan(config, phase, task_id, names),
        }
    )


def dataset_settings(config: PipelineConfig, dataset: str) -> str:
    """What determines a prepared dataset: its declaration and the split."""
    split = f"split_seed={config.split_seed} val={config.val_fraction} test={config.test_fraction}"
    return f"{config.dataset(dataset)} {split}"


def labelling_settings_hash(config: PipelineConfig, phase: str) -> str:
    """The branching expert's output on a phase: its collection runs' settings and the branching config."""
    tasks = [training_settings_hash(config, phase, t) for t in config.phase_tasks(phase)]
    return stable_hash({"collection": tasks, "branching": asdict(config.meta.branching)})


def fit_settings_hash(config: PipelineConfig, variants: Sequence[str]) -> str:
    """A fit's output beyond its input files: the meta config (architecture, search, epochs, seed,
    branching, decision cadence) and the variants fitted."""
    return stable_hash({"meta": asdict(config.meta), "variants": list(variants)})


def phase_meta_checkpoints(config: PipelineConfig, layout: ResultsLayout, phase: str) -> dict[str, str]:
    """The fitted meta-learners a phase runs, by scheduler name: every variant of the last DAgger
    round in eval, the main model of round N-1 in collect-rN / metaval-rN, none in round 0."""
    from metalr.config import phase_round
    from metalr.meta.variants import DEPLOYMENTS, META, meta_variants

    if phase == "eval":
        rounds = config.meta.dagger_rounds
        fitted = {v.name: layout.checkpoint(v.name, rounds) for v in meta_variants(config.meta)}
        if not config.meta.controls:
            return fitted
        return fitted | {name: fitted[d.source] for name, d in DEPLOYMENTS.items() if d.source in fitted}
    round = phase_round(phase)
    return {META: layout.checkpoint(META, round - 1)} if round else {}


def _completed(func, jobs: Sequence[tuple], threads: int):
    """``func(*job)`` for every job, yielded as each finishes: in this process for one
    worker or one job, else on a pool of ``threads`` single-threaded workers."""
    if threads <= 1 or len(jobs) <= 1:
        _init_worker()
        for job in jobs:
            yield func(*job)
        return
    from metalr.gpu import gpu_pool

    # Forked workers start with torch and metalr already imported, where spawned ones import
    # them again (seconds of every training job). CUDA is not fork-safe once the driver is
    # initialised (torch.cuda.is_available() does that), so a job that may use a GPU spawns.
    context = multiprocessing.get_context("spawn" if gpu_pool() else "fork")
    with ProcessPoolExecutor(threads, mp_context=context, initializer=_init_worker) as pool:
        for future in as_completed([pool.submit(func, *job) for job in jobs]):
            yield future.result()


def _init_worker() -> None:
    import torch

    # Many single-threaded runs beat one multi-threaded run for models this small.
    torch.set_num_threads(1)


def _execute(spec, data_path: str, resume_dir: str | None = None, checkpoint_every: int = 0, min_interval_s: float = 0):
    from metalr.meta.checkpoint import CheckpointError
    from metalr.resume import RunCheckpoints
    from metalr.train import RunResult, failed_run, train_run

    data = _cached_data(data_path)
    checkpoints = None if resume_dir is None else RunCheckpoints(resume_dir, checkpoint_every, min_interval_s)
    done = checkpoints.load_result(spec) if checkpoints else None
    if done is not None:
        summary, trajectory, snapshots = done
        return RunResult(summary.row(0, named=True), trajectory.to_dicts(), skipped=True, snapshots=snapshots)
    try:
        result = train_run(spec, data, checkpoints)
    except CheckpointError:
        raise  # a bad checkpoint is the user's to look at, not a failed run
    except Exception as err:  # recorded as status=failed (and tried again on a rerun); the job goes on
        return failed_run(spec, data, err)
    if checkpoints:
        checkpoints.save_result(spec, result)
    return result


@dataclass(frozen=True)
class TaskOutputs:
    """Where one task's runs of one phase land, within a training job that may train several tasks."""

    phase: str
    task_id: str
    data_path: str
    trajectories_out: str
    runs_out: str
    resume_dir: str | None = None
    snapshots_out: str | None = None


class RunsFailedError(RuntimeError):
    """Every run of a training job failed."""


def train_runs(
    config: PipelineConfig,
    phase: str,
    task_id: str,
    data_path: str | Path,
    trajectories_out: str | Path,
    runs_out: str | Path,
    threads: int = 1,
    meta_checkpoints: Mapping[str, str | Path] | None = None,
    resume_dir: str | Path | None = None,
    snapshots_out: str | Path | None = None,
) -> None:
    """Train every (scheduler, seed) run of a task in one phase; write trajectories and run rows.

    With ``resume_dir``, runs checkpoint there every ``config.checkpoint_every`` steps (and
    ``checkpoint_min_interval_s`` seconds at least) and record themselves when finished, so
    a rerun of a killed job resumes instead of restarting.
    """
    outputs = TaskOutputs(
        phase,
        task_id,
        str(data_path),
        str(trajectories_out),
        str(runs_out),
        None if resume_dir is None else str(resume_dir),
        None if snapshots_out is None else str(snapshots_out),
    )
    train_tasks(config, [outputs], threads, meta_checkpoints)


def train_tasks(
    config: PipelineConfig,
    tasks: Sequence[TaskOutputs],
    threads: int = 1,
    meta_checkpoints: Mapping[str, str | Path] | None = None,
) -> None:
    """``train_runs`` for several (phase, task) pairs on one pool of workers.

    One job per collection round instead of one per task: each job start costs seconds
    (torch's import), and a pool fed with every run of the round keeps its workers busy
    until the last few runs.
    """
    from metalr.optim import resolve_device

    checkpoints = {name: str(path) for name, path in (meta_checkpoints or {}).items()}
    specs = {(t.phase, t.task_id): phase_run_specs(config, t.phase, t.task_id, checkpoints) for t in tasks}
    total = sum(len(s) for s in specs.values())
    where = f"{tasks[0].phase}/{tasks[0].task_id}" if len(tasks) == 1 else f"{len(tasks)} tasks"
    log(f"{where}: {total} runs on {threads} worker(s), device {resolve_device(config.device)}")
    for t in tasks:
        if t.resume_dir is not None and Path(t.resume_dir).is_dir():
            kept = sorted(p.suffix for p in Path(t.resume_dir).iterdir())
            log(
                f"{t.phase}/{t.task_id}: an earlier attempt left {kept.count('.done')} finished run(s) and "
                f"{kept.count('.ckpt')} checkpoint(s) in {t.resume_dir}; resuming"
            )
    owner = {spec.run_id: t for t in tasks for spec in specs[(t.phase, t.task_id)]}
    results: dict[TaskOutputs, list] = {t: [] for t in tasks}
    done, started = 0, time.perf_counter()

    def report(result) -> None:
        row = result.row
        metric = "n/a" if row.get("test_metric") is None else f"{row['test_metric']:.4f}"
        wall = "n/a" if row.get("wall_time_s") is None else f"{row['wall_time_s']:.1f}"
        multiplier = row.get("lr_multiplier", 1.0)
        name = row["scheduler"] + ("" if multiplier == 1.0 else f" lr x{multiplier:.3g}")
        elapsed = time.perf_counter() - started
        left = elapsed / done * (total - done)
        log(
            f"[{done}/{total}] {name:<18} seed={row['seed']} {row['status']:<8} "
            f"test_{row['metric']}={metric} steps={row['steps_done']} ({wall} s; "
            f"{elapsed:.0f} s elapsed, ~{left:.0f} s left)"
            + (f" error: {row['error']}" if row.get("error") else "")
            + (" finished in an earlier attempt, skipped" if result.skipped else "")
            + (f" resumed from step {result.resumed_from}" if result.resumed_from else "")
        )

    every, interval = config.checkpoint_every, config.checkpoint_min_interval_s
    work = [(spec, t.data_path, t.resume_dir, every, interval) for t in tasks for spec in specs[(t.phase, t.task_id)]]
    for result in _completed(_execute, work, threads):
        done += 1
        report(result)
        task = owner[result.row["run_id"]]
        results[task].append(result)
        if len(results[task]) == len(specs[(task.phase, task.task_id)]):
            _write_task_outputs(task, specs[(task.phase, task.task_id)], results.pop(task))


def _write_task_outputs(task: TaskOutputs, specs: Sequence, results: list) -> None:
    """One task's trajectories, run rows and branch-point states, in the order of its run specs."""
    order = {spec.run_id: i for i, spec in enumerate(specs)}
    results.sort(key=lambda r: order[r.row["run_id"]])
    if results and all(r.row["status"] == "failed" for r in results):
        # Nothing to learn from or evaluate: fail the job (Snakemake stops) rather than write failed rows.
        first = results[0].row["error"]
        raise RunsFailedError(f"{task.phase}/{task.task_id}: all {len(results)} runs failed; the first: {first}")
    with TrajectoryWriter(task.trajectories_out) as writer:
        for result in results:
            writer.write(result.trajectory)
    runs = runs_frame([r.row for r in results])
    write_parquet(runs, task.runs_out)
    where = f"{task.phase}/{task.task_id}"
    if task.snapshots_out is not None:
        import torch

        with atomic_path(task.snapshots_out) as tmp:
            torch.save({r.row["run_id"]: r.snapshots for r in results}, tmp)
        kept = sum(len(r.snapshots) for r in results)
        log(f"{where}: {kept} branch-point states of {len(results)} runs -> {task.snapshots_out}")
    if task.resume_dir is not None:
        from metalr.resume import RunCheckpoints

        RunCheckpoints(task.resume_dir, 0).clear()
    counts = runs["status"].value_counts().sort("status").rows()
    log(f"{where}: done, status counts {dict(counts)}")


def leakage_report(config: PipelineConfig, runs_files: Sequence[str | Path], out: str | Path) -> None:
    from metalr.evaluate import check_leakage

    report = check_leakage(config, runs_files)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    log(f"leakage check passed: fit reads tasks {report['fit_tasks']}, held out {sorted(report['held_out'])}")


def _label_job(phase: str, spec, data_path: str, snapshots: list[dict], branching) -> tuple[str, list[dict]]:
    from metalr.meta.branching import label_snapshots

    return phase, label_snapshots(spec, _cached_data(data_path), snapshots, branching)


@dataclass(frozen=True)
class PhaseForks:
    """One collection phase for the branching expert, within a labelling job that may label several.

    ``data_paths`` and ``snapshots_paths`` map each task of the phase to its prepared data and
    to its collection job's snapshots; ``meta_checkpoints`` are the meta-learners its runs
    followed (``phase_meta_checkpoints``: none in round 0).
    """

    phase: str
    data_paths: Mapping[str, str | Path]
    snapshots_paths: Mapping[str, str | Path]
    forks_out: str | Path
    meta_checkpoints: Mapping[str, str | Path] | None = None


def label_branch_points(
    config: PipelineConfig,
    phase: str,
    data_paths: Mapping[str, str | Path],
    snapshots_paths: Mapping[str, str | Path],
    forks_out: str | Path,
    meta_checkpoints: Mapping[str, str | Path] | None = None,
    threads: int = 1,
) -> None:
    """The branching expert on one collection phase (``label_phases`` with that phase alone)."""
    label_phases(config, [PhaseForks(phase, data_paths, snapshots_paths, forks_out, meta_checkpoints)], threads)


def label_phases(config: PipelineConfig, phases: Sequence[PhaseForks], threads: int = 1) -> None:
    """The branching expert on several collection phases: fork every snapshot at every multiplier and seed.

    The Snakemake rules label the phases of one DAgger round (collect and metaval, or
    collect-rN and metaval-rN) in one job: every run of every phase goes to one pool of
    workers, so the small meta-validation phase fills the workers the big phase leaves idle,
    and the round pays one job's start-up (seconds, as long as the forks of a task) instead
    of one per phase. Each phase's forks are written, sorted, as soon as its last run is
    branched: the same file as labelling that phase alone.
    """
    import torch

    from metalr.meta.branching import forks_frame

    branching = config.meta.branching
    forks = len(branching.multipliers) * branching.seeds
    jobs, totals = [], {}
    for p in phases:
        checkpoints = {k: str(v) for k, v in (p.meta_checkpoints or {}).items()}
        phase_jobs = []
        for task_id, snapshots_path in p.snapshots_paths.items():
            specs = {s.run_id: s for s in phase_run_specs(config, p.phase, task_id, checkpoints)}
            snapshots = torch.load(snapshots_path, map_location="cpu", weights_only=True)
            data = str(p.data_paths[task_id])
            phase_jobs += [(p.phase, specs[r], data, states, branching) for r, states in snapshots.items() if states]
        log(
            f"{p.phase}: branching {sum(len(job[3]) for job in phase_jobs)} states of {len(phase_jobs)} runs "
            f"over {len(p.snapshots_paths)} tasks, {forks} forks each"
        )
        jobs += phase_jobs
        totals[p.phase] = len(phase_jobs)
    where = " + ".join(p.phase for p in phases)
    log(f"{where}: {len(jobs)} runs to branch on {threads} worker(s)")
    outputs = {p.phase: p.forks_out for p in phases}
    rows: dict[str, list[dict]] = {p.phase: [] for p in phases}
    branched = dict.fromkeys(totals, 0)

    def write(phase: str) -> None:
        frame = forks_frame(rows.pop(phase)).sort("run_id", "step", "multiplier", "fork_seed")
        write_parquet(frame, outputs[phase])
        log(f"{phase}: {frame.height} forks, {int(frame['diverged'].sum())} diverged -> {outputs[phase]}")

    for phase in [phase for phase, total in totals.items() if total == 0]:
        write(phase)  # nothing to branch (every run unbranched): an empty table
    started = time.perf_counter()
    for done, (phase, out) in enumerate(_completed(_label_job, jobs, threads), 1):
        rows[phase] += out
        branched[phase] += 1
        elapsed = time.perf_counter() - started
        left = elapsed / done * (len(jobs) - done)
        log(
            f"[{done}/{len(jobs)}] runs branched, {phase} {branched[phase]}/{totals[phase]} "
            f"({elapsed:.0f} s, ~{left:.0f} s left)"
        )
        if branched[phase] == totals[phase]:
            write(phase)


def fit(
    config: PipelineConfig,
    variant_name: str,
    collect: Mapping[str, Sequence[str | Path]],
    metaval: Mapping[str, Sequence[str | Path]],
    out_dir: str | Path,
) -> None:
    """Fit one meta-learner variant on the labelled collection runs, early-stopped on meta-validation.

    ``collect`` and ``metaval`` map ``runs``, ``trajectories`` and ``forks`` to their files
    (every DAgger round so far). The checkpoint records the variant's inputs, the probe
    cadences they were computed at, the normalisation and the fit.
    """
    from metalr.evaluate import check_leakage
    from metalr.meta.branching import fork_losses, policy_regret, state_labels
    from metalr.meta.checkpoint import checkpoint_metadata, save_checkpoint
    from metalr.meta.dataset import build_sequences, relabel, select_features, shuffle_across_runs
    from metalr.meta.fit import decisions_at_labels, fit_meta_learner
    from metalr.meta.variants import variant
    from metalr.optim import resolve_device

    chosen = variant(config.meta, variant_name)
    check_leakage(config, [*collect["runs"], *metaval["runs"]])
    fraction = config.meta.decision_fraction

    def sequences(files: Mapping[str, Sequence[str | Path]]):
        """(decision sequences with the variant's inputs and hard labels, the forks, the source runs)."""
        if not files["runs"]:
            return [], None, None
        runs = read_parquet_files(files["runs"])
        forks = read_parquet_files(files["forks"])
        found = build_sequences(runs, read_parquet_files(files["trajectories"]), state_labels(forks), fraction)
        if chosen.shuffled:
            budgets = dict(runs.select("run_id", "budget_steps").iter_rows())
            found = shuffle_across_runs(found, budgets, config.meta.seed)
        return select_features(found, chosen.features), forks, runs

    train, train_forks, runs = sequences(collect)
    val, val_forks, _ = sequences(metaval)
    log(f"fit {variant_name}: {len(train)} meta-training sequences, {len(val)} meta-validation sequences")
    device = resolve_device(config.device)
    # Hard labels, and soft ones at each temperature configured: each is judged by the regret of
    # its fitted policy on meta-validation's forks (meta-training's without meta-validation), so
    # soft labels are kept only where they beat hard ones there.
    temperatures = (None, *config.meta.label_temperatures)
    fitting_started = time.perf_counter()
    judged_sequences, judged_forks = (val, val_forks) if val else (train, train_forks)
    if config.meta.label_temperatures:
        judged_labels, judged_losses = state_labels(judged_forks), fork_losses(judged_forks)
    candidates = []
    for temperature in temperatures:
        labels = state_labels(train_forks, temperature)
        train_t = relabel(train, labels)
        val_t = relabel(val, state_labels(val_forks, temperature)) if val else []
        fitted = []
        for point in config.meta.search_points():
            model, report = fit_meta_learner(
                train_t, val_t, point, chosen.arch, chosen.features, device=device, log=log
            )
            score = report.val_loss if report.val_loss is not None else report.train_loss
            log(f"fit {variant_name}: hidden {point.hidden}, meta-LR {point.lr:g}: early-stop score {score:.4f}")
            fitted.append((score, point, model, report))
        _, point, model, report = min(fitted, key=lambda f: f[0])
        if config.meta.label_temperatures:
            regret = policy_regret(decisions_at_labels(model, judged_sequences), judged_labels, judged_losses)
            report = replace(report, label_temperature=temperature, policy_regret=regret)
            log(f"fit {variant_name}: label temperature {temperature}: policy regret {regret}")
        candidates.append((report.policy_regret, point, model, report, labels))
    # A candidate without a scoreable point ranks last; ties go to the earlier (harder) labels.
    _, point, model, report, labels = min(candidates, key=lambda c: math.inf if c[0] is None else c[0])
    # What meta-training cost: this variant's fits (every label temperature), and the forks it learnt from.
    forks = [f for f in (train_forks, val_forks) if f is not None and "wall_time_s" in f.columns]
    compute = {
        "fit_s": time.perf_counter() - fitting_started,
        "forks_s": sum(float(f["wall_time_s"].sum()) for f in forks) if forks else None,
    }
    save_checkpoint(
        model.cpu(),
        {**checkpoint_metadata(config, chosen, point, model, report, labels, runs), "compute": compute},
        out_dir,
    )
    log(
        f"fit {variant_name}: best epoch {report.best_epoch}/{report.epochs_run}, label mse train "
        f"{report.train_loss:.4f} (cosine {report.cosine_train_loss:.4f}), val {report.val_loss} "
        f"(cosine {report.cosine_val_loss}); {report.n_train_labels} labelled states; "
        f"{report.wall_time_s:.1f} s -> {out_dir}"
    )


def fit_variants(
    config: PipelineConfig,
    variants: Sequence[str],
    collect: Mapping[str, Sequence[str | Path]],
    metaval: Mapping[str, Sequence[str | Path]],
    out_dirs: Sequence[str | Path],
    threads: int = 1,
) -> None:
    """``fit`` for several variants of one round, on one pool: a fit takes seconds, as long as a job's start."""
    collect = {k: [str(f) for f in v] for k, v in collect.items()}
    metaval = {k: [str(f) for f in v] for k, v in metaval.items()}
    jobs = [(config, name, collect, metaval, str(out)) for name, out in zip(variants, out_dirs, strict=True)]
    for _ in _completed(fit, jobs, threads):
        pass


def merge_runs(runs_files: Sequence[str | Path], out: str | Path) -> None:
    merged = read_parquet_files(runs_files).sort("phase", "task", "scheduler", "seed")
    write_parquet(merged, out)
    log(f"runs: {merged.height} rows -> {out}")


def compare_schedulers(
    config: PipelineConfig, runs_file: str | Path, eval_trajectories: Sequence[str | Path], out_dir: str | Path
) -> None:
    """The evaluation protocol on the held-out runs: every table under ``results/evaluation``."""
    from metalr.evaluate import evaluate_runs

    runs = read_parquet_files([runs_file]).filter(pl.col("phase") == "eval")
    log(f"evaluate: {runs.height} held-out runs over {runs['task'].n_unique()} tasks")
    evaluation = evaluate_runs(runs, read_parquet_files(eval_trajectories), config.evaluate.bootstrap_resamples)
    evaluation.save(out_dir)
    for r in evaluation.profile_scores.iter_rows(named=True):
        log(f"evaluate: {r['framing']:<17} {r['scheduler']:<12} profile score {r['score']:.3f}")
    for r in evaluation.across_tasks.iter_rows(named=True):
        log(f"evaluate: {r['framing']:<17} meta vs {r['scheduler']:<12} Holm p {r['holm_p']}: {r['verdict']}")
    log(f"evaluate: tables -> {out_dir}")


def summarize_results(
    evaluation_dir: str | Path,
    runs_file: str | Path,
    checkpoint_dirs: Sequence[str | Path],
    summary_parquet: str | Path,
    summary_md: str | Path,
    summary_html: str | Path,
    gain_plot: str | Path,
) -> None:
    """summary.md / .html / .parquet and the gain figure on their first screen, all beside each other's folders."""
    from metalr.evaluate import Evaluation
    from metalr.report import markdown_to_html, plot_gain, summary_markdown

    evaluation = Evaluation.load(evaluation_dir)
    collect = read_parquet_files([runs_file]).filter(pl.col("phase") != "eval")
    infos = [json.loads((Path(d) / "config.json").read_text()) for d in checkpoint_dirs]
    plot_gain(evaluation, gain_plot)
    page_dir = Path(summary_md).parent
    figure = Path(os.path.relpath(gain_plot, page_dir)).as_posix()
    markdown = summary_markdown(evaluation, {info["variant"]: info for info in infos}, collect, figure)
    write_parquet(evaluation.comparisons, summary_parquet)
    with atomic_path(summary_md) as tmp:
        tmp.write_text(markdown)
    with atomic_path(summary_html) as tmp:
        tmp.write_text(markdown_to_html(markdown, base_dir=page_dir))
    log(f"summary -> {summary_md}, {summary_html}, {summary_parquet}, {gain_plot}")


def _main_protocol(runs: pl.DataFrame) -> pl.DataFrame:
    """Eval runs of the baselines and the main meta-scheduler (the figures leave out the other variants)."""
    from metalr.schedulers import META, is_meta

    keep = [s for s in runs["scheduler"].unique().to_list() if s == META or not is_meta(s)]
    return runs.filter((pl.col("phase") == "eval") & pl.col("scheduler").is_in(keep))


def plot_task_curves(runs_file: str | Path, trajectories_file: str | Path, task: str, out: str | Path) -> None:
    from metalr import report

    runs = _main_protocol(read_parquet_files([runs_file]))
    report.plot_task_curves(runs, read_parquet_files([trajectories_file]), task, out)
    log(f"{task}: curves -> {out}")


def plot_lr_gallery(runs_file: str | Path, eval_trajectories: Sequence[str | Path], out: str | Path) -> None:
    from metalr import report

    runs = _main_protocol(read_parquet_files([runs_file]))
    report.plot_lr_gallery(runs, read_parquet_files(eval_trajectories), out)
    log(f"LR-schedule gallery -> {out}")


def plot_performance_profiles(evaluation_dir: str | Path, out: str | Path) -> None:
    from metalr import report
    from metalr.evaluate import Evaluation

    report.plot_performance_profiles(Evaluation.load(evaluation_dir), out)
    log(f"performance profiles -> {out}")
