"""Side by side, in one run: the classic tutorial recipe vs mnistkit's `fast` preset.

    python bench/speed.py               # CPU; appends the table to BENCHMARKS.md
    python bench/speed.py --device cuda # the same on a GPU

(a) classic: the LeNet-style network, SGD lr 0.01 momentum 0.5, batch 64, a DataLoader over a
    per-sample Dataset that converts and normalises each image on access, up to 10 epochs, testing
    after every epoch, exactly as the tutorials write it;
(b) mnistkit `fast`: the preset, testing after every epoch for this report only.
Reported: training seconds until test accuracy first reaches 99.0%, final test accuracy, training
images/s, inference images/s at batch 1024 and latency at batch 1, peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table, peak_rss_mib, run_job  # noqa: E402
from mnistkit.timing import inference_speed  # noqa: E402

TARGET = 0.99


class PerSampleMNIST(torch.utils.data.Dataset):
    """What the tutorials use: each access builds a PIL image, converts it to a tensor and normalises it."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i].numpy(), mode="L")
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).float().div(255).unsqueeze(0)  # ToTensor
        return (x - 0.1307) / 0.3081, int(self.labels[i])  # Normalize((0.1307,), (0.3081,))


def classic_job(device: torch.device, epochs: int) -> dict:
    from mnistkit import create_model, load_dataset

    torch.manual_seed(1)
    ds = load_dataset("mnist")
    train_loader = torch.utils.data.DataLoader(PerSampleMNIST(ds.train_images, ds.train_labels), batch_size=64,
                                               shuffle=True)
    test_loader = torch.utils.data.DataLoader(PerSampleMNIST(ds.test_images, ds.test_labels), batch_size=1000)
    model = create_model("lenet").net.to(device)  # the bare network: the Dataset normalises
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    train_seconds, reached, history = 0.0, None, []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
        acc = correct / len(ds.test_images)
        history.append({"epoch": epoch, "train_seconds": train_seconds, "test_accuracy": acc})
        print(f"classic epoch {epoch}: test accuracy {acc:.4f} [{train_seconds:.1f}s]", flush=True)
        if reached is None and acc >= TARGET:
            reached = train_seconds
    from mnistkit.models import Classifier

    wrapped = Classifier(model, 0.1307, 0.3081)  # the same input contract as mnistkit models, for inference
    return {"name": "classic LeNet recipe (DataLoader, per-sample transforms)", "seconds_to_99": reached,
            "epochs": epochs, "test_accuracy": history[-1]["test_accuracy"], "train_seconds": train_seconds,
            "train_img_s": epochs * len(ds.train_images) / train_seconds, "history": history,
            **inference_speed(wrapped, device), "peak_rss_mib": peak_rss_mib()}


def mnistkit_job(device: torch.device, preset: str, extra: dict) -> dict:
    import mnistkit

    with tempfile.TemporaryDirectory() as tmp:
        cfg = mnistkit.make_config(preset, out=str(Path(tmp) / preset), test_every_epoch=True, progress=False,
                                   device=device.type, **extra)
        result = mnistkit.train(cfg)
        history = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    reached = next((h["train_seconds"] for h in history if h["test_accuracy"] >= TARGET), None)
    m = result.metrics
    for h in history:
        print(f"{preset} epoch {h['epoch']}: test accuracy {h['test_accuracy']:.4f} [{h['train_seconds']:.1f}s]")
    return {"name": f"mnistkit --preset {preset} ({cfg.model})", "seconds_to_99": reached, "epochs": cfg.epochs,
            "test_accuracy": m["test_accuracy"], "train_seconds": m["train_seconds"],
            "train_img_s": cfg.epochs * m["train_images"] / m["train_seconds"], "history": history,
            **inference_speed(result.model, device), "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--classic-epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of `fast` (the classic recipe runs once)")
    parser.add_argument("--job", choices=["classic", "fast"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--no-append", action="store_true", help="print the table but leave BENCHMARKS.md alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.job:
        result = (classic_job(device, args.classic_epochs) if args.job == "classic"
                  else mnistkit_job(device, "fast", {"seed": args.seed}))
        Path(args.result).write_text(json.dumps(result, indent=2))
        return

    script = Path(__file__)
    common_args = ["--device", args.device, "--classic-epochs", str(args.classic_epochs)]
    classic = run_job(script, "classic", *common_args)
    fasts = [run_job(script, "fast", *common_args, "--seed", str(seed)) for seed in range(args.seeds)]
    rows = []
    for r in (classic, *fasts):
        reached = f"{r['seconds_to_99']:.1f}" if r["seconds_to_99"] is not None else f"never ({r['epochs']} epochs)"
        name = r["name"] + (f", seed {fasts.index(r)}" if r is not classic else "")
        rows.append([name, reached, f"{r['test_accuracy']:.4f}", f"{r['train_seconds']:.1f}",
                     f"{r['train_img_s']:,.0f}", f"{r['infer_batch1024_img_s']:,.0f}", f"{r['infer_batch1_ms']:.2f}",
                     f"{r['peak_rss_mib']:.0f}"])
    base = classic["seconds_to_99"] or classic["train_seconds"]
    basis = ("its time to 99.0%" if classic["seconds_to_99"]
             else f"its full {classic['epochs']}-epoch time (it never reached 99.0%)")
    reached = [r["seconds_to_99"] for r in fasts if r["seconds_to_99"]]
    speedups = sorted(base / t for t in reached)
    table = markdown_table(["recipe", "train s to 99.0% test", "final test acc", "train s total", "train img/s",
                            "infer img/s (batch 1024)", "infer ms (batch 1)", "peak RSS MiB"], rows)
    notes = (f"{len(reached)} of {len(fasts)} seeds of `fast` reach 99.0% test. Speed-up to 99.0% over the classic "
             f"recipe ({basis}): " + (f"**{speedups[len(speedups) // 2]:.1f}x** median, {speedups[0]:.1f}x to "
                                      f"{speedups[-1]:.1f}x over the seeds that reach it." if speedups else "none."))
    print(table)
    print(notes)
    if not args.no_append:
        append_section(f"Speed: classic recipe vs `fast` ({args.device}), {args.seeds} seeds",
                       f"python bench/speed.py --device {args.device} --seeds {args.seeds}",
                       table, notes)


if __name__ == "__main__":
    main()
