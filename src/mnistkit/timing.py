"""Inference timing, shared by `mnistkit compare` and the scripts in bench/.

Throughput is measured at batch 1024 and latency as the median of single-image calls, after a
warm-up, for any runtime wrapped as ``run(batch_size)``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def time_inference(run: Callable[[int], object], seconds: float = 3.0) -> dict:
    """Images/s at batch 1024 and median latency (ms) of one image for ``run(batch_size)``, after warm-up.

    ``run`` must finish its work before returning (synchronise a GPU inside it)."""
    for _ in range(5):
        run(1024)
        run(1)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        run(1024)
        n += 1
    throughput = n * 1024 / (time.perf_counter() - start)
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 2 or len(latencies) < 50:
        t = time.perf_counter()
        run(1)
        latencies.append((time.perf_counter() - t) * 1000)
    return {"infer_batch1024_img_s": throughput, "infer_batch1_ms": statistics.median(latencies)}


@torch.inference_mode()
def inference_speed(model: nn.Module, device: torch.device | str = "cpu", seconds: float = 3.0) -> dict:
    """time_inference for a PyTorch model (channels-last on CPU, as mnistkit runs it)."""
    device = torch.device(device)
    model = model.eval().to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    batches = {n: torch.rand(n, 1, 28, 28, device=device) for n in (1, 1024)}

    def run(n: int) -> None:
        model(batches[n]).argmax(1).cpu()  # .cpu() waits for a GPU to finish

    return time_inference(run, seconds)
