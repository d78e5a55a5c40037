"""Tasks: datasets with fixed splits, and the models trained on them."""

from metalr.tasks.datasets import BUILTIN_DATASETS, DatasetInfo, SplitData, prepare_dataset
from metalr.tasks.models import build_model

__all__ = ["BUILTIN_DATASETS", "DatasetInfo", "SplitData", "build_model", "prepare_dataset"]
