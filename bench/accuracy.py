"""Accuracy and time of the `default` preset, of `best` over several seeds, and of their ensemble.

    python bench/accuracy.py --members 12          # ~60 min on a 2-core CPU; appends to BENCHMARKS.md
    python bench/accuracy.py --members 6 --seed0 100 --tag elastic --set augment.elastic_alpha=2.5 \
        --also runs/bench/best-seed{0..5}           # 6 new members of a variant beside 6 earlier runs

Every choice is made on the validation split, and the test split is only reported:
- the single model is the `best` run with the highest validation accuracy;
- test-time augmentation (TTA) is used, for that model and for the ensemble, only where it raises
  validation accuracy (`evaluate_ensemble(..., tta=None)`); both settings are shown;
- the ensemble is every `best` run (with ``--also``, the earlier runs named too), so that no choice of
  members is made at all.
Each training run is its own process, so its peak resident memory is its own.
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


def train_job(preset: str, seed: int, epochs: int | None, device: str, tag: str = "",
              assignments: list[str] = ()) -> dict:
    import mnistkit
    from mnistkit.config import build_config

    out = RUNS / (f"{preset}{'-' + tag if tag else ''}-seed{seed}" + ("" if epochs is None else f"-{epochs}ep"))
    options = dict(seed=seed, epochs=epochs, out=str(out), device=device)
    start = time.perf_counter()
    result = mnistkit.train(build_config(preset, options=options, assignments=list(assignments)))
    wall = time.perf_counter() - start
    info = {"run_dir": str(out), "preset": preset, "seed": seed, **result.metrics, "wall_seconds": wall,
            "peak_rss_mib": peak_rss_mib()}
    info.update(inference_speed(result.model, torch.device(device)))
    return info


def earlier_run(run_dir: Path) -> dict:
    """An earlier run's metrics, in the shape of a train_job result (its memory and speed not measured)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"run_dir": str(run_dir), **metrics, "peak_rss_mib": None, "infer_batch1024_img_s": None,
            "infer_batch1_ms": None}


def shown(run_dir: str) -> str:
    """``run_dir`` as a user in the repository root would type it."""
    path = Path(run_dir).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else run_dir


def number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--members", type=int, default=6, help="seeds of `best`: the ensemble's size")
    parser.add_argument("--epochs", type=int, help="epochs of each `best` run (default: the preset's)")
    parser.add_argument("--seed0", type=int, default=0, help="the first member's seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the new members, as `mnistkit train --set`")
    parser.add_argument("--tag", default="", help="names the new members' run directories best-TAG-seedN")
    parser.add_argument("--also", nargs="*", default=[], metavar="RUN_DIR",
                        help="earlier runs that join the new members as candidates and ensemble members")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if args.job:
        preset, seed, epochs = args.job.split(":")
        info = train_job(preset, int(seed), int(epochs) if epochs else None, args.device, args.tag, args.set)
        Path(args.result).write_text(json.dumps(info, indent=2))
        return

    from mnistkit.ensemble import evaluate_ensemble

    script = Path(__file__)
    epochs = "" if args.epochs is None else str(args.epochs)
    default = run_job(script, "default:0:", "--device", args.device)
    member_args = ["--device", args.device, "--tag", args.tag] + [a for s in args.set for a in ("--set", s)]
    bests = [run_job(script, f"best:{seed}:{epochs}", *member_args)
             for seed in range(args.seed0, args.seed0 + args.members)]
    bests += [earlier_run(Path(d)) for d in args.also]
    chosen = max(bests, key=lambda r: r["val_accuracy"])  # ties: the first listed
    single = evaluate_ensemble([chosen["run_dir"]])
    ensemble = evaluate_ensemble([r["run_dir"] for r in bests])
    rows = []
    for r in (default, *bests):
        mark = " **chosen on val**" if r is chosen else ""
        name = Path(r["run_dir"]).name if r is not default else "`default` seed 0"
        rows.append([f"{name}{mark} ({r['model']}, {r['epochs']} epochs)",
                     f"{r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}", f"{r['train_seconds'] / 60:.1f}",
                     f"{r['wall_seconds'] / 60:.1f}", number(r["peak_rss_mib"], ".0f"),
                     number(r["infer_batch1024_img_s"], ",.0f"), number(r["infer_batch1_ms"], ".2f")])
    train_minutes = sum(r["train_seconds"] for r in bests) / 60
    for name, found in ((f"single model: {Path(chosen['run_dir']).name}", single),
                        (f"ensemble of the {len(bests)} `best` runs ({train_minutes:.0f} min of training)", ensemble)):
        tta = "with TTA" if found.tta else "without TTA"
        rows.append([f"{name}, {tta} (validation's choice)", f"{found.val_accuracy['tta' if found.tta else 'plain']:.4f}",
                     f"**{found.result.accuracy:.4f}**", "", "", "", "", ""])
    table = markdown_table(["run", "val acc", "test acc", "train min", "wall min", "peak RSS MiB",
                            "infer img/s (batch 1024)", "infer ms (batch 1)"], rows)
    notes = "\n".join([
        f"Both TTA settings, val / test: single plain {single.val_accuracy['plain']:.4f} / "
        f"{single.split_accuracy['plain']:.4f}, TTA {single.val_accuracy['tta']:.4f} / {single.split_accuracy['tta']:.4f}; "
        f"ensemble plain {ensemble.val_accuracy['plain']:.4f} / {ensemble.split_accuracy['plain']:.4f}, "
        f"TTA {ensemble.val_accuracy['tta']:.4f} / {ensemble.split_accuracy['tta']:.4f}. Only the validation "
        "numbers chose.",
        "",
        f"Members' test accuracy in the chosen setting: {', '.join(f'{m:.4f}' for m in ensemble.member_accuracy)}. "
        f"Reproduce the ensemble alone with `mnistkit ensemble {' '.join(shown(r['run_dir']) for r in bests)}`."])
    print(table)
    print(notes)
    if not args.no_append:
        append_section(f"Accuracy: `default`, `best` x {len(bests)}, ensemble ({args.device})",
                       " ".join(["python bench/accuracy.py"] + sys.argv[1:]), table, notes)


if __name__ == "__main__":
    main()
