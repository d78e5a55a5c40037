"""One function per pipeline step. Snakemake rules and the ``metalr`` CLI both call these."""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import polars as pl

from metalr.config import PipelineConfig
from metalr.evaluate import check_leakage
from metalr.io import atomic_path
from metalr.paths import ResultsLayout
from metalr.tasks import SplitData, prepare_dataset
from metalr.trajectories import TrajectoryWriter, read_parquet_files, runs_frame, write_parquet


def log(message: str) -> None:
    print(f"[metalr {time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_data(config: PipelineConfig, dataset: str, out: str | Path) -> None:
    spec = config.dataset(dataset)
    data = prepare_dataset(spec, config.split_seed, config.val_fraction, config.test_fraction, log=log)
    data.save(out)
    log(f"{dataset}: {data.info.sizes} ({data.info.modality}, {data.info.kind}) -> {out}")


def phase_run_specs(
    config: PipelineConfig, phase: str, task_id: str, meta_checkpoints: Mapping[str, str] | None = None
):
    """Every run of one task in one phase.

    collect/metaval: the collection grid, each run at a base LR spread over 10^U(-s, s) and
    snapshotted at the branch points. collect-rN/metaval-rN (DAgger): the meta-scheduler of
    round N-1 on the same tasks, seeds and spread base LRs. eval: every baseline and every
    meta-learner variant at each point of the base-LR grid (ablations at the default only).
    """
    from metalr.config import phase_round
    from metalr.meta.branching import branch_steps
    from metalr.meta.variants import meta_variants
    from metalr.schedulers import META, is_meta, owns_optimizer
    from metalr.train import RunSpec

    checkpoints = dict(meta_checkpoints or {})
    unbranched: set[str] = set()
    task = config.task(task_id)
    if phase == "eval":
        grid = config.evaluate.lr_multipliers
        # (scheduler, base-LR multipliers): ablations run at the task's default base LR only.
        ablations = {v.name for v in meta_variants(config.meta) if v.role == "ablation"}
        variants = [(name, grid) for name in config.evaluate.schedulers]
        variants += [
            (name, (1.0,)) for name in config.evaluate.default_lr_only if name not in config.evaluate.schedulers
        ]
        variants += [(name, (1.0,) if name in ablations else grid) for name in checkpoints]
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
    for name, _ in variants:
        if is_meta(name) and name not in checkpoints:
            raise ValueError(f"phase {phase!r} runs {name!r} but no checkpoint was given for it")

    def spec(name: str, seed: int, multiplier: float) -> RunSpec:
        return RunSpec(
            phase=phase,
            task=task,
            scheduler=name,
            seed=seed,
            device=config.device,
            divergence_factor=config.divergence_factor,
            loss_ema_beta=config.loss_ema_beta,
            meta_checkpoint=checkpoints.get(name),
            lr_multiplier=multiplier,
            snapshot_steps=() if name in unbranched else snapshot_steps,
        )

    return [
        spec(name, seed, m)
        for seed in range(seeds)
        for name, multipliers in variants
        # Collection draws each run's base-LR multiplier from the run's identity.
        for m in (multipliers or (config.collect.lr_multiplier(task_id, name, seed),))
    ]


@functools.cache
def _cached_data(path: str) -> SplitData:
    return SplitData.load(path)


def job_threads(config: PipelineConfig, phase: str, task_id: str) -> int:
    """Worker processes a training job deserves: starting one costs seconds (torch's import), so a job
    of a few short runs trains them in its own process and leaves the other cores to other jobs."""
    runs = len(phase_run_specs(config, phase, task_id, phase_meta_checkpoints(config, ResultsLayout(), phase)))
    return config.threads if runs >= 4 * config.threads else 1


def phase_meta_checkpoints(config: PipelineConfig, layout: ResultsLayout, phase: str) -> dict[str, str]:
    """The fitted meta-learners a phase runs, by scheduler name: every variant of the last DAgger
    round in eval, the main model of round N-1 in collect-rN / metaval-rN, none in round 0."""
    from metalr.config import phase_round
    from metalr.meta.variants import META, meta_variants

    if phase == "eval":
        return {v.name: layout.checkpoint(v.name, config.meta.dagger_rounds) for v in meta_variants(config.meta)}
    round = phase_round(phase)
    return {META: layout.checkpoint(META, round - 1)} if round else {}


def _completed(func, jobs: Sequence[tuple], threads: int):
    """``func(*job)`` for every job, yielded as each finishes: in this process for one
    worker or one job, else on a pool of ``threads`` spawned single-threaded workers."""
    if threads <= 1 or len(jobs) <= 1:
        _init_worker()
        for job in jobs:
            yield func(*job)
        return
    context = multiprocessing.get_context("spawn")
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
    checkpoints = {name: str(path) for name, path in (meta_checkpoints or {}).items()}
    specs = phase_run_specs(config, phase, task_id, checkpoints)
    resume = None if resume_dir is None else str(resume_dir)
    from metalr.train import resolve_device

    log(f"{phase}/{task_id}: {len(specs)} runs on {threads} worker(s), device {resolve_device(config.device)}")
    if resume is not None and Path(resume).is_dir():
        kept = sorted(p.suffix for p in Path(resume).iterdir())
        log(
            f"{phase}/{task_id}: an earlier attempt left {kept.count('.done')} finished run(s) and "
            f"{kept.count('.ckpt')} checkpoint(s) in {resume}; resuming"
        )
    results = []
    started = time.perf_counter()

    def report(result) -> None:
        row = result.row
        results.append(result)
        metric = "n/a" if row.get("test_metric") is None else f"{row['test_metric']:.4f}"
        wall = "n/a" if row.get("wall_time_s") is None else f"{row['wall_time_s']:.1f}"
        multiplier = row.get("lr_multiplier", 1.0)
        name = row["scheduler"] + ("" if multiplier == 1.0 else f" lr x{multiplier:.3g}")
        elapsed = time.perf_counter() - started
        left = elapsed / len(results) * (len(specs) - len(results))
        log(
            f"[{len(results)}/{len(specs)}] {name:<18} seed={row['seed']} {row['status']:<8} "
            f"test_{row['metric']}={metric} steps={row['steps_done']} ({wall} s; "
            f"{elapsed:.0f} s elapsed, ~{left:.0f} s left)"
            + (f" error: {row['error']}" if row.get("error") else "")
            + (" finished in an earlier attempt, skipped" if result.skipped else "")
            + (f" resumed from step {result.resumed_from}" if result.resumed_from else "")
        )

    args = (str(data_path), resume, config.checkpoint_every, config.checkpoint_min_interval_s)
    for result in _completed(_execute, [(spec, *args) for spec in specs], threads):
        report(result)
    order = {spec.run_id: i for i, spec in enumerate(specs)}
    results.sort(key=lambda r: order[r.row["run_id"]])
    if results and all(r.row["status"] == "failed" for r in results):
        # Nothing to learn from or evaluate: fail the job (Snakemake stops) rather than write failed rows.
        first = results[0].row["error"]
        raise RunsFailedError(f"{phase}/{task_id}: all {len(results)} runs failed; the first: {first}")
    with TrajectoryWriter(trajectories_out) as writer:
        for result in results:
            writer.write(result.trajectory)
    runs = runs_frame([r.row for r in results])
    write_parquet(runs, runs_out)
    if snapshots_out is not None:
        import torch

        with atomic_path(snapshots_out) as tmp:
            torch.save({r.row["run_id"]: r.snapshots for r in results}, tmp)
        kept = sum(len(r.snapshots) for r in results)
        log(f"{phase}/{task_id}: {kept} branch-point states of {len(results)} runs -> {snapshots_out}")
    if resume is not None:
        from metalr.resume import RunCheckpoints

        RunCheckpoints(resume, 0).clear()
    counts = runs["status"].value_counts().sort("status").rows()
    log(f"{phase}/{task_id}: done, status counts {dict(counts)}")


def leakage_report(config: PipelineConfig, runs_files: Sequence[str | Path], out: str | Path) -> None:
    report = check_leakage(config, runs_files)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    log(f"leakage check passed: fit reads tasks {report['fit_tasks']}, held out {sorted(report['held_out'])}")


def _label_job(spec, data_path: str, snapshots: list[dict], branching) -> list[dict]:
    from metalr.meta.branching import label_snapshots

    return label_snapshots(spec, _cached_data(data_path), snapshots, branching)


def label_branch_points(
    config: PipelineConfig,
    phase: str,
    data_paths: Mapping[str, str | Path],
    snapshots_paths: Mapping[str, str | Path],
    forks_out: str | Path,
    meta_checkpoints: Mapping[str, str | Path] | None = None,
    threads: int = 1,
) -> None:
    """The branching expert on one collection phase: fork every snapshot at every multiplier and seed.

    ``data_paths`` and ``snapshots_paths`` map each task of the phase to its prepared data
    and to its collection job's snapshots. One job per phase: the forks of a task take
    seconds, less than a job's start-up.
    """
    import torch

    from metalr.meta.branching import forks_frame

    checkpoints = {k: str(v) for k, v in (meta_checkpoints or {}).items()}
    jobs = []
    for task_id, snapshots_path in snapshots_paths.items():
        specs = {s.run_id: s for s in phase_run_specs(config, phase, task_id, checkpoints)}
        snapshots = torch.load(snapshots_path, map_location="cpu", weights_only=True)
        jobs += [(specs[run_id], str(data_paths[task_id]), states) for run_id, states in snapshots.items() if states]
    branching = config.meta.branching
    forks = len(branching.multipliers) * branching.seeds
    log(
        f"{phase}: branching {sum(len(s) for *_, s in jobs)} states of {len(jobs)} runs over "
        f"{len(snapshots_paths)} tasks, {forks} forks each, on {threads} worker(s)"
    )
    rows, started = [], time.perf_counter()

    def report(done: int) -> None:
        elapsed = time.perf_counter() - started
        left = elapsed / done * (len(jobs) - done)
        log(f"{phase}: [{done}/{len(jobs)}] runs branched ({elapsed:.0f} s, ~{left:.0f} s left)")

    labelled = _completed(_label_job, [(*job, branching) for job in jobs], threads)
    for done, out in enumerate(labelled, 1):
        rows += out
        report(done)
    frame = forks_frame(rows).sort("run_id", "step", "multiplier", "fork_seed")
    write_parquet(frame, forks_out)
    log(f"{phase}: {frame.height} forks, {int(frame['diverged'].sum())} diverged -> {forks_out}")


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
    from metalr.meta.branching import state_labels
    from metalr.meta.checkpoint import save_checkpoint
    from metalr.meta.dataset import build_sequences, select_features, shuffle_across_runs
    from metalr.meta.fit import fit_meta_learner
    from metalr.meta.variants import variant
    from metalr.train import resolve_device

    chosen = variant(config.meta, variant_name)
    check_leakage(config, [*collect["runs"], *metaval["runs"]])
    fraction = config.meta.decision_fraction

    def sequences(files: Mapping[str, Sequence[str | Path]]):
        """(decision sequences with the variant's inputs, the state labels, the source runs)."""
        if not files["runs"]:
            return [], None, None
        runs = read_parquet_files(files["runs"])
        labels = state_labels(read_parquet_files(files["forks"]))
        found = build_sequences(runs, read_parquet_files(files["trajectories"]), labels, fraction)
        if chosen.shuffled:
            budgets = dict(runs.select("run_id", "budget_steps").iter_rows())
            found = shuffle_across_runs(found, budgets, config.meta.seed)
        return select_features(found, chosen.features), labels, runs

    train, labels, runs = sequences(collect)
    val, _, _ = sequences(metaval)
    log(f"fit {variant_name}: {len(train)} meta-training sequences, {len(val)} meta-validation sequences")
    device = resolve_device(config.device)
    fitted = []
    for point in config.meta.search_points():
        model, report = fit_meta_learner(train, val, point, chosen.arch, device=device, log=log)
        score = report.val_loss if report.val_loss is not None else report.train_loss
        log(f"fit {variant_name}: hidden {point.hidden}, meta-LR {point.lr:g}: early-stop score {score:.4f}")
        fitted.append((score, point, model, report))
    _, point, model, report = min(fitted, key=lambda f: f[0])
    probes = {config.tasks[t].probes for t in runs["task"].unique().to_list()}
    save_checkpoint(
        model.cpu(),
        {
            **{
                k: v
                for k, v in asdict(point).items()
                if k not in ("architectures", "controls", "ablations", "search_hidden", "search_lr")
            },
            "searched": {
                "hidden": [p.hidden for p in config.meta.search_points()],
                "lr": [p.lr for p in config.meta.search_points()],
            },
            "variant": variant_name,
            "role": chosen.role,
            "about": chosen.about,
            "arch": chosen.arch,
            "features": list(chosen.features),
            "shuffled_inputs": chosen.shuffled,
            "probe_cadences": [asdict(p) for p in probes],
            "normalisation": {
                "mean": model.input_mean.tolist(),
                "std": model.input_std.tolist(),
                "fallback_z": config.meta.fallback_z,
            },
            "objective": (
                "branching expert: per branch point, the LR multiplier with the lowest final validation loss "
                "(mean over fork seeds), as an absolute log-multiplier on cosine"
            ),
            "label_counts": {
                f"{m:g}": n for m, n in labels.group_by("best_multiplier").len().sort("best_multiplier").iter_rows()
            },
            "trained_on": runs.select("task", "task_hash").unique().sort("task").to_dicts(),
            "trained_on_phases": sorted(runs["phase"].unique().to_list()),
            "fit": asdict(report),
        },
        out_dir,
    )
    log(
        f"fit {variant_name}: best epoch {report.best_epoch}/{report.epochs_run}, label mse train "
        f"{report.train_loss:.4f} (cosine {report.cosine_train_loss:.4f}), val {report.val_loss} "
        f"(cosine {report.cosine_val_loss}); {report.n_train_labels} labelled states; "
        f"{report.wall_time_s:.1f} s -> {out_dir}"
    )


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
) -> None:
    from metalr.evaluate import Evaluation
    from metalr.report import markdown_to_html, summary_markdown

    evaluation = Evaluation.load(evaluation_dir)
    collect = read_parquet_files([runs_file]).filter(pl.col("phase") != "eval")
    infos = [json.loads((Path(d) / "config.json").read_text()) for d in checkpoint_dirs]
    markdown = summary_markdown(evaluation, {info["variant"]: info for info in infos}, collect)
    write_parquet(evaluation.comparisons, summary_parquet)
    with atomic_path(summary_md) as tmp:
        tmp.write_text(markdown)
    with atomic_path(summary_html) as tmp:
        tmp.write_text(markdown_to_html(markdown))
    log(f"summary -> {summary_md}, {summary_html}, {summary_parquet}")


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


