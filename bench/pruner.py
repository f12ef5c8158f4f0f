"""What `mnistkit tune`'s pruner buys: one search run twice, with the median pruner and without it.

    python bench/fashion_dev.py     # the dev data, once
    python bench/pruner.py          # appends a table to BENCHMARKS.md

The same study (TPE seed, trials, workers, search space) on Fashion-MNIST 100 images per class, the small-data case
where the generic recipe's minimum number of steps makes every trial long. Per pruner: wall and CPU time of the
whole `mnistkit tune` command, trials completed and pruned, the best validation accuracy found, and when it was
found. Validation accuracy only, as in any study; one TPE seed, so a difference in the best value found is anecdote,
a difference in time is not.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402
from generic import DEV, build  # noqa: E402

WORK = ROOT / "runs" / "pruner"
DATASET = "Fashion, 100 per class (idx)"
# The default space without `model`: mknet-l trials would take most of the time whichever pruner runs.
SPACE = {"lr": {"float": [0.02, 0.4], "log": True}, "weight_decay": {"float": [1e-5, 2e-3], "log": True},
         "label_smoothing": {"float": [0.0, 0.2]}, "augment.rotate_degrees": {"float": [0.0, 15.0]},
         "augment.translate": {"float": [0.0, 0.15]}, "augment.hflip": {"choices": [0.0, 0.5]},
         "augment.erase": {"float": [0.0, 0.5]}}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def study(pruner: str, data_dir: Path, trials: int, workers: int, seed: int) -> list:
    out = WORK / pruner
    shutil.rmtree(out, ignore_errors=True)  # a fresh study each time: a resumed one would add no trials
    out.mkdir(parents=True)
    (out / "space.json").write_text(json.dumps(SPACE))
    cmd = [sys.executable, "-m", "mnistkit", "tune", "--dataset", "idx", "--data-dir", str(data_dir), "--trials",
           str(trials), "--workers", str(workers), "--space", str(out / "space.json"), "--pruner", pruner, "--seed",
           str(seed), "--out", str(out)]
    print("$", " ".join(cmd[1:]), flush=True)
    wall, cpu = time.perf_counter(), children_cpu_seconds()
    subprocess.run(cmd, check=True)
    wall, cpu = time.perf_counter() - wall, children_cpu_seconds() - cpu
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    states = [r["state"] for r in rows]
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: float(r["val_accuracy"]))
    return [pruner, f"{wall / 60:.1f}", f"{cpu / 60:.1f}", states.count("complete"), states.count("pruned"),
            f"{float(best['val_accuracy']):.4f}", best["trial"],
            f"{sum(float(r['seconds']) for r in rows) / 60:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    _, data_dir, _ = build()[DATASET]
    rows = [study(pruner, data_dir, args.trials, args.workers, args.seed) for pruner in ("median", "none")]
    table = markdown_table(["pruner", "wall min", "CPU min", "completed", "pruned", "best val", "best trial",
                            "trial min (sum)"], rows)
    print(table)
    if not args.no_append:
        append_section(f"`mnistkit tune` with and without its pruner: {DATASET}, {args.trials} trials, "
                       f"{args.workers} workers", f"python bench/pruner.py --trials {args.trials} --workers "
                       f"{args.workers} --seed {args.seed}", table,
                       "Both studies sample the same first trials (TPE seed); after the first pruned trial the "
                       "sampler sees different histories, so later trials differ. Search space: the default "
                       "without `model` (mknet-s, the generic recipe's network, in every trial).")


if __name__ == "__main__":
    main()
