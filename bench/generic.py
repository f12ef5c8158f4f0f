"""The `generic` recipe on datasets it was never tuned on, against the tutorial CNN recipe on the same data.

    python bench/fashion_dev.py && python bench/generic.py

Datasets, built from the Fashion-MNIST training files (`runs/fashion-dev`):
- `idx`, 100 images per class: the first 1,000 of the dev training images, balanced;
- `idx`, 1,000 and 3,000 images per class: 10,000 and 30,000 images;
- `folder`: 300 images per class written as 56x56 dark-on-light PNGs in ROOT/<class>/ (a different
  range of images), read through the same preprocessing as `mnistkit predict`;
- `idx`, MNIST 100 and 1,000 images per class (the first of the bundled training files), scored on MNIST's test set.
The Fashion idx datasets are scored on the dev holdout (the last 10,000 training images); the folder on
its own 20% split. Both recipes hold out 10% of the training images for validation. The generic
recipe is `mnistkit train --dataset NAME` with no preset; the tutorial one is `--preset cnn-16-32`
(Adam 1e-3, batch 50, 3 epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402

DEV = ROOT / "runs" / "fashion-dev"
WORK = ROOT / "runs" / "generic"


def balanced(labels: np.ndarray, per_class: int, skip: int = 0) -> np.ndarray:
    return np.sort(np.concatenate([np.nonzero(labels == c)[0][skip : skip + per_class] for c in range(10)]))


def idx_subset(directory: Path, images: np.ndarray, labels: np.ndarray, per_class: int, test_images: np.ndarray,
               test_labels: np.ndarray, skip: int = 0) -> Path:
    """DIRECTORY holding ``per_class`` images of each class, from each class's ``skip``-th on, in the four IDX files
    (written once)."""
    from mnistkit.data.datasets import IDX_FILES
    from mnistkit.data.idx import write_idx

    if not directory.exists():
        directory.mkdir(parents=True)
        pick = balanced(labels, per_class, skip)
        for key, array in (("train_images", images[pick]), ("train_labels", labels[pick]),
                           ("test_images", test_images), ("test_labels", test_labels)):
            write_idx(directory / (IDX_FILES[key] + ".gz"), array)
    return directory


def build() -> dict[str, tuple[str, Path, str]]:
    """Each dataset's title: (mnistkit dataset name, directory, what its held-out score is on)."""
    from PIL import Image

    from mnistkit.data.datasets import FASHION_CLASSES, IDX_FILES, bundled_mnist_dir
    from mnistkit.data.idx import read_idx

    def read(directory: Path) -> list[np.ndarray]:
        return [read_idx(directory / (IDX_FILES[key] + ".gz"))
                for key in ("train_images", "train_labels", "test_images", "test_labels")]

    x, y, hx, hy = read(DEV)
    sets = {}
    for per_class in (100, 1000, 3000):
        sets[f"Fashion, {per_class} per class (idx)"] = (
            "idx", idx_subset(WORK / f"idx-{per_class}", x, y, per_class, hx, hy), "dev holdout")
    folder = WORK / "folder-300"
    if not folder.exists():
        for i in balanced(y, 300, skip=2000):  # not in the 100- or 1,000-per-class sets (in the 3,000 one)
            name = FASHION_CLASSES[y[i]].replace("/", "-")
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(255 - np.kron(x[i], np.ones((2, 2), np.uint8))).save(folder / name / f"{i}.png")
    sets["Fashion PNGs, 300 per class (folder)"] = ("folder", folder, "its 20% test split")
    mx, my, mtx, mty = read(bundled_mnist_dir())
    for per_class in (100, 1000):
        sets[f"MNIST, {per_class} per class (idx)"] = (
            "idx", idx_subset(WORK / f"mnist-{per_class}", mx, my, per_class, mtx, mty), "MNIST test")
    return sets


def train(dataset: str, data_dir: Path, recipe: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "mnistkit", "train", "--dataset", dataset, "--data-dir", str(data_dir), *recipe,
           "--out", str(out), "--no-report", "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=os.environ)
    return {**json.loads((out / "metrics.json").read_text()), "wall": time.perf_counter() - start,
            "config": json.loads((out / "config.json").read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidate", default="", help="train options of a third recipe to compare, e.g. "
                        "'--set try_shift_tta=false --set model_kwargs.extra_convs=0' (the recipe before 2026-12-02)")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    seed = ["--seed", str(args.seed)]
    recipes = {"generic (no --preset)": [],
               "tutorial `cnn-16-32`": ["--preset", "cnn-16-32", "--set", "val_fraction=0.1"]}
    if args.candidate:
        recipes[f"candidate (generic {args.candidate})"] = args.candidate.split()
    rows = []
    for title, (dataset, directory, scored) in build().items():
        for name, recipe in recipes.items():
            out = WORK / "runs" / f"{directory.name}-{name.split()[0]}-seed{args.seed}"
            r = train(dataset, directory, [*recipe, *seed], out)
            rows.append([title, r["train_images"] + r["val_images"], name, r["epochs"], f"{r['val_accuracy']:.4f}",
                         f"{r['test_accuracy']:.4f} ({scored})", f"{r['train_seconds']:.0f}"])
            print(rows[-1], flush=True)
    table = markdown_table(["data", "training images", "recipe", "epochs", "val acc", "held-out acc", "train s"],
                           rows)
    print(table)
    if not args.no_append:
        command = " ".join(["python bench/generic.py", *seed, *(["--candidate", repr(args.candidate)] if args.candidate else [])])
        append_section("The generic recipe on small datasets", command, table,
                       "The generic recipe sizes its validation split and number of steps to the data (config.json's "
                       "`recipe_note` says how); no recipe saw the held-out images. Held-out accuracy on the Fashion "
                       "idx sets is on the last 10,000 Fashion-MNIST training images, not the official test set. The "
                       "generic recipe's depth and shift TTA were chosen on the Fashion sets' validation splits "
                       "(BENCHMARKS.md, 2026-12-02); the MNIST sets took part in one choice only: pooled with the others, "
                       "their validation splits turned focused epochs off on small data (2026-12-05).")


if __name__ == "__main__":
    main()
