"""Loss and task metrics on a held-back split, without touching training state.

Metrics by task kind: classification reports accuracy, top-5 (10+ classes), macro F1 and
AUC-ROC (binary), all from scikit-learn; forecasting reports MAE, RMSE and sMAPE (%) in the
series' own units; speech reports the word error rate through jiwer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from metalr.features.base import Probe, StepContext
from metalr.tasks.audio import decode_ids, greedy_ctc

if TYPE_CHECKING:  # metalr.tasks.splits needs scikit-learn, a [pipeline] package
    from metalr.tasks.splits import DatasetInfo
from metalr.tasks.loaders import InputTransform
from metalr.tasks.objectives import forward, loss_from_output
from metalr.tasks.registry import ALL_METRICS

EVAL_BATCH = 512


def classification_metrics(probs: np.ndarray, y: np.ndarray, info: DatasetInfo) -> dict[str, float]:
    # Lazy: scikit-learn is a [pipeline] package; the scheduler's own-loop path imports this module.
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, top_k_accuracy_score

    labels = np.arange(info.n_classes)
    out = {"acc": float(accuracy_score(y, probs.argmax(1)))}
    if "top5" in info.metrics:
        out["top5"] = float(top_k_accuracy_score(y, probs, k=5, labels=labels))
    out["f1"] = float(f1_score(y, probs.argmax(1), average="macro", labels=labels, zero_division=0))
    if "auc" in info.metrics:
        out["auc"] = float(roc_auc_score(y, probs[:, 1])) if len(np.unique(y)) == 2 else 0.5
    return out


def forecast_metrics(pred: np.ndarray, y: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and sMAPE (in %) in the series' units: value = offset + scale * normalised value."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error  # lazy: see classification_metrics
    actual = offset[:, None] + scale[:, None] * y.reshape(len(y), -1)
    forecast = offset[:, None] + scale[:, None] * pred.reshape(len(pred), -1)
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(2 * np.abs(forecast - actual), denominator, out=np.zeros_like(actual), where=denominator > 0)
    return {
        "mae": float(mean_absolute_error(actual.ravel(), forecast.ravel())),
        "rmse": float(root_mean_squared_error(actual.ravel(), forecast.ravel())),
        "smape": float(100 * ratio.mean()),
    }


def word_error_rate(hypotheses: list[str], references: list[str]) -> float:
    import jiwer  # lazy: only speech tasks report a word error rate

    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        return 0.0
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


@torch.no_grad()
def evaluate_split(model: nn.Module, split: dict[str, torch.Tensor], info: DatasetInfo) -> dict[str, float]:
    """Return {"loss": ..., metric: ... for each of ``info.metrics``} on a whole split, in chunks.

    The model is put in eval mode (no dropout, BatchNorm running stats frozen) and
    restored afterwards, so evaluation never changes what training does next.
    """
    was_training = model.training
    model.eval()
    transform = InputTransform(info, train=False)
    n = len(split["y"])
    total, outputs = 0.0, []
    try:
        for start in range(0, n, EVAL_BATCH):
            batch = transform({k: v[start : start + EVAL_BATCH] for k, v in split.items()})
            output = forward(model, batch)
            total += float(loss_from_output(output, batch, info)) * len(batch["y"])
            outputs.append(_collect(output, info))
    finally:
        model.train(was_training)
    result = {"loss": total / n}
    numpy = {k: v.cpu().numpy() for k, v in split.items()}
    if info.kind == "classification":
        result |= classification_metrics(np.concatenate(outputs), numpy["y"], info)
    elif info.kind == "regression":
        result |= forecast_metrics(np.concatenate(outputs), numpy["y"], numpy["O"], numpy["S"])
    else:
        references = [decode_ids(row[:m]) for row, m in zip(numpy["y"], numpy["M"], strict=True)]
        result["wer"] = word_error_rate(sum(outputs, []), references)
    return result


def _collect(output, info: DatasetInfo):
    if info.kind == "classification":
        return output.float().softmax(-1).cpu().numpy()
    if info.kind == "regression":
        return output.float().cpu().numpy()
    return greedy_ctc(*output)


def trivial_metric(train: dict, test: dict, info: DatasetInfo) -> float:
    """The primary metric of a predictor that ignores its input.

    Classification predicts the training class frequencies (majority-class accuracy, AUC
    0.5); forecasting predicts the mean training target; speech predicts nothing (WER 1).
    """
    y_train, y_test = np.asarray(train["y"]), np.asarray(test["y"])
    if info.kind == "classification":
        prior = np.bincount(y_train, minlength=info.n_classes) / len(y_train)
        probs = np.tile(prior, (len(y_test), 1))
        return classification_metrics(probs, y_test, info)[info.metric]
    if info.kind == "regression":
        pred = np.broadcast_to(y_train.mean(0), y_test.shape)
        return forecast_metrics(pred, y_test, np.asarray(test["O"]), np.asarray(test["S"]))[info.metric]
    return 1.0


class ValidationProbe(Probe):
    """``val_loss`` and every metric of the task's kind on the whole validation split, every
    ``every`` steps and at the last step of the budget."""

    columns = {"val_loss": pa.float64()} | {f"val_{m}": pa.float64() for m in ALL_METRICS}

    def __init__(self, every: int, budget: int):
        super().__init__(every)
        self.budget = budget

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.budget

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        return {f"val_{name}": value for name, value in evaluate_split(ctx.model, ctx.val_split, ctx.info).items()}
