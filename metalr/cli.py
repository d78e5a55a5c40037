"""The ``metalr`` command: every pipeline step, runnable and debuggable outside Snakemake.

Paths default to the standard results layout (``metalr.paths.ResultsLayout``), so
``metalr train-runs --config config/config.yaml --phase collect --task digits-mlp`` writes
exactly what the Snakemake rule would.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Sequence

from metalr.config import PipelineConfig, load_config
from metalr.paths import ResultsLayout


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
    from metalr.pipeline import list_tasks

    list_tasks(config, layout)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalr", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml", help="pipeline config YAML (default: %(default)s)")
    parser.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    # The same two options are accepted after the subcommand too (``metalr tasks --config FILE``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="pipeline config YAML")
    common.add_argument("--results", default=argparse.SUPPRESS, help="results directory")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = functools.partial(sub.add_parser, parents=[common])

    p = add_parser("validate", help="validate the config and print what it declares")
    p.set_defaults(func=_cmd_validate)
    p = add_parser("tasks", help="list every task: id, modality, sizes, parameter count, source")
    p.set_defaults(func=_cmd_tasks)
    p = add_parser("schedulers", help="list every registered scheduler name with a one-line description")
    p.set_defaults(func=_cmd_schedulers, needs_config=False)
    p = add_parser("prepare-data", help="carve train/val/test splits for one or all datasets")
    p.add_argument("--dataset", help="one dataset (default: every dataset the config uses)")
    p.set_defaults(func=_cmd_prepare_data)
    p = add_parser("train-runs", help="train all (scheduler, seed) runs of one task in one phase")
    p.add_argument("--phase", type=_phase, required=True, help="collect, metaval, eval, or a DAgger round: collect-r1")
    p.add_argument("--task", required=True)
    p.add_argument("--threads", type=int, default=1, help="parallel single-threaded runs (default: %(default)s)")
    p.set_defaults(func=_cmd_train_runs)
    p = add_parser("label", help="the branching expert: fork a collection phase's snapshots, write the forks")
    p.add_argument("--phase", type=_phase, required=True, help="collect, metaval, or a DAgger round: collect-r1")
    p.add_argument("--threads", type=int, default=1, help="parallel single-threaded forks (default: %(default)s)")
    p.set_defaults(func=_cmd_label)
    p = add_parser("check-leakage", help="refuse if a held-out task reaches the meta-learner's inputs")
    p.set_defaults(func=_cmd_check_leakage)
    p = add_parser("fit", help="fit a meta-learner variant on the labelled collection runs")
    p.add_argument("--variant", default="meta", help="meta, meta-gru, meta-progress-only, ... (default: %(default)s)")
    p.add_argument("--round", type=int, help="DAgger round whose data it reads (default: the config's last)")
    p.set_defaults(func=_cmd_fit)
    p = add_parser("merge-runs", help="merge per-job run rows into runs.parquet")
    p.set_defaults(func=_cmd_merge_runs)
    p = add_parser("compare", help="run the evaluation protocol on the held-out runs (results/evaluation)")
    p.set_defaults(func=_cmd_compare)
    p = add_parser("summarize", help="write summary.md, summary.html and summary.parquet")
    p.set_defaults(func=_cmd_summarize)
    p = add_parser("plot", help="draw the per-task curves, the LR-schedule gallery and the performance profiles")
    p.set_defaults(func=_cmd_plot)
    p = add_parser("inspect", help="summarise any results Parquet file or folder (no config needed)")
    p.add_argument("path", help="a .parquet file, or a folder such as results/trajectories")
    p.set_defaults(func=_cmd_inspect, needs_config=False)
    p = add_parser(
        "export-pretrained",
        help="ship a fitted checkpoint as metalr/pretrained/<name> with provenance",
        description="Copy a fitted meta-learner checkpoint into the package (metalr/pretrained/<name>/) and "
        "record its provenance (the --config it was fitted with, its hash, the commit, the tasks it saw) and "
        "file hashes. Example: metalr export-pretrained results/meta/round-1/meta --config config/pretrain.yaml",
    )
    p.add_argument("checkpoint", help="a fitted checkpoint directory, e.g. results/meta/round-1/meta")
    p.add_argument("--name", default="default", help="shipped name (default: %(default)s)")
    p.add_argument("--to", default=None, help="write here instead of metalr/pretrained/<name>")
    p.add_argument("--evaluated", default=None, help="results directory whose summary.parquet holds held-out results")
    p.add_argument("--commit", default=None, help="the commit that fitted it (default: git HEAD of the config's repo)")
    p.add_argument("--notes", default=None, help="free text kept in the provenance (e.g. the fitting's CPU time)")
    p.set_defaults(func=_cmd_export_pretrained, needs_config=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from metalr.errors import message, user_errors

    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config) if getattr(args, "needs_config", True) else None
        args.func(args, config, ResultsLayout(args.results))
    except user_errors() as err:
        print(message(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
