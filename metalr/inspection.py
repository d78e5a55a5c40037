"""``metalr inspect PATH``: a quick terminal summary of any results Parquet file or folder."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from metalr.config import PipelineConfig
from metalr.paths import ResultsLayout
from metalr.trajectories import ParquetInputError

GROUP_KEYS = ("framing", "phase", "task", "scheduler")
# The columns worth a mean in each kind of results table, best first; others are left out.
PREFERRED = (
    "score",
    "test_metric",
    "norm_score",
    "mean",
    "norm_mean",
    "meta_gain",
    "mean_norm_gain",
    "holm_p",
    "final_val_metric",
    "final_val_loss",
    "steps_to_target",
    "val_loss",
    "loss_train",
    "lr",
    "wall_time_s",
    "time",
    "ratio",
)
MAX_AGGREGATES = 5


def read_results(path: str | Path) -> pl.DataFrame:
    """One Parquet file, or every ``*.parquet`` under a folder (hive partitions like ``phase=eval`` become columns)."""
    path = Path(path)
    if not path.exists():
        raise ParquetInputError(f"{str(path)!r} does not exist; give a .parquet file or a folder of them")
    try:
        if path.is_dir():
            if not any(path.rglob("*.parquet")):
                raise ParquetInputError(f"no .parquet files under {str(path)!r}")
            return pl.scan_parquet(path / "**" / "*.parquet", hive_partitioning=True).collect()
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise ParquetInputError(f"cannot read {str(path)!r} as Parquet: {err}") from err


def column_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Name, type, null count and an example value of every column."""
    return pl.DataFrame(
        {
            "column": frame.columns,
            "dtype": [str(t) for t in frame.dtypes],
            "nulls": [frame[c].null_count() for c in frame.columns],
            "example": [_example(frame[c]) for c in frame.columns],
        }
    )


def _example(series: pl.Series) -> str:
    values = series.drop_nulls()
    text = "" if values.is_empty() else str(values[0])
    return text if len(text) <= 40 else text[:37] + "..."


def aggregate_table(frame: pl.DataFrame) -> pl.DataFrame | None:
    """Rows and the means of the most telling numeric columns per task x scheduler (whatever keys exist)."""
    keys = [k for k in GROUP_KEYS if k in frame.columns]
    if not keys:
        return None
    numeric = [c for c in PREFERRED if c in frame.columns and frame.schema[c].is_numeric()][:MAX_AGGREGATES]
    aggregates = [pl.len().alias("rows")]
    if "run_id" in frame.columns:
        aggregates.append(pl.col("run_id").n_unique().alias("runs"))
    if "status" in frame.columns:
        aggregates.append((pl.col("status") != "ok").sum().alias("not_ok"))
    # Infinite values mark misses (time to target); a mean over them would be meaningless.
    aggregates += [pl.col(c).filter(pl.col(c).is_finite()).mean().alias(f"mean_{c}") for c in numeric]
    return frame.group_by(keys).agg(aggregates).sort(keys)


def inspect_text(path: str | Path) -> str:
    """The whole summary as text: size, columns, aggregates."""
    frame = read_results(path)
    parts = [f"{path}: {frame.height} rows x {frame.width} columns", ""]
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=160, fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
        parts += ["columns:", str(column_table(frame)), ""]
        aggregated = aggregate_table(frame)
        if aggregated is not None:
            parts += [f"per {' x '.join(k for k in GROUP_KEYS if k in frame.columns)}:", str(aggregated)]
    return "\n".join(parts)


def list_tasks(config: PipelineConfig, layout: ResultsLayout, out=print) -> None:
    """One line per task: id, role, modality, model, split sizes, parameter count, data source.

    Sizes and parameter counts come from the prepared data when ``prepare_data`` has run,
    otherwise the dataset is prepared in memory; a dataset that cannot be loaded is
    reported on its line instead.
    """
    from metalr.tasks import DataError, SplitData, build_model, count_parameters, prepare_dataset

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
