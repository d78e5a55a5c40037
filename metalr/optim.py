"""The optimizer a task trains with, on the device a run asks for: the bottom layer under training and forks."""

from __future__ import annotations

import torch

from metalr.config import TaskSpec
from metalr.schedulers.peers import schedule_free_optimizer
from metalr.schedulers.registry import owns_optimizer


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device; use device: auto or cpu")
    return requested


def build_optimizer(task: TaskSpec, parameters, lr: float | None = None, scheduler: str = "") -> torch.optim.Optimizer:
    lr = task.base_lr if lr is None else lr
    if owns_optimizer(scheduler):  # Schedule-Free replaces the optimizer, not just the LR
        return schedule_free_optimizer(task.optimizer, parameters, lr, task.weight_decay)
    if task.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=task.weight_decay)
    if task.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=task.weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=task.weight_decay)
