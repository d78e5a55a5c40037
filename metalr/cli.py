"""The ``metalr`` command: every pipeline step, runnable and debuggable outside Snakemake.

Paths default to the standard results layout (``metalr.paths.ResultsLayout``) under the
config's ``results:`` folder, so
``metalr train-runs --config config/config.yaml --phase collect --task digits-mlp-00`` writes
exactly what the Snakemake rule would.

torch, polars and the pipeline are imported inside the subcommands that use them, so that
``metalr --help``, ``metalr schedulers``, ``metalr tasks`` and ``metalr validate`` answer in
well under a second (tests/test_cli.py times them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from metalr import __version__
from metalr.config import ConfigError, PipelineConfig, default_config_path, load_config
from metalr.paths import ResultsLayout

DEFAULT_CONFIG = "config/config.yaml"


def _phase_files(config: PipelineConfig, layout: ResultsLayout, phase: str, kind: str) -> list[str]:
    path = layout.runs_part if kind == "runs" else layout.trajectories
    return [path(phase, task) for task in config.phase_tasks(phase)]


def _collection_phases(config: PipelineConfig, up_to_round: int | None = None) -> list[str]:
    return [p for base in ("collect", "metaval") for p in config.collection_phases(base, up_to_round)]


def _cmd_prepare_data(args, config, layout) -> None:
    from metalr.pipeline import prepare_data

    datasets = [args.dataset] if args.dataset else config.datasets()
    for dataset in datasets:
        prepare_data(config, dataset, layout.data(dataset))


def _cmd_train_runs(args, config, layout) -> None:
    from metalr.pipeline import phase_meta_checkpoints, train_runs

    task = config.task(args.task)
    collection = args.phase != "eval"
    train_runs(
        config,
        args.phase,
        task.task_id,
        layout.data(task.dataset),
        layout.trajectories(args.phase, task.task_id),
        layout.runs_part(args.phase, task.task_id),
        threads=args.threads,
        meta_checkpoints=phase_meta_checkpoints(config, layout, args.phase),
        resume_dir=layout.resume(args.phase, task.task_id),
        snapshots_out=layout.snapshots(args.phase, task.task_id) if collection else None,
    )


def _cmd_label(args, config, layout) -> None:
    from metalr.pipeline import label_branch_points, phase_meta_checkpoints

    tasks = config.phase_tasks(args.phase)
    label_branch_points(
        config,
        args.phase,
        {t: layout.data(config.task(t).dataset) for t in tasks},
        {t: layout.snapshots(args.phase, t) for t in tasks},
        layout.forks(args.phase),
        meta_checkpoints=phase_meta_checkpoints(config, layout, args.phase),
        threads=args.threads,
    )


def _cmd_check_leakage(args, config, layout) -> None:
    from metalr.pipeline import leakage_report

    files = [f for phase in _collection_phases(config) for f in _phase_files(config, layout, phase, "runs")]
    leakage_report(config, files, layout.leakage_report())


def _cmd_fit(args, config, layout) -> None:
    from metalr.pipeline import fit

    round = config.meta.dagger_rounds if args.round is None else args.round

    def files(base: str) -> dict[str, list[str]]:
        phases = [p for p in config.collection_phases(base, round) if config.phase_tasks(p)]
        return {
            "runs": [f for p in phases for f in _phase_files(config, layout, p, "runs")],
            "trajectories": [f for p in phases for f in _phase_files(config, layout, p, "trajectories")],
            "forks": [layout.forks(p) for p in phases],
        }

    fit(config, args.variant, files("collect"), files("metaval"), layout.checkpoint(args.variant, round))


def _cmd_merge_runs(args, config, layout) -> None:
    from metalr.pipeline import merge_runs

    phases = [*_collection_phases(config), "eval"]
    merge_runs([f for phase in phases for f in _phase_files(config, layout, phase, "runs")], layout.runs())


def _cmd_compare(args, config, layout) -> None:
    from metalr.pipeline import compare_schedulers

    compare_schedulers(
        config, layout.runs(), _phase_files(config, layout, "eval", "trajectories"), layout.evaluation_dir()
    )


def _cmd_summarize(args, config, layout) -> None:
    from metalr.pipeline import phase_meta_checkpoints, summarize_results

    summarize_results(
        layout.evaluation_dir(),
        layout.runs(),
        list(phase_meta_checkpoints(config, layout, "eval").values()),
        layout.summary_parquet(),
        layout.summary_md(),
        layout.summary_html(),
        layout.gain_plot(),
    )


def _cmd_plot(args, config, layout) -> None:
    from metalr.pipeline import plot_lr_gallery, plot_performance_profiles, plot_task_curves

    for task in config.held_out:
        plot_task_curves(layout.runs(), layout.trajectories("eval", task), task, layout.task_curves_plot(task))
    plot_lr_gallery(layout.runs(), _phase_files(config, layout, "eval", "trajectories"), layout.lr_gallery_plot())
    plot_performance_profiles(layout.evaluation_dir(), layout.profiles_plot())


def _cmd_inspect(args, config, layout) -> None:
    from metalr.inspection import inspect_text

    print(inspect_text(args.path))


def _cmd_tasks(args, config, layout) -> None:
    list_tasks(config, layout, sizes=args.sizes)


def list_tasks(config: PipelineConfig, layout: ResultsLayout, sizes: bool = False, out: Callable = print) -> None:
    """One line per task: id, role, modality, model, data source; with ``sizes``, split sizes and parameter count.

    Sizes and parameter counts come from the prepared data when ``prepare_data`` has run,
    otherwise the dataset is prepared in memory; a dataset that cannot be loaded is
    reported on its line instead. They need the data and torch, hence the flag.
    """
    roles = {t: phase for phase in ("meta_train", "meta_val", "held_out") for t in getattr(config, phase)}
    infos: dict[str, object] = {}
    if sizes:
        from metalr.tasks import DataError, SplitData, build_model, count_parameters, prepare_dataset

        for name in sorted({t.dataset for t in config.tasks.values()}):
            prepared = Path(layout.data(name)) / "info.json"
            try:
                if prepared.is_file():
                    infos[name] = SplitData.load_info(prepared.parent)
                else:
                    split = (config.split_seed, config.val_fraction, config.test_fraction)
                    infos[name] = prepare_dataset(config.dataset(name), *split).info
            except DataError as err:
                infos[name] = str(err).splitlines()[0]
    columns = f" {'train/val/test':<20} {'params':>11}" if sizes else ""
    out(f"{'task':<24} {'role':<10} {'modality':<10} {'model':<24}{columns}  source")
    for task_id, task in config.tasks.items():
        spec = config.dataset(task.dataset)
        model = f"{task.model.family} w{task.model.width} d{task.model.depth}"
        line = f"{task_id:<24} {roles.get(task_id, '-'):<10} {spec.modality:<10} {model:<24}"
        info = infos.get(task.dataset)
        if sizes and isinstance(info, str):
            line += f" {'-':<20} {'-':>11}"
        elif sizes:
            # The task's own training size: its subset of the training split.
            train = max(1, round(task.subset * info.sizes["train"]))
            split = "/".join(str(n) for n in (train, info.sizes["val"], info.sizes["test"]))
            line += f" {split:<20} {count_parameters(build_model(task.model, info)):>11,}"
        out(f"{line}  {spec.describe()}" + (f"  [unavailable: {info}]" if isinstance(info, str) else ""))


def _cmd_schedulers(args, config, layout) -> None:
    from metalr.schedulers import REGISTRY

    width = max(map(len, REGISTRY))
    for name, entry in REGISTRY.items():
        print(f"{name:<{width}}  {entry.description}")


def _cmd_validate(args, config, layout) -> None:
    print(
        f"config OK: {len(config.tasks)} tasks; meta_train {list(config.meta_train)}, "
        f"meta_val {list(config.meta_val)}, held_out {list(config.held_out)}"
    )


def _cmd_export_pretrained(args, config, layout) -> None:
    from metalr.meta.pretrained import export_pretrained

    if args.config is None:
        raise ConfigError("export-pretrained needs --config, the config the checkpoint was fitted with")
    target = export_pretrained(
        args.checkpoint,
        args.config,
        args.name,
        commit=args.commit,
        results=args.evaluated,
        notes=args.notes,
        destination=args.to,
    )
    print(f"exported {args.checkpoint} (fitted with {args.config}) to {target}")


def _phase(text: str) -> str:
    if re.fullmatch(r"(collect|metaval)(-r[1-9][0-9]*)?|eval", text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a phase; use collect, metaval, eval, or collect-r1 ...")
    return text


# (name, one-line help, description, example) of every subcommand: `metalr NAME --help`
# prints the description and the example.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": (
        "validate the config and print what it declares",
        "Check a config against the schema (metalr/schemas/config.schema.yaml) and the cross-field rules; "
        "an error names the field and the allowed values.",
        "metalr validate --config config/smoke.yaml",
    ),
    "tasks": (
        "list every task: id, role, modality, model, source (--sizes: split sizes, parameter count)",
        "List the config's tasks. --sizes adds each task's train/val/test sizes and its model's parameter "
        "count; it reads the prepared data (or prepares it in memory) and builds each model.",
        "metalr tasks --config config/smoke.yaml --sizes",
    ),
    "schedulers": (
        "list every registered scheduler name with a one-line description",
        "List the scheduler names a config's collect.schedulers and evaluate.schedulers accept.",
        "metalr schedulers",
    ),
    "prepare-data": (
        "carve train/val/test splits for one or all datasets",
        "Load a dataset, carve its fixed splits and write them under RESULTS/data.",
        "metalr prepare-data --config config/smoke.yaml --dataset wine",
    ),
    "train-runs": (
        "train all (scheduler, seed) runs of one task in one phase",
        "Train every (scheduler, seed) run of one task in one phase; writes its trajectories and run rows.",
        "metalr train-runs --config config/smoke.yaml --phase metaval --task wine-mlp --threads 2",
    ),
    "label": (
        "the branching expert: fork a collection phase's snapshots, write the forks",
        "Fork every snapshot of a collection phase with each LR multiplier and write the labelled forks.",
        "metalr label --config config/smoke.yaml --phase metaval",
    ),
    "check-leakage": (
        "refuse if a held-out task reaches the meta-learner's inputs",
        "Check that no held-out task's data reaches the meta-learner's training rows; fails if one does.",
        "metalr check-leakage --config config/smoke.yaml",
    ),
    "fit": (
        "fit a meta-learner variant on the labelled collection runs",
        "Fit one meta-learner variant on the labelled collection runs and write its checkpoint.",
        "metalr fit --config config/smoke.yaml --variant meta",
    ),
    "merge-runs": (
        "merge per-job run rows into runs.parquet",
        "Merge the per-job run rows of every phase into RESULTS/runs.parquet.",
        "metalr merge-runs --config config/smoke.yaml",
    ),
    "compare": (
        "run the evaluation protocol on the held-out runs (results/evaluation)",
        "Compare the schedulers on the held-out runs: targets, statistics, profiles (RESULTS/evaluation).",
        "metalr compare --config config/smoke.yaml",
    ),
    "summarize": (
        "write summary.md, summary.html and summary.parquet",
        "Write the results summary (Markdown, HTML, Parquet) from the evaluation.",
        "metalr summarize --config config/smoke.yaml",
    ),
    "plot": (
        "draw the per-task curves, the LR-schedule gallery and the performance profiles",
        "Draw the per-task curves, the LR-schedule gallery and the performance profiles.",
        "metalr plot --config config/smoke.yaml",
    ),
    "export-pretrained": (
        "ship a fitted checkpoint as metalr/pretrained/<name> with provenance",
        "Copy a fitted meta-learner checkpoint into the package (metalr/pretrained/<name>/) and record its "
        "provenance (the --config it was fitted with, its hash, the commit, the tasks it saw) and file hashes.",
        "metalr export-pretrained results/pretrain/meta/round-1/meta --config config/pretrain.yaml",
    ),
    "inspect": (
        "summarise any results Parquet file or folder (no config needed)",
        "Summarise a results Parquet file or folder per task and scheduler.",
        "metalr inspect results/trajectories",
    ),
}


def default_config() -> str:
    """config/config.yaml in a checkout; the copy shipped in the package elsewhere (a wheel install)."""
    if Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    return str(default_config_path())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metalr",
        description="metalr: learned learning-rate schedules. Every pipeline step runs as a command here, "
        "writing what the Snakemake rule would; schedulers, tasks and validate need no extras.",
        epilog="Run `metalr COMMAND --help` for a command's description and an example.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        default=None,
        help=f"pipeline config YAML (default: {DEFAULT_CONFIG}, or the shipped one outside a checkout)",
    )
    parser.add_argument("--results", help="results directory (default: the config's `results:` setting)")
    # The same two options are accepted after the subcommand too (``metalr tasks --config FILE``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="pipeline config YAML")
    common.add_argument("--results", default=argparse.SUPPRESS, help="results directory")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_parser(name: str, func: Callable, needs_config: bool = True) -> argparse.ArgumentParser:
        help, description, example = SUBCOMMANDS[name]
        p = sub.add_parser(
            name,
            parents=[common],
            help=help,
            description=description,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func, needs_config=needs_config)
        return p

    add_parser("validate", _cmd_validate)
    p = add_parser("tasks", _cmd_tasks)
    p.add_argument("--sizes", action="store_true", help="add split sizes and parameter counts (loads data and torch)")
    add_parser("schedulers", _cmd_schedulers, needs_config=False)
    p = add_parser("prepare-data", _cmd_prepare_data)
    p.add_argument("--dataset", help="one dataset (default: every dataset the config uses)")
    p = add_parser("train-runs", _cmd_train_runs)
    p.add_argument("--phase", type=_phase, required=True, help="collect, metaval, eval, or a DAgger round: collect-r1")
    p.add_argument("--task", required=True)
    p.add_argument("--threads", type=int, default=1, help="parallel single-threaded runs (default: %(default)s)")
    p = add_parser("label", _cmd_label)
    p.add_argument("--phase", type=_phase, required=True, help="collect, metaval, or a DAgger round: collect-r1")
    p.add_argument("--threads", type=int, default=1, help="parallel single-threaded forks (default: %(default)s)")
    add_parser("check-leakage", _cmd_check_leakage)
    p = add_parser("fit", _cmd_fit)
    p.add_argument("--variant", default="meta", help="meta, meta-gru, meta-progress-only, ... (default: %(default)s)")
    p.add_argument("--round", type=int, help="DAgger round whose data it reads (default: the config's last)")
    add_parser("merge-runs", _cmd_merge_runs)
    add_parser("compare", _cmd_compare)
    add_parser("summarize", _cmd_summarize)
    add_parser("plot", _cmd_plot)
    p = add_parser("inspect", _cmd_inspect, needs_config=False)
    p.add_argument("path", help="a .parquet file, or a folder such as results/trajectories (or results/<name>/...)")
    p = add_parser("export-pretrained", _cmd_export_pretrained, needs_config=False)
    p.add_argument("checkpoint", help="a fitted checkpoint directory, e.g. results/meta/round-1/meta")
    p.add_argument("--name", default="default", help="shipped name (default: %(default)s)")
    p.add_argument("--to", default=None, help="write here instead of metalr/pretrained/<name>")
    p.add_argument("--evaluated", default=None, help="results directory whose summary.parquet holds held-out results")
    p.add_argument("--commit", default=None, help="the commit that fitted it (default: git HEAD of the config's repo)")
    p.add_argument("--notes", default=None, help="free text kept in the provenance (e.g. the fitting's CPU time)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from metalr.errors import message, user_errors

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        config = load_config(args.config or default_config()) if args.needs_config else None
        args.func(args, config, ResultsLayout(args.results or (config.results if config else "results")))
    except user_errors() as err:
        print(message(err), file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] == "metalr":
            raise
        # A core install runs the scheduler commands; the pipeline's need its extra.
        print(message(f"`metalr {args.command}` needs {err.name}: pip install 'metalr[pipeline]'"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