def list_tasks(config: PipelineConfig, layout, out=print) -> None:
    """One line per task: id, role, modality, model, split sizes, parameter count, data source.

    Sizes and parameter counts come from the prepared data when ``prepare_data`` has run,
    otherwise the dataset is prepared in memory; a dataset that cannot be loaded is
    reported on its line instead.
    """
    from metalr.tasks import DataError, build_model, count_parameters

    roles = {t: phase for phase in ("meta_train", "meta_val", "held_out") for t in getattr(config, phase)}
    infos: dict[str, object] = {}
    for name in sorted({t.dataset for t in config.tasks.values()}):
        prepared = Path(layout.data(name)) / "info.json"
        try:
            if prepared.is_file():
                infos[name] = SplitData.load_info(prepared.parent)
            else:
                spec = config.dataset(name)
                infos[name] = prepare_dataset(spec, config.split_seed, config.val_fraction, config.test_fraction).info
        except DataError as err:
            infos[name] = str(err).splitlines()[0]
    header = f"{'task':<24} {'role':<10} {'modality':<10} {'model':<24} {'train/val/test':<20} {'params':>11}  source"
    out(header)
    for task_id, task in config.tasks.items():
        spec, info = config.dataset(task.dataset), infos[task.dataset]
        model = f"{task.model.family} w{task.model.width} d{task.model.depth}"
        if isinstance(info, str):
            sizes, params = "-", "-"
        else:
            # The task's own training size: its subset of the training split.
            train = max(1, round(task.subset * info.sizes["train"]))
            sizes = "/".join(str(n) for n in (train, info.sizes["val"], info.sizes["test"]))
            params = f"{count_parameters(build_model(task.model, info)):,}"
        line = f"{task_id:<24} {roles.get(task_id, '-'):<10} {spec.modality:<10} {model:<24} {sizes:<20} {params:>11}"
        out(f"{line}  {spec.describe()}" + (f"  [unavailable: {info}]" if isinstance(info, str) else ""))
