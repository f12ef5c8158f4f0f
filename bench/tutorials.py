"""The classic tutorial recipes, trained with their published hyperparameters, against their published accuracy.

    python bench/tutorials.py                 # lenet, cnn-16-32, mlp, cnn-32-64; appends to BENCHMARKS.md

The recipes run on mnistkit's data path (the data on the device as one tensor); the test set is
scored once with the best-validation weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402

PUBLISHED = {"lenet": 0.990, "cnn-16-32": 0.9907, "mlp": 0.9813, "cnn-32-64": None}


def main() -> None:
    import mnistkit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PUBLISHED))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    for preset in args.presets.split(","):
        out = ROOT / "runs" / "bench" / f"tutorial-{preset}"
        m = mnistkit.train(mnistkit.make_config(preset, seed=args.seed, out=str(out), progress=False)).metrics
        published = PUBLISHED.get(preset)
        gap = f"{100 * (m['test_accuracy'] - published):+.2f}" if published else "n/a"
        rows.append([f"`{preset}`", m["epochs"], f"{m['train_seconds']:.1f}", f"{m['val_accuracy']:.4f}",
                     f"{m['test_accuracy']:.4f}", f"{published:.4f}" if published else "not stated", gap])
        print(rows[-1], flush=True)
    table = markdown_table(["preset (published recipe)", "epochs", "train s", "val acc", "test acc", "published test acc",
                            "difference (points)"], rows)
    print(table)
    if not args.no_append:
        append_section("Tutorial recipes vs their published accuracy", f"python bench/tutorials.py --seed {args.seed}",
                       table, f"One run each, seed {args.seed}.")


if __name__ == "__main__":
    main()
