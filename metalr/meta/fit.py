"""Fit a meta-learner: supervised regression of the expert's labels on decision sequences, early-stopped on
meta-validation."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from metalr.config import MetaConfig
from metalr.meta.dataset import DecisionSequence
from metalr.meta.inputs import DROPPABLE_GROUPS, absent_inputs, group_columns
from metalr.meta.model import ARCHITECTURES


@dataclass
class FitReport:
    epochs_run: int
    best_epoch: int
    train_loss: float
    val_loss: float | None
    cosine_train_loss: float  # loss of the untrained (exactly cosine) learner, for reference
    cosine_val_loss: float | None
    n_train_sequences: int
    n_val_sequences: int
    n_train_labels: int
    n_val_labels: int
    wall_time_s: float
    label_temperature: float | None = None  # soft labels' temperature; None: hard labels
    policy_regret: float | None = None  # mean relative excess fork loss of its decisions (branching.policy_regret)


def _pad(sequences: list[DecisionSequence], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(len(s.labels) for s in sequences)
    width = sequences[0].inputs.shape[1]
    inputs = np.zeros((len(sequences), length, width), dtype=np.float32)
    labels = np.zeros((len(sequences), length), dtype=np.float32)
    mask = np.zeros((len(sequences), length), dtype=np.float32)
    for i, s in enumerate(sequences):
        known = np.isfinite(s.labels)
        inputs[i, : len(s.labels)] = s.inputs
        labels[i, : len(s.labels)] = np.where(known, s.labels, 0.0)
        mask[i, : len(s.labels)] = known
    return (torch.tensor(inputs, device=device), torch.tensor(labels, device=device), torch.tensor(mask, device=device))


class GroupDropout:
    """Drops whole input groups of whole runs: their inputs and flag read as a run that never supplied them.

    One mask per run and group, drawn afresh at each call, from the fit's own generator.
    """

    def __init__(self, features: tuple[str, ...], rate: float, seed: int):
        self.rate = rate
        self.absent = torch.tensor(absent_inputs(features))
        self.groups = [torch.tensor(c) for c in (group_columns(features, g) for g in DROPPABLE_GROUPS) if c]
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (runs, decisions, features) with the dropped groups' columns set to their absent values."""
        if self.rate <= 0 or not self.groups:
            return inputs
        drop = torch.zeros(inputs.shape[0], inputs.shape[2], dtype=torch.bool)
        for columns in self.groups:
            dropped = torch.rand(inputs.shape[0], generator=self.generator) < self.rate
            drop[:, columns] |= dropped[:, None]
        drop = drop.to(inputs.device)[:, None, :]
        return torch.where(drop, self.absent.to(inputs.device), inputs)


def _masked_mse(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - labels) ** 2 * mask).sum() / mask.sum()


def fit_meta_learner(
    train: list[DecisionSequence],
    val: list[DecisionSequence],
    cfg: MetaConfig,
    arch: str,
    features: tuple[str, ...],
    device: str = "cpu",
    log=print,
) -> tuple[torch.nn.Module, FitReport]:
    """Fit ``arch`` to the labelled decisions of ``train`` (masked MSE), early-stopped on ``val``.

    ``features`` names the sequences' input columns; with ``cfg.input_dropout`` > 0, each epoch
    drops input groups of whole runs (``GroupDropout``), and the input normalisation covers
    both the runs as collected and one draw of them with groups dropped.
    """
    if not train:
        raise ValueError("no labelled meta-training sequences: the collect phase produced no labelled source runs")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = ARCHITECTURES[arch](train[0].inputs.shape[1], cfg.hidden, cfg.layers).to(device)
    dropout = GroupDropout(tuple(features), cfg.input_dropout, cfg.seed)
    stacked = np.concatenate([s.inputs for s in train])
    if dropout.rate > 0:
        dropped = dropout(torch.tensor(stacked)[:, None, :])[:, 0].numpy()  # one draw per decision
        stacked = np.concatenate([stacked, dropped])
    model.input_mean.copy_(torch.tensor(stacked.mean(0)))
    model.input_std.copy_(torch.tensor(np.maximum(stacked.std(0), 1e-3)))
    x_train, y_train, m_train = _pad(train, device)
    val_batch = _pad(val, device) if val else None
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def evaluate(batch) -> float:
        model.eval()
        with torch.no_grad():
            loss = _masked_mse(model(batch[0])[0], batch[1], batch[2]).item()
        model.train()
        return loss

    cosine_train = _masked_mse(torch.zeros_like(y_train), y_train, m_train).item()
    cosine_val = _masked_mse(torch.zeros_like(val_batch[1]), val_batch[1], val_batch[2]).item() if val_batch else None
    best_state, best_score, best_epoch, epoch = copy.deepcopy(model.state_dict()), float("inf"), 0, 0
    for epoch in range(1, cfg.epochs + 1):
        optimizer.zero_grad()
        loss = _masked_mse(model(dropout(x_train))[0], y_train, m_train)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        score = evaluate(val_batch) if val_batch else loss.item()
        if score < best_score:
            best_state, best_score, best_epoch = copy.deepcopy(model.state_dict()), score, epoch
        if epoch % 25 == 0 or epoch == 1:
            log(f"epoch {epoch:4d}  train mse {loss.item():.4f}  early-stop score {score:.4f}")
        if epoch - best_epoch >= cfg.patience:
            log(f"early stop at epoch {epoch}: no improvement for {cfg.patience} epochs")
            break
    model.load_state_dict(best_state)
    report = FitReport(
        epochs_run=epoch,
        best_epoch=best_epoch,
        train_loss=evaluate((x_train, y_train, m_train)),
        val_loss=evaluate(val_batch) if val_batch else None,
        cosine_train_loss=cosine_train,
        cosine_val_loss=cosine_val,
        n_train_sequences=len(train),
        n_val_sequences=len(val),
        n_train_labels=int(m_train.sum().item()),
        n_val_labels=int(val_batch[2].sum().item()) if val_batch else 0,
        wall_time_s=time.perf_counter() - started,
    )
    return model.eval(), report


def decisions_at_labels(model: torch.nn.Module, sequences: list[DecisionSequence]) -> pl.DataFrame:
    """(run_id, step, a): the model's log-multiplier at each labelled decision of ``sequences``."""
    rows = []
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for sequence in sequences:
            outputs, _ = model(torch.tensor(sequence.inputs[None], device=device))
            for step, label, a in zip(sequence.steps, sequence.labels, outputs[0].tolist(), strict=True):
                if np.isfinite(label):
                    rows.append({"run_id": sequence.run_id, "step": int(step), "a": a})
    return pl.DataFrame(rows, schema={"run_id": pl.String, "step": pl.Int32, "a": pl.Float64})
