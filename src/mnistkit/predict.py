"""Loading a trained run for inference, and predicting labels for image files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mnistkit import checkpoint as ckpt
from mnistkit.config import TrainConfig
from mnistkit.data.preprocess import load_digit
from mnistkit.errors import CheckpointError, MnistkitError
from mnistkit.models import Classifier, create_model


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """The best weights of a run, as a model in eval mode with ``.classes`` and ``.config`` attached.

    Only JSON and safetensors are read: loading a run never executes pickled code.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a run directory (it does not exist)")
    config = TrainConfig.from_dict(ckpt.read_json(run_dir / ckpt.CONFIG_FILE))
    weights, meta = ckpt.load_tensors(run_dir / ckpt.WEIGHTS_FILE)
    if meta.get("model", config.model) != config.model:
        raise CheckpointError(
            f"{run_dir / ckpt.WEIGHTS_FILE}: weights were saved for model '{meta['model']}' "
            f"but config.json says '{config.model}'"
        )
    classes = tuple(json.loads(meta["classes"])) if "classes" in meta else tuple(str(i) for i in range(10))
    model = create_model(config.model, num_classes=len(classes), **config.model_kwargs)
    ckpt.load_state_checked(model, weights, str(run_dir / ckpt.WEIGHTS_FILE), config.model)
    model.classes = classes
    model.config = config
    return model.to(device).eval()


@dataclass
class Prediction:
    source: str
    label: str | None = None
    index: int | None = None
    probabilities: list[float] = field(default_factory=list)
    top3: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    image: np.ndarray | None = None  # the 28x28 input the model saw

    def to_dict(self) -> dict:
        out = {"file": self.source}
        if self.error:
            out["error"] = self.error
        else:
            out.update(label=self.label, top3=[{"label": c, "probability": p} for c, p in self.top3],
                       probabilities=self.probabilities)
        return out


@torch.inference_mode()
def predict_arrays(model: Classifier, images: np.ndarray) -> torch.Tensor:
    """Class probabilities for float (N, 28, 28) images in [0, 1]."""
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device).unsqueeze(1)
    return model.eval()(x).softmax(1).cpu()


def predict_images(model: Classifier, paths: list[str | Path]) -> list[Prediction]:
    """Predict every readable file; a file that cannot be used gets an error and the rest go on."""
    classes = getattr(model, "classes", tuple(str(i) for i in range(10)))
    results, good, arrays = [], [], []
    for path in paths:
        try:
            arrays.append(load_digit(path))
            good.append(len(results))
            results.append(Prediction(source=str(path)))
        except MnistkitError as exc:
            results.append(Prediction(source=str(path), error=str(exc)))
    if arrays:
        probs = predict_arrays(model, np.stack(arrays))
        for row, (i, arr) in enumerate(zip(good, arrays)):
            p = probs[row]
            top = p.topk(min(3, len(classes)))
            results[i].index = int(top.indices[0])
            results[i].label = classes[results[i].index]
            results[i].probabilities = [round(float(v), 6) for v in p]
            results[i].top3 = [(classes[int(c)], float(v)) for v, c in zip(top.values, top.indices)]
            results[i].image = arr
    return results
