"""A folder of 28x28 pictures: train on them as they are, or framed again into MNIST's 20-pixel box?

    python bench/folder_framing.py [--seed 1]   # two runs of the generic recipe, about 3 min on 2 cores; appends

A dataset's own images saved as 28x28 files are what `folder` gets from a user who exports one. Clothes fill the
frame, so framing them the MNIST way shrinks them into 20 pixels. The first 300 images a class of the Fashion dev
training split (runs/fashion-dev, `python bench/fashion_dev.py`) train the `generic` recipe (seed 0 unless --seed
says otherwise) once as they are and once framed the MNIST way; each model is scored on the first 2,000 dev-holdout
images (not the withheld test set) framed as its training images were, as `predict` would frame them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402

WORK = ROOT / "runs" / "bench" / "folder-framing"


def main() -> None:
    import mnistkit
    from mnistkit.data.datasets import load_dataset
    from mnistkit.data.preprocess import mnistify

    sys.path.insert(0, str(ROOT))
    from tests.conftest import write_idx_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    dev = ROOT / "runs" / "fashion-dev"
    if not dev.exists():
        raise SystemExit(f"{dev} is missing: run `python bench/fashion_dev.py` first")
    data = load_dataset("fashion-mnist", dev)
    labels = data.train_labels.numpy()
    chosen = np.concatenate([np.flatnonzero(labels == c)[:300] for c in range(len(data.classes))])
    train_x, train_y = data.train_images.numpy()[chosen], labels[chosen]
    test_x, test_y = data.test_images.numpy()[:2000], data.test_labels.numpy()[:2000]
    mnist_way = lambda x: (np.stack([mnistify(i / 255.0) for i in x]) * 255).round().astype(np.uint8)  # noqa: E731

    rows = []
    for name, frame in (("as they are", lambda x: x), ("framed the MNIST way (20-pixel box, by mass)", mnist_way)):
        tag = ("as-is" if frame is not mnist_way else "mnist-framed") + (f"-seed{args.seed}" if args.seed else "")
        directory = write_idx_dataset(WORK / f"{tag}-data", frame(train_x), train_y, frame(test_x), test_y)
        run = mnistkit.train(mnistkit.make_config(None, dataset="idx", data_dir=str(directory), seed=args.seed,
                                                  out=str(WORK / tag), progress=False))
        rows.append([name, f"{run.metrics['val_accuracy']:.4f}", f"**{run.metrics['test_accuracy']:.4f}**",
                     f"{run.metrics['train_seconds']:.0f}"])
        print(rows[-1], flush=True)
    table = markdown_table(["training pictures", "val acc (300 images)", "dev holdout acc, 2,000 images (not test)",
                            "train s"], rows)
    print(table)
    if not args.no_append:
        append_section("A folder of 28x28 Fashion pictures: as they are or framed the MNIST way (generic recipe, "
                       f"300 a class, seed {args.seed})", " ".join(["python", "bench/folder_framing.py", *sys.argv[1:]]), table)


if __name__ == "__main__":
    main()
