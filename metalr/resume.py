"""Checkpoint and resume of training runs, so a killed, pre-empted or retried job loses little.

A training job (one task, many runs) keeps a resume directory. Inside it:

- ``<run_id>.ckpt``: the state of an unfinished run every ``every`` steps: model,
  optimizer, scheduler (a meta-scheduler's recurrent state included), the probes' state
  (loss EMA, previous gradient, ...), all RNG states, and the trajectory rows so far;
- ``<run_id>.done``: the result of a finished run, so a rerun of the job skips it.

Both are single files written atomically and read with ``torch.load(weights_only=True)``:
no pickled code is ever executed. Data order is a pure function of (seed, step), so it
is rebuilt on resume rather than stored. The job deletes the directory once its outputs
are written.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from metalr.io import atomic_path
from metalr.meta.checkpoint import CheckpointError
from metalr.paths import PathEscapeError
from metalr.trajectories import trajectory_frame

FORMAT = "metalr-run-checkpoint"
FORMAT_VERSION = 1


@dataclass
class LoopState:
    """Everything the training loop holds besides model, optimizer, scheduler and probes."""

    step: int = 0
    rows: list[dict] = field(default_factory=list)
    first_loss: float | None = None
    last_val: dict = field(default_factory=dict)  # the last row that carried a validation loss
    change_reason: str | None = None  # why the LR changed for the next step
    elapsed_s: float = 0.0  # wall time spent on this run in earlier attempts
    resumed_from: int = 0
    snapshots: list[dict] = field(default_factory=list)  # branch-point states taken so far


def _frame_bytes(frame: pl.DataFrame) -> torch.Tensor:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _bytes_frame(tensor: torch.Tensor) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(tensor.numpy().tobytes()))


def rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python RNG states, in weights_only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def _load(path: Path, what: str) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated files, foreign pickles and zip errors raise many types
        raise CheckpointError(
            f"cannot read {what} {str(path)!r} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "delete it to start that run over"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a metalr run checkpoint; delete it to start that run over")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has run-checkpoint version {payload.get('format_version')!r}, "
            f"this metalr reads version {FORMAT_VERSION}; delete it to start that run over"
        )
    return payload


def _is_checkpoint_file(path: Path) -> bool:
    """A ``.ckpt``/``.done`` file, or the hidden temporary file of one being written (metalr.io.atomic_path)."""
    hidden_tmp = path.name.startswith(".") and path.suffix == ".tmp"
    return path.is_file() and (path.suffix in (".ckpt", ".done") or hidden_tmp)


class RunCheckpoints:
    """The resume directory of one training job."""

    def __init__(self, directory: str | Path, every: int, min_interval_s: float = 0.0):
        self.directory = Path(directory)
        self.every = every
        self.min_interval_s = min_interval_s
        self._last_save = time.monotonic()

    def _path(self, run_id: str, kind: str) -> Path:
        return self.directory / f"{run_id}.{kind}"

    def _identity(self, spec) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": spec.run_id}

    def _check_owner(self, payload: dict[str, Any], spec, path: Path) -> None:
        if payload.get("run_id") != spec.run_id:
            raise CheckpointError(
                f"checkpoint {str(path)!r} belongs to run {payload.get('run_id')!r}, not {spec.run_id!r}; "
                "delete it to start that run over"
            )

    def due(self, step: int, budget: int) -> bool:
        # The last step needs no checkpoint: the finished result is saved instead.
        if self.every <= 0 or step % self.every or step >= budget:
            return False
        return time.monotonic() - self._last_save >= self.min_interval_s

    def save(self, spec, model, optimizer, scheduler, probes, loop: LoopState) -> None:
        payload = {
            **self._identity(spec),
            "step": loop.step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "probes": [probe.state_dict() for probe in probes],
            "rng": rng_state(),
            "first_loss": loop.first_loss,
            "last_val": dict(loop.last_val),
            "change_reason": loop.change_reason,
            "elapsed_s": loop.elapsed_s,
            "rows": _frame_bytes(trajectory_frame(loop.rows)),
            "snapshots": loop.snapshots,
        }
        with atomic_path(self._path(spec.run_id, "ckpt")) as tmp:
            torch.save(payload, tmp)
        self._last_save = time.monotonic()

    def restore(self, spec, model, optimizer, scheduler, probes) -> LoopState | None:
        """Load the run's checkpoint into the given objects (None when there is none); called as a run starts."""
        self._last_save = time.monotonic()
        path = self._path(spec.run_id, "ckpt")
        if not path.exists():
            return None
        payload = _load(path, "run checkpoint")
        self._check_owner(payload, spec, path)
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            if len(payload["probes"]) != len(probes):
                raise ValueError(f"{len(payload['probes'])} probe states for {len(probes)} probes")
            for probe, state in zip(probes, payload["probes"], strict=True):
                probe.load_state_dict(state)
            set_rng_state(payload["rng"])
            rows = _bytes_frame(payload["rows"]).to_dicts()
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not fit run {spec.run_id!r} ({err}); delete it to start that run over"
            ) from err
        step = payload["step"]
        return LoopState(
            step,
            rows,
            payload["first_loss"],
            payload["last_val"],
            payload["change_reason"],
            payload["elapsed_s"],
            step,
            payload["snapshots"],
        )

    def save_result(self, spec, result) -> None:
        payload = {
            **self._identity(spec),
            "summary": _frame_bytes(result.summary),
            "trajectory": _frame_bytes(result.trajectory),
            "snapshots": result.snapshots,
        }
        with atomic_path(self._path(spec.run_id, "done")) as tmp:
            torch.save(payload, tmp)
        self._path(spec.run_id, "ckpt").unlink(missing_ok=True)

    def load_result(self, spec) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]] | None:
        """(summary, trajectory, snapshots) of a run that finished in an earlier attempt, or None."""
        path = self._path(spec.run_id, "done")
        if not path.exists():
            return None
        payload = _load(path, "finished-run record")
        self._check_owner(payload, spec, path)
        return _bytes_frame(payload["summary"]), _bytes_frame(payload["trajectory"]), payload["snapshots"]

    def clear(self) -> None:
        """Remove the directory, and its parents once empty: called when the job's outputs are written."""
        # Before any rmtree: only a folder of run checkpoints is removed, whatever path it was
        # given (a name once climbed out of results/ and this removed the whole tree).
        if self.directory.is_dir():
            foreign = [p.name for p in self.directory.iterdir() if not _is_checkpoint_file(p)]
            if foreign:
                raise PathEscapeError(
                    f"refusing to remove {str(self.directory)!r}: it holds more than run checkpoints "
                    f"({', '.join(sorted(foreign)[:3])}); it is not a training job's resume folder"
                )
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.removedirs(self.directory.parent)  # stops at the first parent that is not empty


def capture(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, first_loss: float) -> dict:
    """The state after update ``step``: enough to continue the run from there in a fork."""

    def clone(state):
        if isinstance(state, torch.Tensor):
            return state.detach().to("cpu", copy=True)
        if isinstance(state, dict):
            return {k: clone(v) for k, v in state.items()}
        if isinstance(state, list):
            return [clone(v) for v in state]
        return state

    return {
        "step": step,
        "next_lr": optimizer.param_groups[0]["lr"],
        "first_loss": first_loss,
        "model": clone(model.state_dict()),
        "optimizer": clone(optimizer.state_dict()),
    }


def fast_forward(batches: Iterator, steps: int) -> Iterator:
    """Skip the first ``steps`` items of ``batches`` (the mini-batch indices of the steps already done)."""
    for _ in range(steps):
        next(batches)
    return batches
