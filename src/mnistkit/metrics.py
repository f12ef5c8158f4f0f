"""Pure functions of logits and labels: accuracy, loss, confusion, per-class scores, hardest mistakes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    return (logits.argmax(1) == labels).float().mean().item(), F.cross_entropy(logits, labels).item()


def standard_error(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on ``images`` images, from the Laplace-smoothed rate (a perfect
    score on a handful of images has one too)."""
    rate = (accuracy * images + 1) / (images + 2)
    return math.sqrt(rate * (1 - rate) / images)


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

    @property
    def balanced_accuracy(self) -> float:
        """The mean recall over the classes with images: each class weighs the same, however many images it has (what
        Kuzushiji-49's publisher asks to be reported for its imbalanced classes)."""
        present = [r for r, s in zip(self.recall, self.support) if s]
        return sum(present) / len(present) if present else 0.0

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
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


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], n_mistakes: int = 20) -> EvalResult:
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


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """Out-of-distribution score: the free energy ``-logsumexp(logits)`` (Liu et al., 2020). Inputs like the
    training data get large logits and a low score; the higher the score, the less the input looks like
    any class the model knows."""
    return -torch.logsumexp(logits.float(), dim=1)


def rejection_threshold(in_distribution_scores: torch.Tensor, false_rejection: float) -> float:
    """The score above which an input is called out of distribution, so that a ``false_rejection``
    fraction of these (validation) inputs of the known classes would be rejected."""
    if not 0.0 < false_rejection < 1.0:
        raise ValueError(f"false_rejection must lie in (0, 1), found {false_rejection}")
    return torch.quantile(in_distribution_scores.double(), 1.0 - false_rejection).item()


def auroc(in_distribution_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve for telling the two apart by score (1.0: perfectly; 0.5: chance)."""
    from sklearn.metrics import roc_auc_score

    labels = torch.cat([torch.zeros(len(in_distribution_scores)), torch.ones(len(out_scores))])
    return float(roc_auc_score(labels.numpy(), torch.cat([in_distribution_scores, out_scores]).double().numpy()))
