"""Which speed options help on this machine: channels-last, bf16 autocast and torch.compile, side by side.

    python bench/options.py                                  # the default model (mknet-s), every setting
    python bench/options.py --presets default,fast,best --settings cl,bf16   # is bf16 worth it, per model

Each option is measured against the plain setting in the same run, on the same random batches.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402


def train_throughput(model, device, channels_last: bool, bf16: bool, seconds: float = 8.0) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(128, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (128,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * 128 / (time.perf_counter() - start)


@torch.inference_mode()
def infer_throughput(model, device, channels_last: bool, bf16: bool) -> float:
    from mnistkit.timing import time_inference

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).eval()
    batches = {n: torch.rand(n, 1, 28, 28, device=device) for n in (1, 1024)}

    def run(n: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(batches[n]).argmax(1).cpu()

    return time_inference(run, seconds=5.0)["infer_batch1024_img_s"]


SETTINGS = {  # key: (label, channels-last, bf16 autocast, torch.compile)
    "plain": ("plain (NCHW, fp32, eager)", False, False, False),
    "cl": ("channels-last", True, False, False),
    "bf16": ("channels-last + bf16 autocast", True, True, False),
    "compile": ("channels-last + torch.compile", True, False, True),
    "bf16-compile": ("channels-last + bf16 autocast + torch.compile", True, True, True),
}


def main() -> None:
    from mnistkit import create_model, make_config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--presets", default="default", help="comma-separated presets whose models to measure")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for preset in args.presets.split(","):
        cfg = make_config(preset)
        label = " ".join(filter(None, [f"`{cfg.model}`", str(cfg.model_kwargs or ""), f"(`{preset}`)"]))
        base = None
        for key in args.settings.split(","):
            name, cl, bf16, compiled = SETTINGS[key]
            torch.manual_seed(0)
            model = create_model(cfg.model, mean=0.13, std=0.31, **cfg.model_kwargs)
            start = time.perf_counter()
            if compiled:
                model = torch.compile(model)
            train = train_throughput(model, device, cl, bf16)
            infer = infer_throughput(model, device, cl, bf16)
            base = base or train
            rows.append([label, name, f"{train:,.0f}", f"{train / base:.2f}x", f"{infer:,.0f}",
                         f"{time.perf_counter() - start:.0f}"])
            print(rows[-1], flush=True)
    table = markdown_table(["model (preset)", "setting", "train img/s (batch 128)", "train vs first setting",
                            "infer img/s (batch 1024)", "wall s incl. compile"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Speed options ({args.device})",
                       f"python bench/options.py --device {args.device} --presets {args.presets} "
                       f"--settings {args.settings}", table)


if __name__ == "__main__":
    main()
