"""Inference speed of a trained run: images/s at batch 1024 and latency of one image, for PyTorch
eager, PyTorch after torch.compile, and onnxruntime, measured in interleaved rounds.

    python bench/infer.py runs/RUN [--repeats 3]     # appends the table to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402


def onnx_speed(path: Path) -> dict:
    import onnxruntime as ort

    from mnistkit.timing import time_inference

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batches = {n: np.random.rand(n, 1, 28, 28).astype(np.float32) for n in (1, 1024)}
    return time_inference(lambda n: session.run(None, {"images": batches[n]}), seconds=3.0)


def compiled_speed(model, seconds: float) -> dict:
    """inference_speed of the model after torch.compile (Inductor), compiled before timing starts."""
    import torch

    from mnistkit.timing import inference_speed

    compiled = torch.compile(model.to(memory_format=torch.channels_last))
    with torch.inference_mode():
        for n in (1, 1024):
            compiled(torch.rand(n, 1, 28, 28))
    return inference_speed(compiled, "cpu", seconds=seconds)


def main() -> None:
    import mnistkit
    from mnistkit.export import export
    from mnistkit.timing import inference_speed

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each times every runtime once, in turn")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    run = mnistkit.load_run(args.run)
    model = run.model
    info = export(args.run, "onnx")
    runtimes = {
        "PyTorch eager, channels-last": lambda: inference_speed(model, "cpu", seconds=4.0),
        "PyTorch, torch.compile (Inductor)": lambda: compiled_speed(mnistkit.load_run(args.run).model, 4.0),
        f"onnxruntime (max abs diff vs PyTorch {info['max_abs_difference']:.1e})": lambda: onnx_speed(Path(info["path"])),
    }
    found: dict[str, list[dict]] = {name: [] for name in runtimes}
    for _ in range(args.repeats):  # interleaved, so a busy spell on the shared machine hits every runtime
        for name, measure in runtimes.items():
            found[name].append(measure())

    def spread(values: list[float], fmt: str) -> str:
        values = sorted(values)
        return f"{values[len(values) // 2]:{fmt}} ({values[0]:{fmt}}–{values[-1]:{fmt}})"

    rows = [[name, spread([r["infer_batch1024_img_s"] for r in results], ",.0f"),
             spread([r["infer_batch1_ms"] for r in results], ".3f")] for name, results in found.items()]
    table = markdown_table(["runtime", "images/s at batch 1024: median (min–max)",
                            "ms for one image: median (min–max)"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Inference of `{run.config.model}` ({run.config.preset} preset), {args.repeats} rounds",
                       f"python bench/infer.py RUN --repeats {args.repeats}  (RUN from `mnistkit train --preset "
                       f"{run.config.preset}`)", table)


if __name__ == "__main__":
    main()
