"""Side by side: the same training command on two versions of mnistkit, alternating, in one run.

    python bench/ab.py --base HEAD~3 --preset default           # this tree vs an earlier commit
    python bench/ab.py --base main --preset fast --seeds 3

The base version is checked out with `git worktree` into runs/ab/ and run from its own src/ with this
environment's packages. Runs alternate (base, this, base, this, ...) so that machine noise hits both
alike. Each run is `python -m mnistkit train --preset P --seed S --no-report --no-progress` in its own
process; reported: validation and test accuracy, training seconds, wall seconds and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402


def checkout(rev: str) -> tuple[Path, str]:
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    tree = ROOT / "runs" / "ab" / f"src-{commit}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True,
                       capture_output=True)
    return tree / "src", commit


def train_once(src: Path, preset: str, seed: int, out: Path, extra: list[str]) -> dict:
    """One training run in a child process; its metrics.json plus wall time and the child's peak RSS."""
    cmd = [sys.executable, "-m", "mnistkit", "train", "--preset", preset, "--seed", str(seed), "--out", str(out),
           "--no-report", "--no-progress", *extra]
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (status {status})")
    metrics = json.loads((out / "metrics.json").read_text())
    return {**metrics, "wall": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--note", default="", help="what changed, for the heading")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("extra", nargs="*", help="more `mnistkit train` options, after --")
    args = parser.parse_args()
    base_src, commit = checkout(args.base)
    versions = {f"base {commit}": base_src, "this tree": ROOT / "src"}
    results: dict[str, list[dict]] = {name: [] for name in versions}
    for seed in range(args.seeds):
        for name, src in versions.items():
            out = ROOT / "runs" / "ab" / f"{args.preset}-{name.split()[0]}-{commit}-seed{seed}"
            r = train_once(src, args.preset, seed, out, args.extra)
            print(f"{name} seed {seed}: val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f} "
                  f"train {r['train_seconds']:.1f}s wall {r['wall']:.1f}s", flush=True)
            results[name].append(r)
    rows = []
    for name, rs in results.items():
        mean = {key: statistics.mean(r[key] for r in rs) for key in ("train_seconds", "wall", "peak_rss_mib")}
        rows.append([name, len(rs), " ".join(f"{r['val_accuracy']:.4f}" for r in rs),
                     " ".join(f"{r['test_accuracy']:.4f}" for r in rs), f"{mean['train_seconds']:.1f}",
                     f"{mean['wall']:.1f}", f"{mean['peak_rss_mib']:.0f}"])
    table = markdown_table(["version", "seeds", "val acc", "test acc", "train s (mean)", "wall s (mean)",
                            "peak RSS MiB"], rows)
    print(table)
    if not args.no_append:
        title = f"Side by side: `--preset {args.preset}`, base {commit} vs this tree" + (f" ({args.note})" if args.note else "")
        append_section(title, f"python bench/ab.py --base {args.base} --preset {args.preset} --seeds {args.seeds}",
                       table, "Runs alternate between the two versions, one process each, on the same machine.")


if __name__ == "__main__":
    main()
