"""The results layout, shared by the Snakemake rules and the CLI.

Trajectories and run rows are hive-partitioned by phase, then task, so that one
``polars.scan_parquet("results/trajectories/**/*.parquet", hive_partitioning=True)``
reads everything with ``phase`` and ``task`` as columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class PathEscapeError(ValueError):
    """A path built from a name would lie outside the results folder."""


def inside(root: str | Path, path: str | Path) -> Path:
    """``path``, after checking that it lies strictly inside ``root``.

    Lexical (``..`` folded, symlinks not followed): a results subfolder may be a link to
    shared storage, and what is refused is a *name* that climbs out.
    """
    top, target = os.path.abspath(root), os.path.abspath(path)
    if os.path.commonpath([top, target]) != top or target == top:
        raise PathEscapeError(
            f"refusing to touch {str(path)!r}: it lies outside the results folder {str(root)!r}; "
            "task, dataset and family names must be identifiers (letters, digits, '.', '_', '-')"
        )
    return Path(path)


@dataclass(frozen=True)
class ResultsLayout:
    root: str = "results"

    def _path(self, *parts: str) -> str:
        # Every part may come from a config name: nothing is written or removed outside root.
        return str(inside(self.root, Path(self.root, *parts)))

    def data(self, dataset: str) -> str:
        """A prepared dataset's folder: ``info.json`` and ``train/val/test.parquet``."""
        return self._path("data", dataset)

    def trajectories(self, phase: str, task: str) -> str:
        return self._path("trajectories", f"phase={phase}", f"task={task}", "part-0.parquet")

    def runs_part(self, phase: str, task: str) -> str:
        return self._path("runs", f"phase={phase}", f"task={task}", "part-0.parquet")

    def resume(self, phase: str, task: str) -> str:
        """Checkpoints of a training job's unfinished and finished runs; removed when the job ends."""
        return self._path("resume", f"phase={phase}", f"task={task}")

    def runs(self) -> str:
        return self._path("runs.parquet")

    def checkpoint(self, variant: str, round: int) -> str:
        """A fitted meta-learner (``model.safetensors`` + ``config.json``) of DAgger round ``round``."""
        return self._path("meta", f"round-{round}", variant)

    def snapshots(self, phase: str, task: str) -> str:
        """Branch-point states of a collection job's runs, for the branching expert (temporary)."""
        return self._path("meta", "snapshots", f"phase={phase}", f"task={task}", "snapshots.pt")

    def forks(self, phase: str) -> str:
        """The branching expert's forks of a collection phase's runs: final validation loss per multiplier."""
        return self._path("meta", "forks", f"phase={phase}", "part-0.parquet")

    def leakage_report(self) -> str:
        return self._path("meta", "leakage_check.json")

    def summary_parquet(self) -> str:
        return self._path("summary.parquet")

    def summary_md(self) -> str:
        return self._path("summary.md")

    def summary_html(self) -> str:
        return self._path("summary.html")

    def evaluation_dir(self) -> str:
        return self._path("evaluation")

    def evaluation_table(self, name: str) -> str:
        return self._path("evaluation", f"{name}.parquet")

    def gain_plot(self) -> str:
        """The first screen of summary.md: the meta-scheduler's gain over cosine per task and base LR."""
        return self._path("plots", "gain.png")

    def task_curves_plot(self, task: str) -> str:
        return self._path("plots", "curves", f"{task}.png")

    def profiles_plot(self) -> str:
        return self._path("plots", "performance_profiles.png")

    def lr_gallery_plot(self) -> str:
        return self._path("plots", "lr_gallery.png")

    def log(self, name: str) -> str:
        return self._path("logs", f"{name}.log")
