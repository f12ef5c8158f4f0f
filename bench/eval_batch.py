"""Scoring speed by batch size: images/s of `models.infer` over 10,000 images for each preset's network,
in fp32 and (where the CPU has native bf16) under bf16 autocast, as per-epoch validation runs it.

    python bench/eval_batch.py [--repeats 3]      # ~2 min on a 2-core CPU; appends to BENCHMARKS.md

This chose `models.EVAL_BATCH_SIZE`. Untrained weights: the speed of a network does not depend on them.
Every setting is timed once per round, rounds interleaved, and the median is shown with the range.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402

BATCHES = (2000, 1000, 500, 256, 128)
PRESETS = ("fast", "default", "best", "fashion-mnist", "fashion-mnist-long")


def images_per_second(model: torch.nn.Module, images: torch.Tensor, batch: int, dtype: torch.dtype | None) -> float:
    from mnistkit.models import infer

    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        infer(model, images[:batch], batch)  # warm-up: oneDNN picks its kernels for this shape
        start = time.perf_counter()
        infer(model, images, batch)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    from mnistkit.config import make_config
    from mnistkit.models import EVAL_BATCH_SIZE, create_model
    from mnistkit.train import native_cpu_bf16

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randint(0, 256, (10_000, 1, 28, 28), dtype=torch.uint8)
    dtypes = {"fp32": None, **({"bf16": torch.bfloat16} if native_cpu_bf16() else {})}
    models = {}
    for preset in PRESETS:
        cfg = make_config(preset)
        models[f"`{preset}` ({cfg.model})"] = create_model(cfg.model, mean=0.3, std=0.3, **cfg.model_kwargs).to(
            memory_format=torch.channels_last).eval()
    settings = [(name, dtype, batch) for name in models for dtype in dtypes for batch in BATCHES]
    found: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(args.repeats):
        for name, dtype, batch in settings:
            found[(name, dtype, batch)].append(images_per_second(models[name], images, batch, dtypes[dtype]))
    rows = []
    for name in models:
        for dtype in dtypes:
            cells = []
            for batch in BATCHES:
                values = found[(name, dtype, batch)]
                cells.append(f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})")
            speedup = statistics.median(found[(name, dtype, EVAL_BATCH_SIZE)]) / statistics.median(
                found[(name, dtype, BATCHES[0])])
            rows.append([name, dtype, *cells, f"{speedup:.2f}x"])
    table = markdown_table(["network", "dtype", *(f"batch {b} img/s" for b in BATCHES),
                            f"batch {EVAL_BATCH_SIZE} vs {BATCHES[0]}"], rows)
    notes = (f"Median of {args.repeats} interleaved rounds (range in brackets), 10,000 images each, channels-last, "
             f"inference mode. mnistkit scores in batches of {EVAL_BATCH_SIZE} (`models.EVAL_BATCH_SIZE`).")
    print(table)
    print(notes)
    if not args.no_append:
        append_section("Scoring speed by batch size (models.infer)",
                       f"python bench/eval_batch.py --repeats {args.repeats}", table, notes)


if __name__ == "__main__":
    main()
