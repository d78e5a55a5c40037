"""Training-loader throughput with transforms on the CIFAR-10 subset: can data keep a GPU fed?

    python benchmarks/data_throughput.py [--config config/shared-data.yaml] [--dataset cifar10] [--batch-size 128]

Prepares the dataset from its declaration (run from the repository root, beside shared/),
then draws seeded training batches through the same ``BatchLoader`` the training loop uses:
uint8 images, a random crop and flip per image (transforms v2), conversion and
normalisation, on one CPU thread. Last line: ``loader_samples_per_s: <n>``.
"""

from __future__ import annotations

import argparse
import time

import torch

from metalr.config import load_config
from metalr.tasks import prepare_dataset
from metalr.tasks.loaders import BatchLoader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/shared-data.yaml")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0, help="measure for about this long")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    spec = config.dataset(args.dataset)
    data = prepare_dataset(spec, config.split_seed, config.val_fraction, config.test_fraction)
    print(f"{args.dataset}: {data.info.sizes['train']} training images {data.info.input_shape}, augment={spec.augment}")
    loader = BatchLoader(data.tensors("cpu")["train"], data.info, args.batch_size, seed=0)
    next(loader)  # warm-up
    samples, started = 0, time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        batch = next(loader)
        samples += len(batch["y"])
    elapsed = time.perf_counter() - started
    print(f"batch {args.batch_size}: {samples} samples in {elapsed:.2f} s, dtype {batch['X'].dtype}")
    print(f"loader_samples_per_s: {samples / elapsed:.0f}")


if __name__ == "__main__":
    main()
