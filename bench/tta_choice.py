"""Is test-time augmentation chosen well on a small validation split?

    python bench/fashion_dev.py && python bench/tta_choice.py [--per-class 15,40,150,1000] [--skip 1000] [--seed 4]

`train` keeps one-pixel shift TTA only if it raises validation accuracy. But the epoch was chosen to maximise
validation accuracy without TTA, so on that same split anything else tends to look worse (the winner's curse),
and a tie counts as "no". This trains the `generic` recipe (`mnistkit train --dataset idx`, no preset) on small
balanced subsets (bench/selection.py's: Fashion dev training images and MNIST training images 0-57,999, each
class's images from its SKIP-th on), scores each saved model on held-out images with and without shift TTA, and
compares what two rules would keep:
- "strictly higher" (what `train` does): TTA if its validation accuracy is above the accuracy without it;
- "within one SE": TTA unless its validation accuracy is more than one standard error below.
Held out: Fashion, the first 2,000 dev-holdout images (never the official test set); MNIST, training images
58,000-59,999 (not the MNIST test set). They are read after the runs only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402
from generic import DEV, train  # noqa: E402
from mnistkit.metrics import standard_error  # noqa: E402
from selection import build  # noqa: E402

WORK = ROOT / "runs" / "tta-choice"


def held_out_accuracy(run: Path) -> dict[bool, float]:
    """The run's saved model on its dataset's test files (the held-out images here), without and with shift TTA."""
    from mnistkit.ensemble import evaluate_ensemble

    scored = evaluate_ensemble([run], split="test").split_accuracy
    return {False: scored["plain"], True: scored["tta"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", default="15,40,150,1000", help="subset sizes, images per class")
    parser.add_argument("--skip", type=int, default=1000, help="take each class's images from this one on")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--runs", type=Path, default=WORK / "runs", help="where the runs are (trained if missing)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    rows, gains = [], {"strictly higher": [], "within one SE": [], "always": []}
    for title, directory in build([int(n) for n in args.per_class.split(",")], args.skip).items():
        out = args.runs / f"{directory.name}-seed{args.seed}"
        if not (out / "metrics.json").exists():
            train("idx", directory, ["--seed", str(args.seed)], out)
        metrics = json.loads((out / "metrics.json").read_text())
        n, plain, shifted = metrics["val_images"], metrics["val_accuracy_before_shift_tta"], metrics["val_accuracy_shift_tta"]
        keeps = {"strictly higher": shifted > plain, "within one SE": shifted >= plain - standard_error(plain, n),
                 "always": True}
        held_out = held_out_accuracy(out)
        for rule, keep in keeps.items():
            gains[rule].append(100 * (held_out[keep] - held_out[keeps["strictly higher"]]))
        rows.append([title, args.seed, n, f"{plain:.4f}", f"{shifted:.4f}", f"{held_out[False]:.4f}",
                     f"{held_out[True]:.4f}", *["TTA" if keep else "-" for keep in keeps.values()]])
        print(rows[-1], flush=True)
    rows.append(["mean change vs strictly higher (points)", "", "", "", "", "", "",
                 *[f"{np.mean(g):+.2f} (lower in {sum(x < 0 for x in g)}/{len(g)})" for g in gains.values()]])
    table = markdown_table(["data", "seed", "val images", "val plain", "val shift TTA", "held-out plain",
                            "held-out shift TTA", *[f"keeps ({rule})" for rule in gains]], rows)
    print(table)
    if not args.no_append:
        append_section("Shift TTA chosen on a small validation split",
                       f"python bench/tta_choice.py --per-class {args.per_class} --skip {args.skip} --seed {args.seed}"
                       f" --runs {args.runs.relative_to(ROOT) if args.runs.is_relative_to(ROOT) else args.runs}",
                       table, "Held-out accuracy: Fashion on 2,000 dev-holdout images (not the official test set), "
                       "MNIST on training images 58,000-59,999 (not the MNIST test set); read after the runs.")


if __name__ == "__main__":
    main()
