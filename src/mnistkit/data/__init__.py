"""Data: readers, the dataset registry, batched augmentation and MNIST-style preprocessing."""

from mnistkit.data import folder, kuzushiji, quickdraw  # noqa: F401  (registers the `folder`, `kmnist`, `k49` and `quickdraw` datasets)
