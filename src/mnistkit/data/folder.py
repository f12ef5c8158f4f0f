"""A folder of your own images: ROOT/<class>/*.png|jpg|jpeg|bmp, any size.

Every image is turned into a 28x28 input as `mnistkit predict` does (grayscale, ink made bright, cropped,
fitted into a ``box``-pixel box, centred by mass or by its box: MNIST's 20, by mass, by default). A folder whose
pictures are all 28x28 already (a dataset's own images saved as files) is taken as it is instead: framing such
images again would shrink a subject that fills the frame into 20 pixels. Either way `train` measures the framing
of the images it trained on, and `predict` frames a new picture that way; `evaluate` frames a folder as the model
it scores was trained. Train and test are split per class by a fixed permutation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mnistkit.data.datasets import DatasetSpec, ImageDataset, register_dataset
from mnistkit.data.preprocess import BOX, SIZE, Framing, load_digit, picture_as_it_is, picture_size
from mnistkit.errors import DataFormatError, ImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_folder(directory: Path, test_fraction: float = 0.2, seed: int = 0, box: int | None = None,
                centre: str = "mass") -> ImageDataset:
    """``box`` None: 28x28 pictures as they are where every picture is 28x28, else framed in MNIST's 20-pixel box."""
    try:
        framing = Framing(box=BOX if box is None else box, centre=centre)
    except ValueError as exc:
        raise DataFormatError(f"folder: options box and centre: {exc}") from None
    if not directory.is_dir():
        raise DataFormatError(f"folder: {directory} does not exist; expected {directory}/<class>/<image>.png")
    class_dirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataFormatError(f"folder: {directory} needs at least two class folders (<class>/<image>.png), "
                              f"found {len(class_dirs)}")
    files_of = {}
    for class_dir in class_dirs:
        files_of[class_dir] = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files_of[class_dir]:
            raise DataFormatError(f"folder: class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    as_they_are = box is None and all(picture_size(f) == (SIZE, SIZE) for files in files_of.values() for f in files)
    generator = torch.Generator().manual_seed(seed)
    splits: dict[str, list] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for label, files in enumerate(files_of.values()):
        try:
            images = np.stack([picture_as_it_is(f) if as_they_are else load_digit(f, framing) for f in files])
        except ImageError as exc:
            raise DataFormatError(f"folder: {exc}") from None
        pixels = torch.from_numpy((images * 255).round().astype(np.uint8))
        order = torch.randperm(len(files), generator=generator)
        n_test = int(round(len(files) * test_fraction)) if len(files) > 1 else 0
        for part, idx in (("test", order[:n_test]), ("train", order[n_test:])):
            splits[f"{part}_x"].append(pixels[idx])
            splits[f"{part}_y"].append(torch.full((len(idx),), label, dtype=torch.long))
    cat = {k: torch.cat(v) for k, v in splits.items()}
    return ImageDataset(name="folder", classes=tuple(d.name for d in class_dirs), train_images=cat["train_x"],
                        train_labels=cat["train_y"], test_images=cat["test_x"], test_labels=cat["test_y"])


register_dataset(DatasetSpec(
    name="folder", description="your own images: --data-dir ROOT with ROOT/<class>/*.png", classes=(),
    loader=load_folder, source="your own files", pictures=True,
))
