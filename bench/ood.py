"""How well "not a digit" works: out-of-distribution scores of a run on digits and on things that are not.

    python bench/ood.py RUN [RUN ...]        # e.g. runs/pretrained/mnist
    python bench/ood.py RUN --write          # also append the table to BENCHMARKS.md

For each run: the energy score (what mnistkit uses) and the max-softmax score, their AUROC for telling
MNIST test digits from each kind of non-digit, and the rates at the run's own threshold (chosen on its
validation split in `train`, never on these sets): digits wrongly rejected, non-digits rightly rejected.
Non-digits: Fashion-MNIST training images (../shared/datasets/fashion-mnist-train), random pen strokes
drawn on a 280x280 canvas as on the drawing page, and blank-ish pictures (a tap, a tiny scribble, faint
noise), each through the page's preprocessing (mnistify).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from common import append_section, markdown_table
from mnistkit.data.datasets import load_dataset
from mnistkit.data.idx import read_idx
from mnistkit.data.preprocess import mnistify
from mnistkit.metrics import auroc, energy_score
from mnistkit.models import infer
from mnistkit.runs import load_run

FASHION = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist-train"


def canvas(strokes: list[list[tuple[float, float]]], width: int = 20) -> np.ndarray:
    """Black strokes on a white 280x280 canvas, as the page draws them, then MNIST-style preprocessing."""
    img = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(img)
    for points in strokes:
        draw.line(points, fill=0, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
    return mnistify(np.asarray(img, dtype=np.float32) / 255)


def random_strokes(n: int, rng: np.random.Generator) -> np.ndarray:
    """1-4 strokes of 2-6 random points each, anywhere on the canvas."""
    return np.stack([canvas([[tuple(p) for p in rng.uniform(30, 250, (rng.integers(2, 7), 2))]
                             for _ in range(rng.integers(1, 5))]) for _ in range(n)])


def blank_ish(n: int, rng: np.random.Generator) -> np.ndarray:
    """A third each: a single tap, a scribble a few pixels long, faint noise (a .npy of nearly nothing)."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            x, y = rng.uniform(40, 240, 2)
            out.append(canvas([[(x, y), (x, y)]]))
        elif i % 3 == 1:
            x, y = rng.uniform(40, 240, 2)
            out.append(canvas([[(x, y), (x + rng.uniform(-6, 6), y + rng.uniform(-6, 6))]], width=int(rng.integers(4, 20))))
        else:
            out.append(rng.uniform(0, rng.uniform(0.05, 0.3), (28, 28)).astype(np.float32))
    return np.stack(out)


def fashion(n: int) -> np.ndarray:
    images = read_idx(FASHION / "train-images-idx3-ubyte.gz", ndim=3)
    if images is None or len(images) == 0:
        raise SystemExit(f"{FASHION}: no Fashion-MNIST training images")
    return np.asarray(images[:n], dtype=np.float32) / 255


def scores(model, images) -> dict[str, torch.Tensor]:
    logits = infer(model, images)
    return {"energy": energy_score(logits), "max-softmax": -logits.softmax(1).max(1).values}


def measure(run_dir: str, n: int, seed: int) -> list[dict]:
    run = load_run(run_dir)
    model, threshold = run.model, run.model.ood_threshold
    if threshold is None:
        raise SystemExit(f"{run_dir}: no ood_threshold (trained before mnistkit chose one); retrain it")
    rng = np.random.default_rng(seed)
    digits = scores(model, load_dataset("mnist").test_images)
    sets = {"Fashion-MNIST (train images)": fashion(n), "random strokes": random_strokes(n, rng),
            "blank-ish": blank_ish(n, rng)}
    false_rejection = (digits["energy"] > threshold).float().mean().item()
    rows = []
    for name, images in sets.items():
        found = scores(model, images)
        rows.append({"run": f"{run.config.model} ({Path(run_dir).name})", "set": name, "n": len(images),
                     "auroc_energy": auroc(digits["energy"], found["energy"]),
                     "auroc_msp": auroc(digits["max-softmax"], found["max-softmax"]),
                     "rejected": (found["energy"] > threshold).float().mean().item(),
                     "false_rejection": false_rejection, "threshold": threshold,
                     "val_false_rejection": run.metrics.get("ood_val_false_rejection")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=3000, help="images of each non-digit kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    args = parser.parse_args()
    rows = [row for run in args.runs for row in measure(run, args.n, args.seed)]
    table = markdown_table(
        ["run", "non-digits", "n", "AUROC energy", "AUROC max-softmax", "non-digits rejected",
         "digits rejected (MNIST test)", "threshold"],
        [[r["run"], r["set"], r["n"], f"{r['auroc_energy']:.4f}", f"{r['auroc_msp']:.4f}", f"{r['rejected']:.1%}",
          f"{r['false_rejection']:.2%}", f"{r['threshold']:.2f}"] for r in rows])
    print(table)
    if args.write:
        append_section("Not a digit: out-of-distribution scores", f"python bench/ood.py {' '.join(args.runs)} --n {args.n}",
                       table, "Threshold: the energy score above which 1% of each run's own validation images would "
                              "be rejected (`ood_false_rejection`), chosen in `train`; none of these sets took part "
                              "in any choice. AUROC: MNIST test digits against each set (1.0 = perfectly apart).")


if __name__ == "__main__":
    main()
