"""EMNIST (Cohen et al., 2017): NIST's handwritten letters and digits in MNIST's format, in six splits.

Its distribution holds, for each split, four IDX files named ``emnist-<split>-train-images-idx3-ubyte.gz`` (...) and
``emnist-<split>-mapping.txt``, whose lines map a label to the character codes it stands for ("10 65 97": A or a).
The images are stored transposed (each row holds a column of the character); they are turned upright here, so
pictures of letters read right. Labels become 0..K-1 in the mapping's order (the letters split numbers them 1..26).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mnistkit.data.datasets import DatasetSpec, ImageDataset, load_idx_directory, register_dataset
from mnistkit.errors import DataFormatError

EMNIST_SPLITS = ("balanced", "byclass", "bymerge", "digits", "letters", "mnist")
SOURCE = "https://www.nist.gov/itl/products-and-services/emnist-dataset (gzip.zip holds every split's files)"


def read_mapping(path: Path) -> list[tuple[int, str]]:
    """(label, class name) per line of an EMNIST mapping file; a name joins the characters a label stands for."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise DataFormatError(f"emnist: missing {path.name} in {path.parent}; it comes with the split's IDX files "
                              f"in EMNIST's gzip.zip ({SOURCE.split(' ')[0]})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a readable mapping file ({exc})") from None
    mapping = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if (len(fields) < 2 or not all(f.isdigit() for f in fields) or int(fields[0]) > 255
                or not all(32 < int(f) < 127 for f in fields[1:])):
            raise DataFormatError(f"{path}, line {number}: expected a label and character codes like '10 65 97', "
                                  f"found {line!r}")
        mapping.append((int(fields[0]), "".join(dict.fromkeys(chr(int(f)) for f in fields[1:]))))
    labels, names = [label for label, _ in mapping], [name for _, name in mapping]
    if not mapping or len(set(labels)) != len(labels) or len(set(names)) != len(names):
        raise DataFormatError(f"{path}: expected distinct labels and characters, found {len(mapping)} lines with "
                              f"{len(set(labels))} labels and {len(set(names))} characters")
    return mapping


def load_emnist(directory: Path, split: str = "balanced") -> ImageDataset:
    if split not in EMNIST_SPLITS:
        raise DataFormatError(f"emnist: unknown split '{split}'; the splits are {', '.join(EMNIST_SPLITS)}")
    prefix = f"emnist-{split}-"
    mapping = read_mapping(directory / f"{prefix}mapping.txt")
    labels = torch.tensor([label for label, _ in mapping])
    # Any label an IDX file can hold (one byte) passes here: the mapping says which ones are classes.
    raw = load_idx_directory(directory, "emnist", tuple(map(str, range(256))), prefix=prefix)
    class_of_label = torch.full((256,), -1, dtype=torch.long)
    class_of_label[labels] = torch.arange(len(labels))
    splits = {}
    for part in ("train", "test"):
        y = class_of_label[getattr(raw, f"{part}_labels")]
        if (y < 0).any():
            unknown = sorted(set(getattr(raw, f"{part}_labels")[y < 0].tolist()))
            raise DataFormatError(f"{directory / (prefix + 'mapping.txt')}: has no line for label(s) {unknown[:5]} "
                                  f"of the {part} split")
        splits[f"{part}_labels"] = y
        splits[f"{part}_images"] = getattr(raw, f"{part}_images").transpose(1, 2).contiguous()
    return ImageDataset(name="emnist", classes=tuple(name for _, name in mapping), **splits)


register_dataset(DatasetSpec(
    name="emnist", description="EMNIST handwritten letters and digits (--set dataset_options.split=letters, ...)",
    classes=(), loader=load_emnist, files=("emnist-<split>-train-images-idx3-ubyte.gz, ... (four IDX files)",
                                           "emnist-<split>-mapping.txt"),
    source=SOURCE, item="character",
))
