"""Datasets: a registry of named loaders, each giving whole splits as in-memory uint8 tensors.

Every dataset is small enough (tens of MB) to hold as one tensor, which is what makes batching by
indexing fast. ``load_dataset(name)`` returns an :class:`ImageDataset`; ``split_validation`` carves a
deterministic validation set out of its training split. The test split is only ever reported.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from mnistkit.data.idx import read_idx
from mnistkit.errors import DataFormatError, UnknownNameError

IMAGE_SIZE = 28
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class ImageDataset:
    """A dataset's train and test splits: uint8 images (N, 28, 28) and int64 labels (N,)."""

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            check_images_and_labels(images, labels, len(self.classes), f"{self.name} {split}")


@dataclass(frozen=True)
class RemoteFile:
    name: str
    digest: str  # "md5:..." or "sha256:..." as published; "" when the publisher gives none


@dataclass(frozen=True)
class DownloadSource:
    """Where `mnistkit download` fetches a dataset: mirrors tried in order, and the files with digests.

    ``per_class_file`` (QuickDraw) names one file per class instead, e.g. ``"{}.npy"``."""

    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...] = ()
    per_class_file: str = ""

    def files_for(self, classes: list[str] | tuple[str, ...]) -> list[RemoteFile]:
        if self.per_class_file:  # publishers of per-class files give no checksums; the loader checks shapes
            return [RemoteFile(self.per_class_file.format(c), "") for c in classes]
        return list(self.files)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load it, where to download it and what a user needs to know."""

    name: str
    description: str
    classes: tuple[str, ...]
    loader: Callable[..., ImageDataset]  # loader(directory, **options)
    files: tuple[str, ...] = ()
    source: str = ""
    download: DownloadSource | None = None
    recipe: str = "generic"  # the preset `mnistkit train --dataset NAME` uses when no --preset is given
    mirror_invariant: bool = False  # a left-right mirrored image keeps its class (clothes: yes; digits: no)
    item: str = ""  # what one image shows, for "not a digit"; "" where the classes have no common name
    pictures: bool = False  # made from picture files, framed as the options `box` and `centre` say (`folder`)

    def option_names(self) -> list[str]:
        """The options (``dataset_options``) this dataset's loader takes."""
        params = list(inspect.signature(self.loader).parameters.values())[1:]
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def check_options(self, options: dict) -> None:
        if not isinstance(options, dict):
            raise DataFormatError(f"dataset '{self.name}': options must be a mapping, found {options!r}")
        unknown = sorted(set(options) - set(self.option_names()))
        if unknown:
            takes = ", ".join(self.option_names()) or "no options"
            raise DataFormatError(f"dataset '{self.name}': unknown option(s) {unknown}; it takes {takes}")


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets() -> list[DatasetSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("dataset", name, list(_REGISTRY)) from None


def default_data_dir(name: str) -> Path:
    """Where a dataset's files are looked for when no --data-dir is given."""
    root = os.environ.get("MNISTKIT_DATA_DIR") or Path.home() / ".cache" / "mnistkit"
    return Path(root) / name


def load_dataset(name: str = "mnist", data_dir: str | Path | None = None, **options) -> ImageDataset:
    """Load a registered dataset by name. ``data_dir`` is the folder holding its files."""
    spec = get_dataset_spec(name)
    spec.check_options(options)
    directory = Path(data_dir) if data_dir is not None else default_data_dir(name)
    return spec.loader(directory, **options)


def check_images_and_labels(images: torch.Tensor, labels: torch.Tensor, num_classes: int, what: str):
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataFormatError(
            f"{what}: images must be uint8 of shape (N, 28, 28), found {images.dtype} {tuple(images.shape)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFormatError(f"{what}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFormatError(
            f"{what}: labels must be in 0..{num_classes - 1}, found {int(labels.min())}..{int(labels.max())}"
        )


# --------------------------------------------------------------------------------------------------
# Splits and statistics


@dataclass(frozen=True)
class Splits:
    """What a training run uses: train, validation (from the training set) and test tensors."""

    dataset: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of the 'train', 'val' or 'test' split."""
        if name not in ("train", "val", "test"):
            raise DataFormatError(f"split must be 'train', 'val' or 'test', found '{name}'")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")


def split_validation(dataset: ImageDataset, val_size: int = 5000, seed: int = 0, stratified: bool = False) -> Splits:
    """Hold out ``val_size`` training images, chosen by a fixed seed so every run sees the same split.
    ``stratified``: each class gives its share of them (rounded down or up), as in scikit-learn's
    ``train_test_split(stratify=...)``, so a small or imbalanced dataset validates on every class."""
    n = len(dataset.train_images)
    if not 0 <= val_size < n:
        raise DataFormatError(f"val_size must be in 0..{n - 1} for {dataset.name}, found {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if stratified:
        order = order[torch.sort(dataset.train_labels[order], stable=True).indices]  # by class, shuffled within
        # Every (n / val_size)-th image of that order: each class's run of it gives floor or ceil of its share.
        position = torch.arange(n)
        held_out = (position + 1) * val_size // n > position * val_size // n
        val, train = order[held_out].sort().values, order[~held_out].sort().values
    else:
        val, train = order[:val_size].sort().values, order[val_size:].sort().values
    return Splits(
        dataset=dataset.name,
        classes=dataset.classes,
        train_images=dataset.train_images[train],
        train_labels=dataset.train_labels[train],
        val_images=dataset.train_images[val],
        val_labels=dataset.train_labels[val],
        test_images=dataset.test_images,
        test_labels=dataset.test_labels,
    )


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of pixel values scaled to [0, 1] (per dataset, never hard-coded)."""
    x = images.to(torch.float64).div_(255)
    return float(x.mean()), float(x.std())


# --------------------------------------------------------------------------------------------------
# IDX datasets: MNIST (bundled), Fashion-MNIST, KMNIST and any other in the same format


def existing_idx_file(directory: Path, stem: str, prefix: str = "") -> Path | None:
    """``prefix + stem`` in ``directory``, gzipped or not, or None where neither is there."""
    for candidate in (directory / f"{prefix}{stem}.gz", directory / f"{prefix}{stem}"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_file(directory: Path, stem: str, dataset: str, prefix: str = "") -> Path:
    """``prefix + stem`` (.gz or not) in ``directory``; a missing file gets a message naming all four."""
    found = existing_idx_file(directory, stem, prefix)
    if found is not None:
        return found
    spec = _REGISTRY.get(dataset)
    get = (f"pass --data-dir, or run `mnistkit download {dataset}` where there is internet" if spec and spec.download
           else "or pass --data-dir")
    raise DataFormatError(
        f"{dataset}: missing {prefix}{stem}.gz (or uncompressed {prefix}{stem}) in {directory}. "
        f"Put the four IDX files ({', '.join(prefix + f + '.gz' for f in IDX_FILES.values())}) there, {get}."
    )


def load_idx_directory(
    directory: Path, name: str, classes: tuple[str, ...], checksums: dict[str, str] | None = None, prefix: str = ""
) -> ImageDataset:
    """The four IDX files named ``prefix + train-images-idx3-ubyte`` (...) in ``directory``, checked."""
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = find_idx_file(directory, stem, name, prefix)
        expected = (checksums or {}).get(path.name)
        arrays[key] = read_idx(path, ndim=3 if key.endswith("images") else 1, sha256=expected)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataFormatError(
                f"{directory / (prefix + IDX_FILES[split + '_images'])}: images are {images.shape[1]}x{images.shape[2]}, "
                f"expected {IMAGE_SIZE}x{IMAGE_SIZE}"
            )
        if len(images) != len(labels):
            raise DataFormatError(
                f"{directory}: {split} split has {len(images)} images but {len(labels)} labels "
                "(mismatched files?)"
            )
    tensors = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    for split in ("train", "test"):
        labels = tensors[f"{split}_labels"]
        if len(labels) and int(labels.max()) >= len(classes):
            raise DataFormatError(
                f"{directory / (prefix + IDX_FILES[split + '_labels'])}: label {int(labels.max())} out of range "
                f"for {len(classes)} classes"
            )
        tensors[f"{split}_labels"] = labels.long()
    return ImageDataset(name=name, classes=classes, **tensors)


def bundled_mnist_dir() -> Path:
    return Path(str(resources.files("mnistkit.data") / "mnist"))


def read_checksums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


DIGITS = tuple(str(i) for i in range(10))


def load_mnist(directory: Path) -> ImageDataset:
    """MNIST ships inside the package; an explicit --data-dir with the four files overrides it."""
    bundled = bundled_mnist_dir()
    if not (directory / IDX_FILES["train_images"]).exists() and not (
        directory / (IDX_FILES["train_images"] + ".gz")
    ).exists():
        directory = bundled
    checksums = read_checksums(bundled / "SHA256SUMS") if directory == bundled else None
    return load_idx_directory(directory, "mnist", DIGITS, checksums)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

IDX_FILE_NAMES = tuple(f"{stem}.gz" for stem in IDX_FILES.values())

def idx_files(*digests: str) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, digest) for name, digest in zip(IDX_FILE_NAMES, digests))


def load_fashion_mnist(directory: Path) -> ImageDataset:
    return load_idx_directory(directory, "fashion-mnist", FASHION_CLASSES)


register_dataset(DatasetSpec(
    name="mnist", description="handwritten digits (bundled, no download)", classes=DIGITS,
    loader=load_mnist, files=IDX_FILE_NAMES, source="bundled with mnistkit (LeCun, Cortes, Burges; CC BY-SA 3.0)",
    recipe="default", item="digit",
    download=DownloadSource(("https://ossci-datasets.s3.amazonaws.com/mnist/",), idx_files(
        "sha256:0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
        "sha256:1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
        "sha256:1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
        "sha256:b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b")),
))
register_dataset(DatasetSpec(
    name="fashion-mnist", description="Zalando clothing images", classes=FASHION_CLASSES,
    loader=load_fashion_mnist, files=IDX_FILE_NAMES, source="https://github.com/zalandoresearch/fashion-mnist",
    recipe="fashion-mnist", mirror_invariant=True, item="clothing item",
    download=DownloadSource(("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
                            idx_files("md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d", "md5:25c81989df183df01b3e8a0aad5dffbe",
                                      "md5:bef4ecab320f06d8554ea6380940ec79", "md5:bb300cfdad3c16e7a12a480ee83cd310")),
))


def load_generic_idx(directory: Path, num_classes: int | None = None) -> ImageDataset:
    labels = read_idx(find_idx_file(directory, IDX_FILES["train_labels"], "idx"), ndim=1)
    n = num_classes or (int(labels.max()) + 1 if len(labels) else 1)
    return load_idx_directory(directory, "idx", tuple(str(i) for i in range(n)))


register_dataset(DatasetSpec(
    name="idx", description="any MNIST-format dataset: the four IDX files in --data-dir",
    classes=(), loader=load_generic_idx, files=IDX_FILE_NAMES, source="your own files",
))

