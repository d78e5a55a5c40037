"""Resource probe: throughput, memory, GPU use, and the dataset's size and complexity."""

from __future__ import annotations

import psutil
import pyarrow as pa
import torch

from metalr.features.base import Probe, StepContext


def _nvml_utilisation(device_index: int) -> float | None:
    """GPU utilisation in percent through NVML (package nvidia-ml-py), or None without it."""
    try:
        import pynvml  # lazy and optional: absent where there is no NVIDIA driver

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # no NVML library, no driver, or no such device: the column stays null
        return None


class ResourceProbe(Probe):
    """``res_samples_per_s`` (this step), ``res_cpu_rss_mb``, ``res_gpu_mem_mb`` (peak allocated
    by torch), ``res_gpu_util`` (percent, NVML), and the dataset's ``res_data_classes``,
    ``res_data_features`` (input values per example) and ``res_data_size`` (training examples)."""

    columns = {
        "res_samples_per_s": pa.float64(),
        "res_cpu_rss_mb": pa.float64(),
        "res_gpu_mem_mb": pa.float64(),
        "res_gpu_util": pa.float64(),
        "res_data_classes": pa.int32(),
        "res_data_features": pa.int32(),
        "res_data_size": pa.int32(),
    }

    def __init__(self, every: int = 10):
        super().__init__(every)
        self._process = psutil.Process()

    def after_update(self, ctx: StepContext) -> dict[str, float | None]:
        if not self.due(ctx.step):
            return {}
        device = ctx.inputs.device
        on_gpu = device.type == "cuda"
        features = 1
        for d in ctx.info.input_shape:
            features *= max(d, 1)
        return {
            "res_samples_per_s": len(ctx.inputs) / ctx.step_time_s if ctx.step_time_s > 0 else None,
            "res_cpu_rss_mb": self._process.memory_info().rss / 2**20,
            "res_gpu_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else None,
            "res_gpu_util": _nvml_utilisation(device.index or 0) if on_gpu else None,
            "res_data_classes": ctx.info.n_classes,
            "res_data_features": features,
            "res_data_size": ctx.info.sizes.get("train", 0),
        }
