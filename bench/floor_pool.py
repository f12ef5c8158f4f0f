"""The conv outputs a floor-mode max-pool never reads: computed (nn.Conv2d, before 2026-12-08) or skipped
(`ConvBeforeFloorPool`), side by side on the same weights in one process.

    python bench/floor_pool.py                       # the shipped `mnist` model, appends to BENCHMARKS.md
    python bench/floor_pool.py --run runs/RUN --run runs/OTHER --rounds 12

For each model: whether both forms answer alike on the 10,000 MNIST test images (largest logit difference,
answers that differ), then interleaved rounds of onnxruntime and PyTorch eager inference at batch 1024 and of
training steps (batch 128, SGD) for the `best` network and the fp32 network of the long Fashion-MNIST recipe.
Each round times every form once in turn, so a busy spell on the shared machine hits both.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402


def every_output_computed(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose convs before a floor pool compute every output again, as nn.Conv2d does."""
    from mnistkit.models.fast import ConvBeforeFloorPool

    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, ConvBeforeFloorPool):
            module.__class__ = nn.Conv2d
            module.padding = tuple(k // 2 for k in module.kernel_size)
    return model


def agreement(skipped: nn.Module, computed: nn.Module, images: torch.Tensor) -> tuple[float, int]:
    from mnistkit.models import infer

    a, b = infer(skipped, images), infer(computed, images)
    return (a - b).abs().max().item(), int((a.argmax(1) != b.argmax(1)).sum())


def ort_runner(model: nn.Module, folder: Path, name: str):
    import onnxruntime as ort

    from mnistkit.export import export_onnx

    path = export_onnx(model.to(memory_format=torch.contiguous_format), folder / f"{name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((1024, 1, 28, 28), dtype=np.float32)
    return lambda: session.run(None, {"images": images})


def torch_runner(model: nn.Module):
    model = model.eval().to(memory_format=torch.channels_last)
    images = torch.rand(1024, 1, 28, 28)

    def run():
        with torch.inference_mode():
            model(images)
    return run


def train_runner(model: nn.Module):
    model = model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    images, labels = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def step():
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def images_per_second(run, batch: int, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        run()
        n += 1
    return n * batch / (time.perf_counter() - start)


def main() -> None:
    import mnistkit
    from mnistkit.data.datasets import load_dataset
    from mnistkit.models import count_macs
    from mnistkit.pretrained import load_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", help="a run directory or shipped model name (default: mnist)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    sources = args.run or ["mnist"]
    test = load_dataset("mnist").test_images

    rows_exact = []
    timed: dict[str, tuple] = {}  # label -> (batch, {form: runner})
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            run = load_source(source)
            model, computed = run.model, every_output_computed(run.model)
            diff, changed = agreement(model, computed, test)
            label = f"`{Path(source).name}` ({run.config.model})"
            rows_exact.append([label, f"{count_macs(computed):,}", f"{count_macs(model):,}", f"{diff:.1e}", changed])
            timed[f"{label}: onnxruntime, batch 1024"] = (1024, {
                "computed": ort_runner(computed, Path(tmp), "computed"), "skipped": ort_runner(model, Path(tmp), "skipped")})
            timed[f"{label}: PyTorch eager, batch 1024"] = (1024, {
                "computed": torch_runner(computed), "skipped": torch_runner(model)})
        for name, kwargs in {"mknet-l (`best`)": {},
                             "mknet-l 32/64/128, 2 extra convs (long Fashion recipe, fp32)":
                                 {"extra_convs": 2, "widths": (32, 64, 128)}}.items():
            torch.manual_seed(0)
            model = mnistkit.create_model("mknet-l", **kwargs)
            timed[f"{name}: training steps, batch 128"] = (128, {
                "computed": train_runner(every_output_computed(model)), "skipped": train_runner(copy.deepcopy(model))})

        for _, runners in timed.values():  # warm-up
            for step in runners.values():
                for _ in range(3):
                    step()
        found = {label: {form: [] for form in runners} for label, (_, runners) in timed.items()}
        for r in range(args.rounds):
            for label, (batch, runners) in timed.items():
                for form, step in runners.items():
                    found[label][form].append(images_per_second(step, batch, args.seconds))
            print(f"round {r + 1}/{args.rounds}", flush=True)

    rows_speed = []
    for label, forms in found.items():
        ratios = [s / c for c, s in zip(forms["computed"], forms["skipped"])]
        rows_speed.append([label, f"{statistics.median(forms['computed']):,.0f}", f"{statistics.median(forms['skipped']):,.0f}",
                           f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})",
                           sum(r > 1 for r in ratios)])
    table = (markdown_table(["model", "MACs an image, every output computed", "skipped", "largest logit difference",
                             "answers that differ (of 10,000 test images)"], rows_exact) + "\n\n"
             + markdown_table(["what", "images/s, every output computed (median)", "skipped (median)",
                               "ratio skipped/computed: median (min-max)", f"rounds faster (of {args.rounds})"],
                              rows_speed))
    print(table)
    if not args.no_append:
        runs = " ".join(f"--run {s}" for s in args.run or [])
        append_section("The conv outputs a floor-mode max-pool never reads: computed or skipped, "
                       f"{args.rounds} interleaved rounds",
                       f"python bench/floor_pool.py {runs} --rounds {args.rounds}".replace("  ", " "), table)


if __name__ == "__main__":
    main()
