"""Which shifted views should shift TTA average? Re-scores trained runs with other sets of whole-pixel shifts
(with and without their mirror images) on each run's validation split and on its test split.

    python bench/tta_views.py runs/fashion/RUN ...      # ~30 s a short Fashion run, ~2 min a long one; appends

The models' own shift TTA averages the five views of `models.TTA_SHIFTS` (the image and its one-pixel shifts).
Here every run is scored without its kept TTA, each set of views averaging logits as the model does. Only the
validation columns may choose a set; for runs of `bench/fashion_dev.py`'s data the test split is its dev holdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from mnistkit.models.registry import TTA_SHIFTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402

BASE = "5: one-pixel plus (the models' TTA_SHIFTS)"
VIEW_SETS = {
    "image only": [(0, 0)],
    BASE: list(TTA_SHIFTS),
    "9: one-pixel 3x3 grid": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
    "9: plus, one and two pixels": [*TTA_SHIFTS, (2, 0), (-2, 0), (0, 2), (0, -2)],
}


def view_accuracies(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    mirror: bool) -> dict[str, float]:
    """Accuracy of each view set's averaged logits; each shifted (and mirrored) view is scored once."""
    from mnistkit.models import infer, shift_images, tta_set

    flips = (False, True) if mirror else (False,)
    shifts = {s for views in VIEW_SETS.values() for s in views}
    logits = {}
    with tta_set(model, tta_hflip=False, tta_shift=False):
        for s in shifts:
            view = shift_images(images, *s)
            for f in flips:
                logits[(s, f)] = infer(model, view.flip(-1) if f else view, batch_size)
    return {name: (sum(logits[(s, f)] for s in views for f in flips).argmax(1) == labels).float().mean().item()
            for name, views in VIEW_SETS.items()}


def main() -> None:
    from mnistkit.runs import load_run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows, gains = [], {name: {"val": [], "test": []} for name in VIEW_SETS}
    for run_dir in args.runs:
        run = load_run(run_dir)
        splits = run.splits()
        mirror = run.config.augment.hflip > 0
        found = {split: view_accuracies(run.model, images, labels, run.config.eval_batch_size, mirror)
                 for split, images, labels in (("val", splits.val_images, splits.val_labels),
                                               ("test", splits.test_images, splits.test_labels))}
        for name in VIEW_SETS:
            for split in found:
                gains[name][split].append(found[split][name] - found[split][BASE])
            rows.append([f"`{run_dir.name}`", "with mirror" if mirror else "no mirror", name,
                         f"{found['val'][name]:.4f}", f"{found['test'][name]:.4f}"])
        print(*rows[-len(VIEW_SETS):], sep="\n", flush=True)
    summary = [["**mean gain over the five-view set**", f"{len(args.runs)} runs", name,
                f"{statistics.mean(g['val']):+.4f} ({sum(x > 0 for x in g['val'])} up, {sum(x < 0 for x in g['val'])} down)",
                f"{statistics.mean(g['test']):+.4f} ({sum(x > 0 for x in g['test'])} up, {sum(x < 0 for x in g['test'])} down)"]
               for name, g in gains.items() if name != BASE]
    table = markdown_table(["run", "mirror views", "shifted views", "val acc", "test-split acc"], rows + summary)
    print(table)
    if not args.no_append:
        append_section("Shift TTA: which shifted views to average", "python bench/tta_views.py "
                       + " ".join(str(r) for r in args.runs), table)


if __name__ == "__main__":
    main()
