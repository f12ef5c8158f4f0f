"""Batch-norm statistics of a run's saved weights, as saved or estimated again from its training images.

    python bench/bn_recalibration.py runs/RUN [runs/RUN ...]     # ~20 s a `best` run on a 2-core CPU

A run saves its EMA weights beside the batch-norm statistics of the live network at that step, which were measured
with other weights and on augmented images. This scores each run three ways on validation and test: as saved, with
the statistics estimated afresh (`torch.optim.swa_utils.update_bn`, 200 batches of 128) on its training images as
they are, and on them augmented as in training. The comparison is on validation; test is only shown.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402

BATCHES, BATCH_SIZE = 200, 128


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    from mnistkit.models import infer

    return (infer(model, images).argmax(1) == labels).float().mean().item()


def training_batches(images: torch.Tensor, augment, seed: int = 0):
    """BATCHES random batches of the training images, warped by ``augment`` (an AugmentConfig) unless None."""
    from mnistkit.data.augment import augment_batch
    from mnistkit.models import as_image_batch

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    for b in range(BATCHES):
        batch = as_image_batch(images[order[b * BATCH_SIZE:(b + 1) * BATCH_SIZE]])
        yield (augment_batch(batch, augment, generator) if augment is not None else batch).contiguous(
            memory_format=torch.channels_last)


def main() -> None:
    from mnistkit.runs import load_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    for run_dir in args.runs:
        run = load_run(run_dir)
        splits = run.splits()
        parts = [splits.part("val"), splits.part("test")]
        row = [str(run_dir)] + [f"{accuracy(run.model, *part):.4f}" for part in parts]
        for augment in (None, run.config.augment):  # clean training images, then augmented as in training
            model = copy.deepcopy(run.model)
            torch.optim.swa_utils.update_bn(training_batches(splits.train_images, augment), model)
            row += [f"{accuracy(model, *part):.4f}" for part in parts]
        rows.append(row)
        print(" | ".join(row), flush=True)
    table = markdown_table(["run", "val, as saved", "test, as saved", "val, clean images", "test, clean images",
                            "val, augmented", "test, augmented"], rows)
    print(table)
    if not args.no_append:
        command = "python bench/bn_recalibration.py " + " ".join(str(r) for r in args.runs)
        append_section("Batch-norm statistics estimated again for saved runs", command, table)


if __name__ == "__main__":
    main()
