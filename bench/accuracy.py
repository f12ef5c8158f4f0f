"""Accuracy and time of the `default` and `best` presets, and of an ensemble of `best` runs with TTA.

    python bench/accuracy.py                       # ~45 min on a 2-core CPU; appends to BENCHMARKS.md
    python bench/accuracy.py --ensemble-epochs 30  # full-length ensemble members (slower)

Presets were tuned on the validation split; the test split is only reported here. Each training run
is its own process, so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table, peak_rss_mib, run_job  # noqa: E402
from mnistkit.timing import inference_speed  # noqa: E402

RUNS = ROOT / "runs" / "bench"


def train_job(preset: str, seed: int, epochs: int | None, device: str) -> dict:
    import mnistkit

    out = RUNS / (f"{preset}-seed{seed}" + ("" if epochs is None else f"-{epochs}ep"))
    start = time.perf_counter()
    result = mnistkit.train(mnistkit.make_config(preset, seed=seed, epochs=epochs, out=str(out),
                                                 device=device))
    wall = time.perf_counter() - start
    info = {"run_dir": str(out), "preset": preset, "seed": seed, **result.metrics, "wall_seconds": wall,
            "peak_rss_mib": peak_rss_mib()}
    info.update(inference_speed(result.model, torch.device(device)))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--members", type=int, default=3, help="ensemble size (the best run plus more seeds)")
    parser.add_argument("--ensemble-epochs", type=int, default=15, help="epochs of the extra ensemble members")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if args.job:
        preset, seed, epochs = args.job.split(":")
        info = train_job(preset, int(seed), int(epochs) if epochs else None, args.device)
        Path(args.result).write_text(json.dumps(info, indent=2))
        return

    from mnistkit.ensemble import evaluate_ensemble

    script = Path(__file__)
    default = run_job(script, "default:0:", "--device", args.device)
    best = run_job(script, "best:0:", "--device", args.device)
    extra = [run_job(script, f"best:{seed}:{args.ensemble_epochs}", "--device", args.device)
             for seed in range(1, args.members)]
    tta_best = evaluate_ensemble([best["run_dir"]], tta=True).result
    found = evaluate_ensemble([r["run_dir"] for r in [best, *extra]], tta=True)
    ens, members = found.result, found.member_accuracy
    rows = []
    for r in (default, best, *extra):
        rows.append([f"`{r['preset']}` seed {r['seed']} ({r['model']}, {r['epochs']} epochs)", f"{r['val_accuracy']:.4f}",
                     f"{r['test_accuracy']:.4f}", f"{r['train_seconds'] / 60:.1f}", f"{r['wall_seconds'] / 60:.1f}",
                     f"{r['peak_rss_mib']:.0f}", f"{r['infer_batch1024_img_s']:,.0f}", f"{r['infer_batch1_ms']:.2f}"])
    rows.append(["`best` seed 0 + TTA (5 shifts)", "", f"{tta_best.accuracy:.4f}", "", "", "", "", ""])
    rows.append([f"ensemble of the {len(members)} `best` runs + TTA", "", f"{ens.accuracy:.4f}", "", "", "", "", ""])
    table = markdown_table(["run", "val acc", "test acc", "train min", "wall min", "peak RSS MiB",
                            "infer img/s (batch 1024)", "infer ms (batch 1)"], rows)
    notes = (f"Ensemble members' test accuracy with TTA: {', '.join(f'{m:.4f}' for m in members)}. "
             f"Reproduce the ensemble alone with `mnistkit ensemble {' '.join(r['run_dir'] for r in [best, *extra])}`.")
    print(table)
    print(notes)
    if not args.no_append:
        append_section(f"Accuracy: `default`, `best`, ensemble ({args.device})",
                       f"python bench/accuracy.py --device {args.device} --members {args.members} "
                       f"--ensemble-epochs {args.ensemble_epochs}", table, notes)


if __name__ == "__main__":
    main()
