"""Ensembles of trained runs and test-time augmentation (TTA): the last hundredths of a point.

TTA averages the softmax over the image and copies shifted by one pixel in each direction; an
ensemble averages that over several runs. Neither looks at labels, so neither can overfit the test set.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnistkit.errors import MnistkitError
from mnistkit.metrics import EvalResult, evaluate_logits
from mnistkit.models import infer
from mnistkit.runs import load_run

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift uint8 (N, 28, 28) images by whole pixels, filling with background."""
    if dy == 0 and dx == 0:
        return images
    padded = F.pad(images, (1, 1, 1, 1))
    h, w = images.shape[-2:]
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


def probabilities(model: nn.Module, images: torch.Tensor, tta: bool = False, batch_size: int = 2000) -> torch.Tensor:
    shifts = SHIFTS if tta else SHIFTS[:1]
    total = sum(infer(model, shift_images(images, dy, dx), batch_size).softmax(1) for dy, dx in shifts)
    return total / len(shifts)


def evaluate_ensemble(run_dirs: list[str | Path], tta: bool = True, split: str = "test") -> tuple[EvalResult, list[float]]:
    """Accuracy of the averaged members (and each member alone) on a split of their shared dataset."""
    if not run_dirs:
        raise MnistkitError("ensemble: give at least one run directory")
    members = [load_run(d) for d in run_dirs]
    datasets = {(r.config.dataset, r.config.data_dir) for r in members}
    if len(datasets) > 1:
        raise MnistkitError(f"ensemble: the runs were trained on different datasets: {sorted(map(str, datasets))}")
    splits = members[0].splits()
    images, labels = splits.part(split)
    member_probs = [probabilities(r.model, images, tta) for r in members]
    accuracies = [float((p.argmax(1) == labels).float().mean()) for p in member_probs]
    mean = sum(member_probs) / len(member_probs)
    return evaluate_logits(mean.clamp_min(1e-12).log(), labels, splits.classes), accuracies
