"""`mnistkit evaluate`: a model's accuracy, per-class scores, confusion and hardest mistakes on a split."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mnistkit.fileio import atomic_write_json
from mnistkit.metrics import EvalResult, evaluate_logits
from mnistkit.models import EVAL_BATCH_SIZE, infer
from mnistkit.runs import eval_file, load_run


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
             batch_size: int = EVAL_BATCH_SIZE) -> EvalResult:
    return evaluate_logits(infer(model, images, batch_size), labels, classes)


def evaluate_run(run_dir: str | Path, split: str = "test") -> EvalResult:
    """Evaluate a saved run on its dataset's test (or validation) split and write DIR/eval.json."""
    run = load_run(run_dir)
    images, labels = run.splits().part(split)
    result = evaluate(run.model, images, labels, run.classes, batch_size=run.config.eval_batch_size)
    atomic_write_json(run.path(eval_file(split)), {"split": split, **result.to_dict()})
    return result
