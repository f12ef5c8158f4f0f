"""Inference speed of a trained run: images/s at batch 1024 and latency of one image, PyTorch and ONNX.

    python bench/infer.py runs/RUN      # appends the table to BENCHMARKS.md
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


def main() -> None:
    import mnistkit
    from mnistkit.export import export
    from mnistkit.timing import inference_speed

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    run = mnistkit.load_run(args.run)
    model = run.model
    rows = []
    torch_speed = inference_speed(model, "cpu", seconds=5.0)
    rows.append(["PyTorch eager, channels-last", f"{torch_speed['infer_batch1024_img_s']:,.0f}",
                 f"{torch_speed['infer_batch1_ms']:.3f}"])
    info = export(args.run, "onnx")
    ort = onnx_speed(Path(info["path"]))
    rows.append([f"onnxruntime (max abs diff vs PyTorch {info['max_abs_difference']:.1e})",
                 f"{ort['infer_batch1024_img_s']:,.0f}", f"{ort['infer_batch1_ms']:.3f}"])
    table = markdown_table(["runtime", "images/s (batch 1024)", "ms per image (batch 1, median)"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Inference of `{run.config.model}` ({run.config.preset} preset)",
                       f"python bench/infer.py RUN  (RUN from `mnistkit train --preset {run.config.preset}`)", table)


if __name__ == "__main__":
    main()
