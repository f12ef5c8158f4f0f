"""Fashion-MNIST recipes, chosen on validation, measured on a dev holdout (never the official test).

    python bench/fashion_dev.py                    # once: runs/fashion-dev (first 50k train, last 10k holdout)
    python bench/fashion.py --sweep                # candidate recipes under one time budget: choose on val
    python bench/fashion.py --recipes short        # `mnistkit train --dataset fashion-mnist` (or long, both)
    python bench/fashion.py --sweep --budget 400 --seeds 3 --only "long net;32/96/192 + full-res conv"

Every candidate trains on the first 50,000 training images minus a 5,000-image validation split and
is compared on validation accuracy alone. The last 10,000 training images are a dev holdout that no
choice looked at; its accuracy is reported as "dev holdout", not as test accuracy (the official test
files are withheld).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table, peak_rss_mib, run_job  # noqa: E402

DEV = ROOT / "runs" / "fashion-dev"
NO_AUG = {"rotate_degrees": 0, "translate": 0, "scale": 0, "shear_degrees": 0, "elastic_alpha": 0, "hflip": 0, "erase": 0}
M_EXTRA = {"model": "mknet-m", "model_kwargs": {"extra_convs": 1}}
SHIFT_FLIP = {**NO_AUG, "translate": 0.1, "hflip": 0.5}
# As the `fashion-mnist-long` preset, which shifts by whole pixels since 2026-12-01 17:40 UTC: BENCHMARKS.md
# sections from before then ran the long candidates with sub-pixel shifts.
LONG = {"model": "mknet-l", "amp": True, "ema_decay": 0.999,
        "augment": {**SHIFT_FLIP, "erase": 0.3, "whole_pixel_shifts": True}}
# name -> config changes over the `fashion-mnist` preset; all train for the same seconds (--budget).
CANDIDATES = {
    "mknet-m+conv, shift": {**M_EXTRA, "augment": {**NO_AUG, "translate": 0.1}},
    "mknet-m+conv, shift+flip": {**M_EXTRA, "augment": {**NO_AUG, "translate": 0.1, "hflip": 0.5}},
    "mknet-m+conv, shift+flip+erase": {**M_EXTRA, "augment": {**NO_AUG, "translate": 0.1, "hflip": 0.5, "erase": 0.3}},
    "mknet-l, shift+flip+erase": {"model": "mknet-l", "augment": {**NO_AUG, "translate": 0.1, "hflip": 0.5, "erase": 0.3}},
    "mknet-m+2conv, shift+flip": {"model": "mknet-m", "model_kwargs": {"extra_convs": 2}, "augment": SHIFT_FLIP},
    "24/48/96+conv, shift+flip": {"model": "mknet-m", "model_kwargs": {"extra_convs": 1, "widths": [24, 48, 96]},
                                  "augment": SHIFT_FLIP},
    # The `fashion-mnist-long` recipe's network and settings, and the same compute spent differently: a second
    # convolution at full resolution (28x28, where a shirt's texture is) instead of the first 14x14 extra conv.
    "long net": {**LONG, "model_kwargs": {"extra_convs": 2, "widths": [48, 96, 192]}},
    "32/96/192 + full-res conv": {**LONG, "model_kwargs": {"extra_convs": [1, 2, 2], "widths": [32, 96, 192],
                                                           "full_res_convs": 1}},
    # The `fashion-mnist` preset, and changes to it, at its cap (230 s when swept, then 245 s, 230 s again since
    # it tries shift TTA, 220 s since 2026-12-02) on a host where it ends the run (about 16 epochs on a 2-core
    # AVX2 CPU): does the same time go further with a weight average, a cheaper network and more epochs, or
    # twice the optimizer steps?
    "short recipe": {},
    "short + EMA": {"ema_decay": 0.999},
    "short, mknet-m+conv": {"model_kwargs": {"extra_convs": 1}},
    "short, batch 64": {"batch_size": 64, "lr": 0.07},
    # The recipe before it shifted by whole pixels (exact crops): bilinear sub-pixel shifts blur every
    # training image a little, while test images stay sharp.
    "short, sub-pixel shifts": {"augment": {"whole_pixel_shifts": False}},
    # The recipe before its epochs focused on the hardest half of the images (2026-12-05): every image every epoch.
    "short, every image every epoch": {"focus_fraction": 1.0},
}


def train_job(name: str, changes: dict, budget: float | None, seed: int = 0) -> dict:
    import mnistkit
    from mnistkit.config import merge

    out = ROOT / "runs" / "fashion" / (name.replace(" ", "_").replace(",", "").replace("+", "-").replace("/", "-")
                                       + (f"-{budget:g}s" if budget else "") + (f"-seed{seed}" if seed else ""))
    values = merge(mnistkit.make_config(None, dataset="fashion-mnist").to_dict(), changes)
    values.update(data_dir=str(DEV), out=str(out), progress=False, seed=seed)
    if budget:
        values.update(budget_seconds=budget, epochs=1000)
    start = time.perf_counter()
    run = mnistkit.train(mnistkit.TrainConfig.from_dict(values))
    wall = time.perf_counter() - start
    return {"name": name, **run.metrics, "wall": wall, "peak_rss_mib": peak_rss_mib(), "run_dir": str(out),
            "config": run.config.to_dict()}


def timing_dir() -> Path:
    """All 60,000 training images as `train-*` (and the last 10,000 again as `t10k-*`): the size of the real
    dataset, to time `mnistkit train --dataset fashion-mnist` as a user would run it. Not for accuracy."""
    import shutil

    out = ROOT / "runs" / "fashion-timing"
    if not out.exists():
        sys.path.insert(0, str(ROOT / "bench"))
        from fashion_dev import build

        build(ROOT.parent / "shared" / "datasets" / "fashion-mnist-train", out, train=60_000)
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            shutil.copy(DEV / name, out / name)
    return out


def cli_run(args: list[str], out: Path) -> dict:
    """`mnistkit train ARGS` as a user runs it (report included), timed from outside, peak RSS of the process."""
    import os
    import subprocess

    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "mnistkit", "train", *args, "--out", str(out), "--no-progress"],
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"mnistkit train {' '.join(args)} failed")
    return {**json.loads((out / "metrics.json").read_text()), "wall": time.perf_counter() - start,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def tta_summary(metrics: dict) -> str:
    """Which test-time augmentations validation kept, and the validation accuracy of each step tried."""
    steps = [(name, flag, with_key) for flag, name, with_key in (("tta_hflip", "flip", "val_accuracy_hflip_tta"),
                                                                   ("tta_shift", "shift", "val_accuracy_shift_tta"))
             if flag in metrics]
    kept = [name for name, flag, _ in steps if metrics[flag]]
    tried = ", ".join(f"+{name} {metrics[with_key]:.4f}" for name, _, with_key in steps)
    return f"{' + '.join(kept) or 'none'} ({tried})" if steps else "none tried"


RECIPES = {"short": ("`mnistkit train --dataset fashion-mnist`", ["--dataset", "fashion-mnist"]),
           "long": ("`mnistkit train --preset fashion-mnist-long`", ["--preset", "fashion-mnist-long"])}


def recipes(which: str) -> None:
    rows = []
    runs = ROOT / "runs" / "fashion"
    for title, args in [RECIPES[name] for name in (["short", "long"] if which == "both" else [which])]:
        name = args[-1]
        dev = cli_run([*args, "--data-dir", str(DEV)], runs / f"recipe-{name}-dev")
        # A recipe with a time budget takes the same time on any data size: its dev run is its timing.
        budgeted = "long" in name
        timed = dev if budgeted else cli_run([*args, "--data-dir", str(timing_dir())], runs / f"recipe-{name}-60k")
        rows.append([title, dev["model"], dev["epochs"], f"{dev['val_accuracy']:.4f}", tta_summary(dev),
                     f"{dev['test_accuracy']:.4f}",
                     f"{timed['train_seconds']:.0f}" + (" (budget)" if budgeted else ""), f"{timed['wall']:.0f}",
                     f"{timed['peak_rss_mib']:.0f}"])
    table = markdown_table(["recipe", "model", "epochs", "val acc", "TTA chosen on val (val acc with it)",
                            "dev holdout acc (not test)",
                            "train s (60k images)", "wall s incl. report (60k images)", "peak RSS MiB"], rows)
    print(table)
    append_section("Fashion-MNIST recipes as a user runs them", f"python bench/fashion.py --recipes {which}",
                   table, "Accuracy: trained on the first 50,000 training images (5,000 of them for validation), "
                   "scored on the last 10,000, which no choice looked at; the official test files are withheld, so "
                   "this is not test accuracy. Time: the same command on all 60,000 training images, as a user with "
                   "the real dataset runs it, report included.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="compare the candidates under one time budget")
    parser.add_argument("--recipes", choices=["short", "long", "both"], help="the shipped recipe(s) run as a user "
                                                                               "runs them (long: ~30 min)")
    parser.add_argument("--budget", type=float, default=100.0, help="seconds of training per candidate")
    parser.add_argument("--only", help="semicolon-separated candidate names")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of each candidate (means shown)")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if args.job:
        index, budget, seed = args.job.split(":")
        name = list(CANDIDATES)[int(index)]
        Path(args.result).write_text(json.dumps(train_job(name, CANDIDATES[name], float(budget), int(seed))))
        return
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    if args.recipes:
        return recipes(args.recipes)
    names = args.only.split(";") if args.only else list(CANDIDATES)
    # Seeds interleaved (every candidate's seed 0, then seed 1, ...): a drift of the shared machine's speed
    # during the sweep then costs every candidate alike.
    results = [run_job(Path(__file__), f"{list(CANDIDATES).index(name)}:{args.budget:g}:{seed}")
               for seed in range(args.seeds) for name in names]
    rows = [[r["name"], r["seed"], r["config"]["model"], r["epochs"], f"{r['train_seconds']:.0f}",
             f"{r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}", f"{r['peak_rss_mib']:.0f}"] for r in results]
    if args.seeds > 1:
        for name in names:
            mine = [r for r in results if r["name"] == name]
            rows.append([f"**{name}: mean of {len(mine)} seeds**", "", "", "", "",
                         f"**{mean(r['val_accuracy'] for r in mine):.4f}**",
                         f"{mean(r['test_accuracy'] for r in mine):.4f}", ""])
    table = markdown_table(["candidate", "seed", "model", "epochs", "train s", "val acc (selection)",
                            "dev holdout acc (not test)", "peak RSS MiB"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Fashion-MNIST candidates, {args.budget:g} s of training each",
                       " ".join(["python bench/fashion.py"] + sys.argv[1:]), table,
                       "Chosen on validation accuracy (5,000 images split off the first 50,000 training images). "
                       "The dev holdout is the last 10,000 training images, not the withheld official test set.")


if __name__ == "__main__":
    main()
