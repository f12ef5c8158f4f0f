"""One process vs several (torchrun + DDP) on this machine, at the same global batch and seed.

    python bench/ddp.py                       # 1 and 2 processes, `default` preset for 5 epochs
    python bench/ddp.py --procs 1 2 4 --epochs 15

Each run is `torchrun --standalone --nproc_per_node W -m mnistkit train ...` with the cores split
evenly between the W processes (OMP_NUM_THREADS), test accuracy scored after every epoch for this
report only. Reported: training images/s, seconds until test accuracy first reaches 99%, final
validation and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402


def run(procs: int, preset: str, epochs: int, seed: int) -> dict:
    out = ROOT / "runs" / "ddp" / f"{preset}-{epochs}ep-w{procs}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           "-m", "mnistkit", "train", "--preset", preset, "--epochs", str(epochs), "--seed", str(seed),
           "--test-every-epoch", "--no-report", "--no-progress", "--device", "cpu", "--out", str(out)]
    threads = max(1, (os.cpu_count() or 1) // procs)
    print("$", " ".join(cmd[1:]), f"(OMP_NUM_THREADS={threads})", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    metrics = json.loads((out / "metrics.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reached = next((h["train_seconds"] for h in history if h["test_accuracy"] >= 0.99), None)
    return {**metrics, "reached": reached, "img_s": metrics["epochs"] * metrics["train_images"] / metrics["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    for procs in args.procs:
        r = run(procs, args.preset, args.epochs, args.seed)
        rows.append([procs, r["global_batch"], r["batch_per_process"], f"{r['img_s']:,.0f}", f"{r['train_seconds']:.1f}",
                     f"{r['reached']:.1f}" if r["reached"] is not None else "never", f"{r['val_accuracy']:.4f}",
                     f"{r['test_accuracy']:.4f}"])
    table = markdown_table(["processes", "global batch", "batch per process", "train img/s", "train s",
                            "train s to 99% test", "val acc", "test acc"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Data parallel on this machine: `--preset {args.preset}`, {args.epochs} epochs",
                       f"python bench/ddp.py --procs {' '.join(map(str, args.procs))} --preset {args.preset} "
                       f"--epochs {args.epochs}", table,
                       "Same global batch and seed; the cores are split evenly between the processes (gloo on CPU).")


if __name__ == "__main__":
    main()
