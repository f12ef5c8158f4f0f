"""Metrics on a labelled split: accuracy, loss, per-class precision/recall/F1, confusion, mistakes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 2000, channels_last: bool = True
) -> torch.Tensor:
    """Logits for uint8 (N, 28, 28) or float (N, 1, 28, 28) images, in large batches, returned on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            if batch.dtype == torch.uint8:
                batch = batch.float().div_(255)
            if batch.ndim == 3:
                batch = batch.unsqueeze(1)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            outputs.append(model(batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    return (logits.argmax(1) == labels).float().mean().item(), F.cross_entropy(logits, labels).item()


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows: true class, columns: predicted class."""
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass
class Mistake:
    index: int
    label: int
    predicted: int
    confidence: float
    top3: list[tuple[int, float]]


@dataclass
class EvalResult:
    classes: tuple[str, ...]
    accuracy: float
    loss: float
    confusion: torch.Tensor
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    mistakes: list[Mistake]
    probabilities: torch.Tensor  # (N, C), for pictures

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "error_rate": 1 - self.accuracy,
            "loss": self.loss,
            "classes": list(self.classes),
            "per_class": [
                {"class": c, "precision": p, "recall": r, "f1": f, "support": s}
                for c, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support)
            ],
            "confusion_matrix": self.confusion.tolist(),
            "hardest_mistakes": [m.__dict__ for m in self.mistakes],
        }


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], n_mistakes: int = 20):
    num_classes = len(classes)
    probs = logits.softmax(1)
    predicted = probs.argmax(1)
    accuracy, loss = accuracy_and_loss(logits, labels)
    cm = confusion_matrix(predicted, labels, num_classes).double()
    tp = cm.diag()
    precision = (tp / cm.sum(0).clamp_min(1)).tolist()
    recall = (tp / cm.sum(1).clamp_min(1)).tolist()
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    wrong = (predicted != labels).nonzero().flatten()
    confidence = probs[wrong, predicted[wrong]]
    order = confidence.argsort(descending=True)[:n_mistakes]
    top3 = probs.topk(min(3, num_classes), dim=1)
    mistakes = [
        Mistake(
            index=int(i), label=int(labels[i]), predicted=int(predicted[i]), confidence=float(probs[i, predicted[i]]),
            top3=[(int(c), float(p)) for p, c in zip(top3.values[i], top3.indices[i])],
        )
        for i in wrong[order]
    ]
    return EvalResult(
        classes=tuple(classes), accuracy=accuracy, loss=loss, confusion=cm.long(), precision=precision,
        recall=recall, f1=f1, support=cm.sum(1).long().tolist(), mistakes=mistakes, probabilities=probs,
    )


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
             batch_size: int = 2000) -> EvalResult:
    return evaluate_logits(predict_logits(model, images, batch_size), labels, classes)


def evaluate_run(run_dir, split: str = "test") -> EvalResult:
    """Evaluate a saved run on its dataset's test (or validation) split and write DIR/eval.json."""
    from pathlib import Path

    from mnistkit.checkpoint import atomic_write_json
    from mnistkit.predict import load
    from mnistkit.train import load_splits

    model = load(run_dir)
    splits = load_splits(model.config)
    images, labels = splits.part(split)
    result = evaluate(model, images, labels, splits.classes, batch_size=model.config.eval_batch_size)
    atomic_write_json(Path(run_dir) / ("eval.json" if split == "test" else f"eval_{split}.json"),
                      {"split": split, **result.to_dict()})
    return result


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
