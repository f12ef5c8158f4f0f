"""Predicting labels for image files with a trained model, and `mnistkit.load` for inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mnistkit.data.folder import IMAGE_SUFFIXES
from mnistkit.data.preprocess import load_digit
from mnistkit.errors import MnistkitError
from mnistkit.explain import METHOD, integrated_gradients
from mnistkit.metrics import energy_score
from mnistkit.models import Classifier, infer
from mnistkit.pretrained import load_source


def load(source: str | Path = "mnist", device: str | torch.device = "cpu") -> Classifier:
    """A trained model as a plain ``nn.Module`` in eval mode (its ``classes`` name the outputs): the best
    weights of a run directory, or a pretrained model shipped with mnistkit by name ("mnist", ...).

    ``mnistkit.load_run(DIR)`` and ``mnistkit.pretrained.load_pretrained(NAME)`` give config and metrics too."""
    return load_source(source, device).model


@dataclass
class Prediction:
    source: str
    label: str | None = None
    index: int | None = None
    probabilities: list[float] = field(default_factory=list)
    top3: list[tuple[str, float]] = field(default_factory=list)
    ood_score: float | None = None  # metrics.energy_score: higher means less like the training data
    rejected: str | None = None  # "not a digit (score ...)" when the score is above the model's threshold
    error: str | None = None
    input: np.ndarray | None = field(default=None, repr=False)  # the 28x28 image the model was given

    def to_dict(self) -> dict:
        out = {"file": self.source}
        if self.error:
            out["error"] = self.error
        else:
            out.update(label=self.label, top3=[{"label": c, "probability": p} for c, p in self.top3],
                       probabilities=self.probabilities, ood_score=self.ood_score, rejected=self.rejected)
        return out


def rejection(model: Classifier, score: float) -> str | None:
    """The model's "not a <item>" answer for an input with this out-of-distribution score, or None when
    the input looks like its training data (or the model has no threshold)."""
    if model.ood_threshold is None or score <= model.ood_threshold:
        return None
    what = f"a {model.item}" if model.item else "one of the known classes"
    return f"not {what} (score {score:.2f} above {model.ood_threshold:.2f})"


def picture_files(paths: list[str | Path]) -> list[Path]:
    """The paths, each folder among them replaced by the pictures and .npy arrays in it and its subfolders, sorted."""
    suffixes = IMAGE_SUFFIXES | {".npy"}
    files = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not found:
            raise MnistkitError(f"{path}: a folder with no pictures in it ({', '.join(sorted(suffixes))})")
        files += found
    return files


def predict_images(model: Classifier, paths: list[str | Path]) -> list[Prediction]:
    """Predict every readable file (a folder: every picture in it), each picture framed as the model's training
    images were; a file that cannot be used gets an error and the rest go on."""
    classes = model.classes
    results, good, arrays = [], [], []
    for path in picture_files(paths):
        try:
            arrays.append(load_digit(path, model.framing))
            good.append(len(results))
            results.append(Prediction(source=str(path), input=arrays[-1]))
        except MnistkitError as exc:
            results.append(Prediction(source=str(path), error=str(exc)))
    if arrays:
        logits = infer(model, np.stack(arrays))
        probs, scores = logits.softmax(1), energy_score(logits)
        for row, i in enumerate(good):
            p = probs[row]
            results[i].ood_score = round(float(scores[row]), 4)
            results[i].rejected = rejection(model, float(scores[row]))
            top = p.topk(min(3, len(classes)))
            results[i].index = int(top.indices[0])
            results[i].label = classes[results[i].index]
            results[i].probabilities = [round(float(v), 6) for v in p]
            results[i].top3 = [(classes[int(c)], float(v)) for v, c in zip(top.values, top.indices)]
    return results


def short_name(name: str, limit: int = 18) -> str:
    """``name`` in at most ``limit`` characters for a caption: its start and its end around an ellipsis, since the
    files of one folder often differ only at the end (scan_0001.png, scan_0002.png)."""
    if len(name) <= limit:
        return name
    tail = (limit - 1) * 3 // 5
    return name[:limit - 1 - tail] + "…" + name[-tail:]


EXPLAINED_AT_MOST = 24  # pictures in one `predict --explain` figure: more would be too small to read


def explain_predictions(model: Classifier, predictions: list[Prediction], path: str | Path) -> Path | None:
    """A figure of what the model was given for each answered picture (the first EXPLAINED_AT_MOST) beside why it
    answered so: Integrated Gradients towards its answer. None when no picture was answered."""
    from mnistkit import plots  # matplotlib, only where a figure is asked for: `import mnistkit` stays light

    answered = [p for p in predictions if p.error is None][:EXPLAINED_AT_MOST]
    if not answered:
        return None
    images = np.stack([p.input for p in answered])
    maps = integrated_gradients(model, images, torch.tensor([p.index for p in answered])).maps.numpy()
    captions = [short_name(Path(p.source).name) for p in answered]
    return plots.attributions(images, maps, captions, [p.label for p in answered], path,
                              f"What the model was given, and why it answered so ({METHOD})", answer_color="black")
