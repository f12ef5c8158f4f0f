"""`mnistkit evaluate`: a model's accuracy, per-class scores, confusion and hardest mistakes on a split of its
own data, or on another labelled dataset (a folder of your own scans, say)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from mnistkit.data.datasets import get_dataset_spec, load_dataset
from mnistkit.errors import MnistkitError
from mnistkit.fileio import atomic_write_json
from mnistkit.metrics import EvalResult, evaluate_logits
from mnistkit.models import EVAL_BATCH_SIZE, infer
from mnistkit.pretrained import is_shipped, load_source
from mnistkit.runs import eval_file, load_splits

OTHER_DATA_SPLITS = ("test", "all")  # of a dataset the model did not train on, "all" of its images are unseen


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
             batch_size: int = EVAL_BATCH_SIZE) -> EvalResult:
    return evaluate_logits(infer(model, images, batch_size), labels, classes)


def evaluate_run(source: str | Path, split: str = "test", data_dir: str | Path | None = None) -> EvalResult:
    """Evaluate a saved run, or a shipped model by name, on its dataset's test (or validation) split, read from
    ``data_dir`` where given (the run's own data moved, or a shipped model's data), and write DIR/eval.json (never
    into a shipped model's folder)."""
    run = load_source(source)
    config = run.config if data_dir is None else dataclasses.replace(run.config, data_dir=str(data_dir))
    images, labels = load_splits(config).part(split)
    result = evaluate(run.model, images, labels, run.classes, batch_size=run.config.eval_batch_size)
    if not is_shipped(run.run_dir):
        atomic_write_json(run.path(eval_file(split)), {"split": split, **result.to_dict()})
    return result


def evaluate_on_dataset(source: str | Path, dataset: str, data_dir: str | Path | None = None, split: str = "test",
                        options: dict | None = None) -> tuple[EvalResult, Path | None]:
    """Score a run's or a shipped model (``source``, as `--model-from` takes it) on another labelled dataset: its
    test images, or with ``split="all"`` every image it has, for data the model never trained on. Its classes are
    matched to the model's by name, so an MNIST model scores a folder ``0/ ... 9/`` of your own digits. ``options``
    go to the dataset's loader (EMNIST's ``{"split": "letters"}``, ...). Writes
    DIR/eval_<dataset>_<split>.json for a run directory (a shipped model's folder is never written to) and
    returns the result with that path. Pictures (a ``folder``) are framed as the model's training images were."""
    if split not in OTHER_DATA_SPLITS:
        raise MnistkitError(f"evaluate: split must be one of {list(OTHER_DATA_SPLITS)} on another dataset, "
                            f"found '{split}'")
    run = load_source(source)
    options = dict(options or {})
    if get_dataset_spec(dataset).pictures:  # frame the pictures as the model's training images were
        options = {"box": run.model.framing.box, "centre": run.model.framing.centre, **options}
    data = load_dataset(dataset, data_dir, **options)
    images, labels = data.test_images, data.test_labels
    if split == "all":
        images, labels = torch.cat([data.train_images, images]), torch.cat([data.train_labels, labels])
    labels = model_indices(run.classes, data.classes, dataset)[labels]
    result = evaluate(run.model, images, labels, run.classes, batch_size=run.config.eval_batch_size)
    if is_shipped(run.run_dir):
        return result, None
    path = run.path(eval_file(split, dataset))
    atomic_write_json(path, {"dataset": dataset, "data_dir": str(data_dir) if data_dir else None, "split": split,
                             **result.to_dict()})
    return result, path


def model_indices(model_classes: tuple[str, ...], data_classes: tuple[str, ...], dataset: str) -> torch.Tensor:
    """For each of the dataset's classes, the model's output of the same name."""
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise MnistkitError(f"evaluate: {dataset} has classes {unknown} that the model does not know; its classes "
                            f"are {list(model_classes)} (name each class folder after one of them)")
    return torch.tensor([model_classes.index(c) for c in data_classes])
