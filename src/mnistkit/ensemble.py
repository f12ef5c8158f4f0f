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

from mnistkit.config import VALIDATION_FIELDS
from mnistkit.errors import MnistkitError
from mnistkit.metrics import EvalResult, evaluate_logits
from mnistkit.models import EVAL_BATCH_SIZE, infer, tta_set
from mnistkit.runs import Run, load_run


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


# The config fields that decide which training images a run held out for validation. Members must agree on them:
# the ensemble is chosen on the first member's validation images, and another member may have trained on those.
VALIDATION_SPLIT_FIELDS = ("dataset_options", *VALIDATION_FIELDS)


def load_members(run_dirs: list[str | Path]) -> list[Run]:
    """The runs, checked to be trained on one dataset with one validation split."""
    if not run_dirs:
        raise MnistkitError("ensemble: give at least one run directory")
    members = [load_run(d) for d in run_dirs]
    # A data_dir typed relative in one run and absolute in another is still the same data.
    datasets = {(r.config.dataset, r.config.data_dir and str(Path(r.config.data_dir).resolve())) for r in members}
    if len(datasets) > 1:
        raise MnistkitError(f"ensemble: the runs were trained on different datasets: {sorted(map(str, datasets))}")
    held_out = [{name: getattr(r.config, name) for name in VALIDATION_SPLIT_FIELDS} for r in members]
    if any(split != held_out[0] for split in held_out):
        found = "; ".join(f"{r.run_dir}: {split}" for r, split in zip(members, held_out))
        raise MnistkitError(f"ensemble: the runs held out different validation images ({found}), so some trained "
                            "on images the others validate on and no choice made on them would be fair; ensemble "
                            "runs of one validation split")
    return members


@dataclass
class Selection:
    """Greedy forward selection's trace: every candidate in the order it was added, the validation
    errors of the average after each addition, and how many of them are kept."""

    order: list[int]
    val_errors: list[int]
    keep: int

    @property
    def chosen(self) -> list[int]:
        return self.order[:self.keep]


def greedy_selection(val_probs: list[torch.Tensor], val_labels: torch.Tensor, costs: list[float],
                     budget: float = float("inf")) -> Selection:
    """Forward selection of ensemble members on validation (after Caruana et al., 2004), without
    replacement: order the candidates by adding, each time, the one that leaves the averaged
    probabilities with the fewest validation errors (ties broken by log-loss) while the summed cost
    stays within ``budget``; then keep the prefix of that order with the fewest errors, the longest
    among equals. Stopping at the first rise instead would let one or two images of a small split end
    the search, and of two ensembles that err equally often on validation the larger one is the safer
    bet. (Log-loss alone misleads: it ranks label-smoothed members by their confidence.)"""
    order: list[int] = []
    errors_after: list[int] = []
    total = torch.zeros_like(val_probs[0])
    spent = 0.0
    while True:
        trials = {}
        for i, p in enumerate(val_probs):
            if i not in order and spent + costs[i] <= budget:
                mean = (total + p) / (len(order) + 1)
                trials[i] = (int((mean.argmax(1) != val_labels).sum()), log_loss(mean, val_labels))
        if not trials:
            break
        pick = min(trials, key=trials.get)
        order.append(pick)
        errors_after.append(trials[pick][0])
        total += val_probs[pick]
        spent += costs[pick]
    fewest = min(errors_after, default=0)
    keep = max((k for k, errors in enumerate(errors_after, start=1) if errors == fewest), default=0)
    return Selection(order, errors_after, keep)


def log_loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean())


@dataclass
class MemberSelection:
    """``select_members``'s answer: the runs in the order selection added them, with the training
    seconds of each and the validation errors of the average after each; the first ``keep`` are chosen."""

    run_dirs: list[Path]
    train_seconds: list[float]
    val_errors: list[int]
    keep: int
    val_images: int

    @property
    def chosen(self) -> list[Path]:
        return self.run_dirs[:self.keep]

    def to_dict(self) -> dict:
        return {"order": [str(d) for d in self.run_dirs], "train_seconds": self.train_seconds,
                "val_errors": self.val_errors, "keep": self.keep, "val_images": self.val_images}


def select_members(run_dirs: list[str | Path], budget_seconds: float = float("inf")) -> MemberSelection:
    """Greedy forward selection (``greedy_selection``) of the runs on the validation split (each
    scored as its own run chose, without the ensemble's shift TTA), their summed training time
    within ``budget_seconds``."""
    members = load_members(run_dirs)
    missing = [str(r.run_dir) for r in members if "train_seconds" not in r.metrics]
    if budget_seconds != float("inf") and missing:
        raise MnistkitError(f"ensemble: no train_seconds in metrics.json of {missing}, so a training-time "
                            "budget cannot be applied")
    val_images, val_labels = members[0].splits().part("val")
    val_probs = [probabilities(r.model, val_images) for r in members]
    costs = [float(r.metrics.get("train_seconds", 0.0)) for r in members]
    found = greedy_selection(val_probs, val_labels, costs, budget_seconds)
    if not found.chosen:
        raise MnistkitError(f"ensemble: no run fits a training budget of {budget_seconds:.0f} s "
                            f"(the cheapest took {min(costs):.0f} s)")
    return MemberSelection([members[i].run_dir for i in found.order], [costs[i] for i in found.order],
                           found.val_errors, found.keep, len(val_labels))


def evaluate_ensemble(run_dirs: list[str | Path], tta: bool | None = None, split: str = "test") -> EnsembleResult:
    """Average the members' probabilities. ``tta=None`` turns TTA on only if it raises validation
    accuracy; the numbers on ``split`` are computed after that choice, for both settings."""
    members = load_members(run_dirs)
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
