"""Candidates for the `fast` preset, chosen on validation: one epoch each, several seeds.

    python bench/fast_candidates.py [--seeds 5]     # appends the table to BENCHMARKS.md

Each candidate changes the `fast` preset as shown; `choose` applies the rule and prints its pick.
Test accuracy is printed for the record and chooses nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import append_section, markdown_table
from mnistkit.models.summary import count_macs

# What the candidates vary, at the values the earlier `fast` preset had, so that the table reproduces
# whatever the preset has become since.
BASE = {"model": "mknet-s", "model_kwargs": {}, "lr": 0.2, "label_smoothing": 0.0}
CANDIDATES = {
    "mknet-s 8/24/48 (the earlier `fast`)": {"model": "mknet-s"},
    "mknet-xs 16/16/32": {"model": "mknet-xs", "model_kwargs": {"widths": [16, 16, 32]}},
    "mknet-xs 16/16/48": {"model": "mknet-xs", "model_kwargs": {"widths": [16, 16, 48]}},
    "mknet-xs 16/16/64": {"model": "mknet-xs", "model_kwargs": {"widths": [16, 16, 64]}},
    "mknet-xs 16/32/32": {"model": "mknet-xs", "model_kwargs": {"widths": [16, 32, 32]}},
    "mknet-xs 16/24/48": {"model": "mknet-xs", "model_kwargs": {"widths": [16, 24, 48]}},
    "mknet-xs 16/32/64": {"model": "mknet-xs", "model_kwargs": {"widths": [16, 32, 64]}},
    "mknet-xs 16/16/64, label smoothing 0.1": {"model": "mknet-xs", "label_smoothing": 0.1},
    "mknet-xs 16/16/64, label smoothing 0.2": {"model": "mknet-xs", "label_smoothing": 0.2},
    "mknet-xs 16/16/64, label smoothing 0.1, lr 0.3": {"model": "mknet-xs", "label_smoothing": 0.1, "lr": 0.3},
}
VAL_MARGIN = 0.001  # candidates this close to the best mean validation accuracy count as equally accurate
TIME_TIE = 0.10  # times within 10% are a tie: the same network measured twice here differed by that much


def choose(results: dict[str, dict]) -> str:
    """The rule: among the equally accurate, the fastest; a time tie goes to fewer multiply-accumulates,
    then to the higher mean validation accuracy."""
    best_val = max(r["val"] for r in results.values())
    accurate = {n: r for n, r in results.items() if r["val"] >= best_val - VAL_MARGIN}
    fastest = min(r["seconds"] for r in accurate.values())
    tied = [n for n, r in accurate.items() if r["seconds"] <= fastest * (1 + TIME_TIE)]
    return min(tied, key=lambda n: (accurate[n]["macs"], -accurate[n]["val"]))


def main() -> None:
    import mnistkit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in CANDIDATES.items():
            runs = [mnistkit.train(mnistkit.make_config("fast", seed=seed, progress=False,
                                                        out=str(Path(tmp) / f"{len(rows)}-{seed}"), **BASE | changes)).metrics
                    for seed in range(args.seeds)]
            val = [m["val_accuracy"] for m in runs]
            test = [m["test_accuracy"] for m in runs]
            seconds = [m["train_seconds"] for m in runs]
            cfg = mnistkit.make_config("fast", **BASE | changes)
            macs = count_macs(mnistkit.create_model(cfg.model, **cfg.model_kwargs))
            results[name] = {"val": statistics.mean(val), "seconds": statistics.mean(seconds), "macs": macs}
            rows.append([name, f"{macs / 1e6:.2f} M", f"{statistics.mean(val):.4f}", f"{min(val):.4f}–{max(val):.4f}",
                         f"{statistics.mean(seconds):.2f}", f"{min(test):.4f}–{max(test):.4f}",
                         sum(t >= 0.99 for t in test)])
            print(rows[-1], flush=True)
    table = markdown_table(["candidate", "MACs", "val acc mean", "val acc range", "train s mean",
                            "test acc range (record only)", "seeds >= 99.0% test"], rows)
    chosen = choose(results)
    rule = (f"Rule: among candidates within {VAL_MARGIN * 100:.1f} points of the best mean validation accuracy, the "
            f"fastest; times within {TIME_TIE:.0%} are a tie, broken by fewer multiply-accumulates, then by higher "
            f"validation accuracy. Test accuracy chose nothing. **Chosen: {chosen}.**")
    print(table)
    print(rule)
    if not args.no_append:
        append_section(f"`fast` candidates, one epoch, {args.seeds} seeds",
                       f"python bench/fast_candidates.py --seeds {args.seeds}", table, rule)


if __name__ == "__main__":
    main()
