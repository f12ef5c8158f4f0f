"""Candidates for the `fast` preset, chosen on validation: one epoch each, several seeds.

    python bench/fast_candidates.py [--seeds 5]     # appends the table to BENCHMARKS.md

Each candidate changes the `fast` preset as shown. The rule: among candidates whose mean validation
accuracy is within 0.1 points of the best, the fastest; times within 10% of each other are a tie (the
same network measured twice here differed by 10%), broken by fewer multiply-accumulates. Test
accuracy is printed for the record and chooses nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import append_section, markdown_table

CANDIDATES = {
    "mknet-m 16/32/64 (the earlier `fast`)": {"model_kwargs": {"widths": [16, 32, 64]}},
    "mknet-m 8/24/64": {"model_kwargs": {"widths": [8, 24, 64]}},
    "mknet-m 8/32/64": {"model_kwargs": {"widths": [8, 32, 64]}},
    "mknet-s 8/24/48": {"model": "mknet-s", "model_kwargs": {"widths": [8, 24, 48]}},
}


def main() -> None:
    import mnistkit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in CANDIDATES.items():
            runs = [mnistkit.train(mnistkit.make_config("fast", seed=seed, progress=False,
                                                        out=str(Path(tmp) / f"{len(rows)}-{seed}"), **changes)).metrics
                    for seed in range(args.seeds)]
            val = [m["val_accuracy"] for m in runs]
            test = [m["test_accuracy"] for m in runs]
            seconds = [m["train_seconds"] for m in runs]
            rows.append([name, f"{statistics.mean(val):.4f}", f"{min(val):.4f}–{max(val):.4f}",
                         f"{statistics.mean(seconds):.2f}", f"{min(test):.4f}–{max(test):.4f}",
                         sum(t >= 0.99 for t in test)])
            print(rows[-1], flush=True)
    table = markdown_table(["candidate", "val acc mean", "val acc range", "train s mean", "test acc range (record only)",
                            "seeds >= 99.0% test"], rows)
    print(table)
    if not args.no_append:
        rule = ("Rule: among candidates within 0.1 points of the best mean validation accuracy, the fastest; times "
                "within 10% are a tie, broken by fewer multiply-accumulates. Test accuracy chose nothing.")
        append_section(f"`fast` candidates, one epoch, {args.seeds} seeds",
                       f"python bench/fast_candidates.py --seeds {args.seeds}", table, rule)


if __name__ == "__main__":
    main()
