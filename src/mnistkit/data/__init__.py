"""Data: readers, the dataset registry, batched augmentation and MNIST-style preprocessing."""

from mnistkit.data import folder, quickdraw  # noqa: F401  (registers the `folder` and `quickdraw` datasets)
