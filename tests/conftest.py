from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mnistkit.data.datasets import IDX_FILES, load_dataset
from mnistkit.data.idx import write_idx


@pytest.fixture(scope="session")
def mnist():
    return load_dataset("mnist")


def write_idx_dataset(directory: Path, train_x, train_y, test_x, test_y, compress: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for key, array in dict(train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y).items():
        write_idx(directory / (IDX_FILES[key] + suffix), np.asarray(array, dtype=np.uint8))
    return directory


@pytest.fixture(scope="session")
def small_mnist_dir(mnist, tmp_path_factory) -> Path:
    """A real-data slice of MNIST (6,000 train, 1,000 test) as IDX files, for quick training runs."""
    return write_idx_dataset(
        tmp_path_factory.mktemp("small-mnist"),
        mnist.train_images[:6000].numpy(), mnist.train_labels[:6000].numpy(),
        mnist.test_images[:1000].numpy(), mnist.test_labels[:1000].numpy(),
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One real training run on full MNIST (the `fast` preset, one epoch), shared by several tests.

    Without the preset's label smoothing: the "not a digit" tests measure the energy score, which label
    smoothing blunts (clothes refused: 66-85% with it, 95-97% without; BENCHMARKS.md)."""
    from mnistkit import make_config, train

    out = tmp_path_factory.mktemp("runs") / "fast"
    train(make_config("fast", epochs=1, label_smoothing=0.0, out=str(out), progress=False))
    return out


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
