"""The Kuzushiji datasets of cursive Japanese (Clanuwat et al., 2018): Kuzushiji-MNIST and Kuzushiji-49.

Their publisher ships Kuzushiji-MNIST in MNIST's IDX format and in NumPy's (``kmnist-train-imgs.npz``, ...), and
Kuzushiji-49 (49 classes, 270,912 images, imbalanced) in NumPy's only: each .npz holds one array, ``arr_0``.
Both formats load here; a .npz is read without unpickling anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mnistkit.data.datasets import (
    IDX_FILE_NAMES,
    IDX_FILES,
    IMAGE_SIZE,
    DatasetSpec,
    DownloadSource,
    ImageDataset,
    RemoteFile,
    existing_idx_file,
    idx_files,
    load_idx_directory,
    register_dataset,
)
from mnistkit.errors import DataFormatError

SOURCE = "https://github.com/rois-codh/kmnist"
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")  # kmnist_classmap.csv, romanised
# k49_classmap.csv, romanised: the 46 hiragana in their table's order, the archaic wi and we, and the iteration mark.
K49_CLASSES = ("a", "i", "u", "e", "o", "ka", "ki", "ku", "ke", "ko", "sa", "shi", "su", "se", "so", "ta", "chi",
               "tsu", "te", "to", "na", "ni", "nu", "ne", "no", "ha", "hi", "fu", "he", "ho", "ma", "mi", "mu", "me",
               "mo", "ya", "yu", "yo", "ra", "ri", "ru", "re", "ro", "wa", "wi", "we", "wo", "n", "iteration mark")
NPZ_PARTS = ("train-imgs", "train-labels", "test-imgs", "test-labels")


def npz_names(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}-{part}.npz" for part in NPZ_PARTS)


def read_npz(path: Path, ndim: int) -> np.ndarray:
    """The one array (``arr_0``) of a publisher's .npz file: uint8 28x28 images (``ndim`` 3) or integer labels (1)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = archive.files
            array = archive["arr_0"] if "arr_0" in names else None
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001  (a damaged zip makes zipfile and zlib raise many kinds of error)
        raise DataFormatError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if array is None:
        raise DataFormatError(f"{path}: expected one array named arr_0, found {names}")
    if ndim == 3 and (array.ndim != 3 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or array.dtype != np.uint8):
        raise DataFormatError(f"{path}: expected uint8 images of {IMAGE_SIZE}x{IMAGE_SIZE}, found {array.dtype} "
                              f"of shape {array.shape}")
    if ndim == 1 and (array.ndim != 1 or not np.issubdtype(array.dtype, np.integer)):
        raise DataFormatError(f"{path}: expected a list of integer labels, found {array.dtype} of shape {array.shape}")
    return array


def load_npz_directory(directory: Path, name: str, prefix: str, classes: tuple[str, ...]) -> ImageDataset:
    paths = [directory / file for file in npz_names(prefix)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataFormatError(f"{name}: missing {', '.join(missing)} in {directory}. Put the four NumPy files "
                              f"({', '.join(npz_names(prefix))}) there, pass --data-dir, or run `mnistkit download "
                              f"{name}` where there is internet.")
    arrays = [read_npz(path, ndim) for path, ndim in zip(paths, (3, 1, 3, 1))]
    splits = {}
    for split, (images, labels), (image_path, label_path) in zip(
            ("train", "test"), (arrays[:2], arrays[2:]), (paths[:2], paths[2:])):
        if len(images) != len(labels):
            raise DataFormatError(f"{directory}: {split} split has {len(images)} images in {image_path.name} but "
                                  f"{len(labels)} labels in {label_path.name} (mismatched files?)")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes):
            raise DataFormatError(f"{label_path}: labels must lie in 0..{len(classes) - 1} for {len(classes)} "
                                  f"classes, found {int(labels.min())}..{int(labels.max())}")
        splits[f"{split}_images"] = torch.from_numpy(np.ascontiguousarray(images))
        splits[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(name=name, classes=classes, **splits)


def load_kmnist(directory: Path) -> ImageDataset:
    """Kuzushiji-MNIST from its IDX files, or from its NumPy files where the IDX ones are not there."""
    has_idx = any(existing_idx_file(directory, stem) for stem in IDX_FILES.values())
    if not has_idx and any((directory / file).is_file() for file in npz_names("kmnist")):  # names what is missing
        return load_npz_directory(directory, "kmnist", "kmnist", KMNIST_CLASSES)
    return load_idx_directory(directory, "kmnist", KMNIST_CLASSES)


def load_k49(directory: Path) -> ImageDataset:
    return load_npz_directory(directory, "k49", "k49", K49_CLASSES)


register_dataset(DatasetSpec(
    name="kmnist", description="Kuzushiji-MNIST, cursive Japanese characters (IDX or NumPy files)",
    classes=KMNIST_CLASSES, loader=load_kmnist, files=(*IDX_FILE_NAMES, "or the four kmnist-*.npz"), source=SOURCE,
    item="character",
    download=DownloadSource(("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
                            idx_files("md5:bdb82020997e1d708af4cf47b453dcf7", "md5:e144d726b3acfaa3e44228e80efcd344",
                                      "md5:5c965bf0a639b31b8f53240b1b52f4d7", "md5:7320c461ea6c1c855c0b718fb2a4b134")),
))
register_dataset(DatasetSpec(
    name="k49", description="Kuzushiji-49, 48 cursive hiragana and the iteration mark (imbalanced; NumPy files)",
    classes=K49_CLASSES, loader=load_k49, files=npz_names("k49"), source=SOURCE, item="character",
    # The publisher gives no digests for these files: the loader checks every array's type and shape instead.
    download=DownloadSource(("https://codh.rois.ac.jp/kmnist/dataset/k49/",),
                            tuple(RemoteFile(file, "") for file in npz_names("k49"))),
))
