"""Trajectory probes: what a training run records about itself, step by step."""

from metalr.features.basic import LossEMA, grad_global_norm
from metalr.features.validation import evaluate_split

__all__ = ["LossEMA", "evaluate_split", "grad_global_norm"]
