"""What the integrations report about a MetaScheduler after each update, in one place."""

from __future__ import annotations

from torch.optim.lr_scheduler import LRScheduler


def scheduler_report(scheduler: LRScheduler) -> dict[str, float | str]:
    """``lr`` (set for the next update), ``fallback_rate`` and, after a decision, ``change_reason``.

    Keys are prefixed ``metalr/`` so that they group under one heading in TensorBoard,
    W&B or MLflow. ``change_reason`` is text: loggers that take text (TensorBoard's
    ``add_text``, HF's TensorBoard callback) record it; the others keep the numbers.
    """
    report: dict[str, float | str] = {
        "metalr/lr": float(scheduler.get_last_lr()[0]),
        # MetaScheduler.fallback_rate: the share of decisions whose inputs lay out of
        # distribution, answered by cosine instead.
        "metalr/fallback_rate": float(scheduler.fallback_rate),
    }
    if scheduler.change_reason:  # set only on the updates where the scheduler decided
        report["metalr/change_reason"] = scheduler.change_reason
    return report
