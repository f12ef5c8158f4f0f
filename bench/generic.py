"""The `generic` recipe on datasets it was never tuned on, against the tutorial CNN recipe on the same data.

    python bench/fashion_dev.py && python bench/generic.py

Datasets, built from the Fashion-MNIST training files (`runs/fashion-dev`):
- `idx`, 100 images per class: the first 1,000 of the dev training images, balanced;
- `idx`, 1,000 images per class: 10,000 images;
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
import shutil
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


def build() -> dict[str, tuple[str, Path]]:
    from PIL import Image

    from mnistkit.data.datasets import FASHION_CLASSES, IDX_FILES, bundled_mnist_dir
    from mnistkit.data.idx import read_idx, write_idx

    x = read_idx(DEV / (IDX_FILES["train_images"] + ".gz"))
    y = read_idx(DEV / (IDX_FILES["train_labels"] + ".gz"))
    hx = read_idx(DEV / (IDX_FILES["test_images"] + ".gz"))
    hy = read_idx(DEV / (IDX_FILES["test_labels"] + ".gz"))
    sets = {}
    for per_class in (100, 1000):
        directory = WORK / f"idx-{per_class}"
        if not directory.exists():
            directory.mkdir(parents=True)
            pick = balanced(y, per_class)
            for key, array in (("train_images", x[pick]), ("train_labels", y[pick]), ("test_images", hx),
                               ("test_labels", hy)):
                write_idx(directory / (IDX_FILES[key] + ".gz"), array)
        sets[f"Fashion, {per_class} per class (idx)"] = ("idx", directory)
    folder = WORK / "folder-300"
    if not folder.exists():
        for i in balanced(y, 300, skip=2000):  # images the idx sets do not use
            name = FASHION_CLASSES[y[i]].replace("/", "-")
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(255 - np.kron(x[i], np.ones((2, 2), np.uint8))).save(folder / name / f"{i}.png")
    sets["Fashion PNGs, 300 per class (folder)"] = ("folder", folder)
    mnist = bundled_mnist_dir()
    mx, my = (read_idx(mnist / (IDX_FILES[key] + ".gz")) for key in ("train_images", "train_labels"))
    for per_class in (100, 1000):
        directory = WORK / f"mnist-{per_class}"
        if not directory.exists():
            directory.mkdir(parents=True)
            pick = balanced(my, per_class)
            write_idx(directory / (IDX_FILES["train_images"] + ".gz"), mx[pick])
            write_idx(directory / (IDX_FILES["train_labels"] + ".gz"), my[pick])
            for key in ("test_images", "test_labels"):
                shutil.copy(mnist / (IDX_FILES[key] + ".gz"), directory / (IDX_FILES[key] + ".gz"))
        sets[f"MNIST, {per_class} per class (idx)"] = ("idx", directory)
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
    parser.add_argument("--candidate", default="", help="train options of a third recipe to compare, e.g. "
                        "'--set try_shift_tta=true --set model_kwargs.extra_convs=2'")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    recipes = {"generic (no --preset)": [],
               "tutorial `cnn-16-32`": ["--preset", "cnn-16-32", "--set", "val_fraction=0.1"]}
    if args.candidate:
        recipes[f"candidate (generic {args.candidate})"] = args.candidate.split()
    rows = []
    for title, (dataset, directory) in build().items():
        for name, recipe in recipes.items():
            r = train(dataset, directory, recipe, WORK / "runs" / f"{directory.name}-{name.split()[0]}")
            scored = ("MNIST test" if directory.name.startswith("mnist") else "dev holdout") if dataset == "idx" \
                else "its 20% test split"
            rows.append([title, r["train_images"] + r["val_images"], name, r["epochs"], f"{r['val_accuracy']:.4f}",
                         f"{r['test_accuracy']:.4f} ({scored})", f"{r['train_seconds']:.0f}"])
            print(rows[-1], flush=True)
    table = markdown_table(["data", "training images", "recipe", "epochs", "val acc", "held-out acc", "train s"],
                           rows)
    print(table)
    if not args.no_append:
        append_section("The generic recipe on data it was not tuned on", "python bench/generic.py", table,
                       "The generic recipe sizes its validation split and number of steps to the data (config.json's "
                       "`recipe_note` says how); neither recipe saw the held-out images. Held-out accuracy on the "
                       "idx sets is on the last 10,000 Fashion-MNIST training images, not the official test set.")


if __name__ == "__main__":
    main()
