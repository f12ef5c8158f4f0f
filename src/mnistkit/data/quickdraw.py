"""Google QuickDraw's 28x28 bitmaps: one .npy file per class, each an (N, 784) uint8 array.

The tutorial uses ten classes and about 6,000 drawings of each. We take the first ``per_class``
drawings of each file (memory-mapped, so the full 100+ MB files are never read whole) and split
them into train and test by a fixed permutation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mnistkit.data.datasets import DatasetSpec, DownloadSource, ImageDataset, register_dataset
from mnistkit.errors import DataFormatError

DEFAULT_CLASSES = ("cloud", "sun", "pants", "umbrella", "table", "ladder", "eyeglasses", "clock", "scissors", "cup")
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/"
TEST_FRACTION = 1 / 6  # 6,000 per class -> 5,000 train + 1,000 test, like MNIST's proportions


def class_file(directory: Path, name: str) -> Path:
    for candidate in (directory / f"{name}.npy", directory / f"full_numpy_bitmap_{name}.npy"):
        if candidate.is_file():
            return candidate
    raise DataFormatError(
        f"quickdraw: missing {name}.npy (or full_numpy_bitmap_{name}.npy) in {directory}. "
        f"Run `mnistkit download quickdraw --data-dir {directory}` where there is internet, or fetch "
        f"{QUICKDRAW_URL}{name}.npy into that folder."
    )


def read_class(path: Path, per_class: int) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy array ({exc})") from None
    if array.ndim != 2 or array.shape[1] != 784:
        raise DataFormatError(f"{path}: expected an N x 784 array of 28x28 bitmaps, found shape {array.shape}")
    if array.dtype != np.uint8:
        raise DataFormatError(f"{path}: expected uint8 pixels, found {array.dtype}")
    if len(array) == 0:
        raise DataFormatError(f"{path}: holds no drawings")
    return np.array(array[:per_class]).reshape(-1, 28, 28)


def load_quickdraw(directory: Path, classes: list[str] | tuple[str, ...] | str | None = None,
                   per_class: int = 6000, seed: int = 0) -> ImageDataset:
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    names = tuple(classes or DEFAULT_CLASSES)
    if len(set(names)) != len(names) or len(names) < 2:
        raise DataFormatError(f"quickdraw: need at least two distinct classes, found {list(names)}")
    images, labels = [], []
    for label, name in enumerate(names):
        drawings = read_class(class_file(directory, name), per_class)
        images.append(drawings)
        labels.append(np.full(len(drawings), label, dtype=np.int64))
    x, y = torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * TEST_FRACTION)
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return ImageDataset(name="quickdraw", classes=names, train_images=x[train], train_labels=y[train],
                        test_images=x[test], test_labels=y[test])


register_dataset(DatasetSpec(
    name="quickdraw", description="Google QuickDraw doodles, one <class>.npy per class (--classes, --per-class)",
    classes=DEFAULT_CLASSES, loader=load_quickdraw, files=tuple(f"{c}.npy" for c in DEFAULT_CLASSES),
    source="https://github.com/googlecreativelab/quickdraw-dataset (CC BY 4.0)",
    download=DownloadSource((QUICKDRAW_URL,), per_class_file="{}.npy"), mirror_invariant=True,
    item="doodle",
))
