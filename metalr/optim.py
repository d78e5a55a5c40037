"""The optimizer a task trains with, on the device a run asks for: the bottom layer under training and forks."""

from __future__ import annotations

import torch

from metalr.config import TaskSpec
from metalr.schedulers.registry import peer_optimizer


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device; use device: auto or cpu")
    return requested


def build_optimizer(task: TaskSpec, parameters, lr: float | None = None, scheduler: str = "") -> torch.optim.Optimizer:
    lr = task.base_lr if lr is None else lr
    if task.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=task.weight_decay)
    elif task.optimizer == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=task.weight_decay)
    else:
        optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=task.weight_decay)
    # Peers such as Schedule-Free or Prodigy replace the optimizer, not just the LR.
    return peer_optimizer(scheduler, optimizer, task.optimizer, lr / task.base_lr)
