"""Data: readers, the dataset registry, batched augmentation and MNIST-style preprocessing."""

from mnistkit.data import emnist, folder, kuzushiji, quickdraw  # noqa: F401  (register their datasets)
