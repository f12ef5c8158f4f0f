"""Which epoch to keep when several tie at the best validation accuracy: the first, or the last?

    python bench/fashion_dev.py && python bench/selection.py [--seeds 0,1]

On a small dataset the validation split is small too (10% of the images): its accuracy moves in steps of
several points, and a long run reaches its best value at many epochs, the first of them often while the
learning rate is still high. This trains the `generic` recipe (`mnistkit train --dataset idx`, no preset)
with `test_every_epoch` on small subsets of data it was not tuned on, each scored after every epoch on images
held out of everything, and compares what each way of choosing the epoch would have kept:
- Fashion: the first 10 / 30 / 100 dev training images of each class; held out: the first 2,000 of the dev
  holdout (the last 10,000 Fashion-MNIST training images, never the official test set);
- MNIST: the first 10 / 30 / 100 bundled training images of each class; held out: training images
  58,000-59,999 (the MNIST test set is not used).
The held-out accuracies are read afterwards only; no choice inside a run sees them.

`--per-class 20,50,300 --skip 500 --seeds 2,3` draws new subsets (each class's images from its 500th on), the
check of 2026-12-07 on data that had not suggested the rule it decided.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402
from generic import DEV, idx_subset, train  # noqa: E402
from mnistkit.metrics import standard_error  # noqa: E402

WORK = ROOT / "runs" / "selection"


def build(per_class_sizes: list[int], skip: int) -> dict[str, Path]:
    from mnistkit.data.datasets import IDX_FILES, bundled_mnist_dir
    from mnistkit.data.idx import read_idx

    def read(directory: Path) -> list[np.ndarray]:
        return [read_idx(directory / (IDX_FILES[key] + ".gz"))
                for key in ("train_images", "train_labels", "test_images", "test_labels")]

    fx, fy, fhx, fhy = read(DEV)
    mx, my, _, _ = read(bundled_mnist_dir())
    sets = {}
    tail = f"-skip{skip}" if skip else ""
    for per_class in per_class_sizes:
        sets[f"Fashion {per_class}/class{tail}"] = idx_subset(WORK / f"fashion-{per_class}{tail}", fx, fy, per_class,
                                                              fhx[:2000], fhy[:2000], skip)
        sets[f"MNIST {per_class}/class{tail}"] = idx_subset(WORK / f"mnist-{per_class}{tail}", mx[:58000], my[:58000],
                                                            per_class, mx[58000:], my[58000:], skip)
    return sets


def tied_at_best(history: list[dict]) -> list[dict]:
    """The metrics.jsonl rows of the epochs at the run's best validation accuracy."""
    best = max(row["val_accuracy"] for row in history)
    return [row for row in history if row["val_accuracy"] == best]


def within_one_standard_error(history: list[dict], val_images: int) -> int:
    """The latest epoch whose validation accuracy is within one standard error of the best before it (Laplace-
    smoothed, so that a perfect score has an error too)."""
    best, kept = -1.0, history[0]["epoch"]
    for row in history:
        best = max(best, row["val_accuracy"])
        if row["val_accuracy"] >= best - standard_error(best, val_images):
            kept = row["epoch"]
    return kept


def chosen_epochs(history: list[dict], val_images: int) -> dict[str, int]:
    """The epoch each rule keeps, from a run's metrics.jsonl rows."""
    ties = tied_at_best(history)
    return {"first tie": ties[0]["epoch"], "last tie (today)": ties[-1]["epoch"],
            "lowest val loss among ties": min(ties, key=lambda row: row["val_loss"])["epoch"],
            "within one SE of the best": within_one_standard_error(history, val_images),
            "final epoch": history[-1]["epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--per-class", default="10,30,100", help="subset sizes, images per class")
    parser.add_argument("--skip", type=int, default=0, help="take each class's images from this one on")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    rows, gains = [], {}
    for title, directory in build([int(n) for n in args.per_class.split(",")], args.skip).items():
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = WORK / "runs" / f"{directory.name}-seed{seed}"
            if not (out / "metrics.json").exists():
                train("idx", directory, ["--seed", str(seed), "--set", "test_every_epoch=true"], out)
            history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            held_out = {row["epoch"]: row["test_accuracy"] for row in history}
            val_images = json.loads((out / "metrics.json").read_text())["val_images"]
            epochs = chosen_epochs(history, val_images)
            base = held_out[epochs["last tie (today)"]]
            for rule, epoch in epochs.items():
                gains.setdefault(rule, []).append(100 * (held_out[epoch] - base))
            rows.append([title, seed, val_images, len(history), len(tied_at_best(history)),
                         *[f"{epoch}: {held_out[epoch]:.4f}" for epoch in epochs.values()]])
            print(rows[-1], flush=True)
    rows.append(["mean change vs last tie (points)", "", "", "", "",
                 *[f"{np.mean(g):+.2f} (lower in {sum(x < 0 for x in g)}/{len(g)})" for g in gains.values()]])
    table = markdown_table(["data", "seed", "val images", "epochs", "epochs at best val",
                            *[f"{rule}: epoch: held-out acc" for rule in gains]], rows)
    print(table)
    if not args.no_append:
        append_section("Which of the epochs tied at the best validation accuracy to keep",
                       f"python bench/selection.py --seeds {args.seeds} --per-class {args.per_class} --skip {args.skip}",
                       table,
                       "Held-out accuracy: Fashion on 2,000 dev-holdout images (not the official test set), MNIST on "
                       "training images 58,000-59,999 (not the MNIST test set); read after the runs, chosen by nothing.")


if __name__ == "__main__":
    main()
