"""Ensembles of trained runs and test-time augmentation (TTA): the last hundredths of a point.

TTA averages the logits over the image and copies shifted by one pixel in each direction
(Classifier.tta_shift); an ensemble averages the members' probabilities. Whether TTA helps depends
on the model (on a `best` run it hurt), so by default it is decided on the validation split, never
on the test split, and both settings are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mnistkit.errors import MnistkitError
from mnistkit.metrics import EvalResult, evaluate_logits
from mnistkit.models import EVAL_BATCH_SIZE, infer, tta_set
from mnistkit.runs import load_run


def probabilities(model: nn.Module, images: torch.Tensor, tta: bool = False,
                  batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    with tta_set(model, tta_shift=tta):
        return infer(model, images, batch_size).softmax(1)


@dataclass
class EnsembleResult:
    """The ensemble scored on ``split`` with the TTA setting chosen on validation (or given)."""

    result: EvalResult  # on `split`, with `tta`
    tta: bool
    tta_chosen_on_validation: bool
    val_accuracy: dict[str, float]  # {"plain": ..., "tta": ...}
    split_accuracy: dict[str, float]  # the same on `split`, for the record
    member_accuracy: list[float]  # each member alone on `split`, with `tta`

    def to_dict(self) -> dict:
        return {"tta": self.tta, "tta_chosen_on_validation": self.tta_chosen_on_validation,
                "val_accuracy": self.val_accuracy, "split_accuracy": self.split_accuracy,
                "member_accuracy": self.member_accuracy, **self.result.to_dict()}


def mean_probabilities(models: list[nn.Module], images: torch.Tensor, tta: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    members = [probabilities(m, images, tta) for m in models]
    return sum(members) / len(members), members


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(1) == labels).float().mean())


def evaluate_ensemble(run_dirs: list[str | Path], tta: bool | None = None, split: str = "test") -> EnsembleResult:
    """Average the members' probabilities. ``tta=None`` turns TTA on only if it raises validation
    accuracy; the numbers on ``split`` are computed after that choice, for both settings."""
    if not run_dirs:
        raise MnistkitError("ensemble: give at least one run directory")
    members = [load_run(d) for d in run_dirs]
    # A data_dir typed relative in one run and absolute in another is still the same data.
    datasets = {(r.config.dataset, r.config.data_dir and str(Path(r.config.data_dir).resolve())) for r in members}
    if len(datasets) > 1:
        raise MnistkitError(f"ensemble: the runs were trained on different datasets: {sorted(map(str, datasets))}")
    models = [r.model for r in members]
    splits = members[0].splits()
    val_images, val_labels = splits.part("val")
    val = {name: accuracy(mean_probabilities(models, val_images, on)[0], val_labels)
           for name, on in (("plain", False), ("tta", True))}
    chosen = val["tta"] > val["plain"] if tta is None else tta
    images, labels = splits.part(split)
    scored = {}
    for name, on in (("plain", False), ("tta", True)):
        mean, member_probs = mean_probabilities(models, images, on)
        scored[name] = (mean, member_probs)
    mean, member_probs = scored["tta" if chosen else "plain"]
    return EnsembleResult(
        result=evaluate_logits(mean.clamp_min(1e-12).log(), labels, splits.classes), tta=chosen,
        tta_chosen_on_validation=tta is None, val_accuracy=val,
        split_accuracy={name: accuracy(probs, labels) for name, (probs, _) in scored.items()},
        member_accuracy=[accuracy(p, labels) for p in member_probs],
    )
