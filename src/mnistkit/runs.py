"""The run directory: every file a run writes, how each is read and written, and :class:`Run`.

A run directory holds tensors in safetensors and everything else in JSON, CSV or HTML, so loading a
run never unpickles code. Every write is atomic (:mod:`mnistkit.fileio`). Other modules ask this one
for paths (``run.path(EVAL_FILE)``) instead of spelling file names themselves.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from mnistkit.config import TrainConfig, adapt_to_data
from mnistkit.data.datasets import Splits, get_dataset_spec, load_dataset, split_validation
from mnistkit.data.preprocess import DIGIT_FRAMING, Framing
from mnistkit.errors import CheckpointError
from mnistkit.fileio import atomic_write_bytes, atomic_write_json
from mnistkit.models import Classifier, create_model

CONFIG_FILE = "config.json"  # the TrainConfig
WEIGHTS_FILE = "model.safetensors"  # best-validation weights, with model name and classes as metadata
CHECKPOINT_FILE = "checkpoint.safetensors"  # weights, optimizer, EMA, RNG and epoch: for --resume
METRICS_FILE = "metrics.json"  # the final summary (written last: its presence means the run finished)
HISTORY_FILE = "metrics.jsonl"  # one JSON row per epoch
STEPS_FILE = "steps.csv"  # loss and accuracy per optimizer step
EVAL_FILE = "eval.json"  # `mnistkit evaluate` on the test split (eval_val.json for validation)
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
WEB_EXPORT_DIR = "web"  # `mnistkit export --format web` without --out: a static site


def eval_file(split: str, dataset: str | None = None) -> str:
    """Where `evaluate` writes its scores: of the run's own data, or of another ``dataset`` it was scored on."""
    if dataset is not None:
        return f"eval_{dataset}_{split}.json"
    return EVAL_FILE if split == "test" else f"eval_{split}.json"


def export_info_file(fmt: str) -> str:
    return f"export_{fmt}.json"


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model}-{config.dataset}-{stamp}"


def prepare_data(config: TrainConfig) -> tuple[TrainConfig, Splits]:
    """The config with its data-dependent settings resolved (see ``adapt_to_data``), and the
    train/validation/test splits a run with it trains, selects and reports on."""
    dataset = load_dataset(config.dataset, config.data_dir, **config.dataset_options)
    config = adapt_to_data(config, len(dataset.train_images))
    return config, split_validation(dataset, config.val_size, config.val_seed, config.val_stratified)


def load_splits(config: TrainConfig) -> Splits:
    return prepare_data(config)[1]


@dataclass
class Run:
    """A trained run: its directory, config, class names, final metrics and best-validation model."""

    run_dir: Path
    config: TrainConfig
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    model: Classifier = field(repr=False)
    # The test split's logits when `train` just scored it in one process: the report reuses them
    # instead of a second pass (with shift TTA, 10 passes over the test images). None when loaded.
    test_logits: torch.Tensor | None = field(default=None, repr=False)

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def splits(self) -> Splits:
        return load_splits(self.config)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """A finished (or interrupted) run, with its best weights loaded into a model in eval mode.

    Only JSON and safetensors are read: loading a run never executes pickled code."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a run directory (it does not exist)")
    config = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE))
    weights, meta = load_tensors(run_dir / WEIGHTS_FILE)
    if meta.get("model", config.model) != config.model:
        raise CheckpointError(
            f"{run_dir / WEIGHTS_FILE}: weights were saved for model '{meta['model']}' "
            f"but config.json says '{config.model}'"
        )
    classes = tuple(json.loads(meta["classes"])) if "classes" in meta else tuple(str(i) for i in range(10))
    model = create_model(config.model, classes=classes, **config.model_kwargs)
    load_state_checked(model, weights, str(run_dir / WEIGHTS_FILE), config.model)
    model.tta_hflip = json.loads(meta.get("tta_hflip", "false")) is True
    model.tta_shift = json.loads(meta.get("tta_shift", "false")) is True
    threshold = json.loads(meta.get("ood_threshold", "null"))
    model.ood_threshold = float(threshold) if isinstance(threshold, (int, float)) else None
    model.item = get_dataset_spec(config.dataset).item
    model.framing = framing_of(meta, run_dir / WEIGHTS_FILE)
    metrics = read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).exists() else {}
    model = model.to(device).eval()
    if config.channels_last:  # the layout it trained in: convolutions infer about twice as fast on a CPU
        model = model.to(memory_format=torch.channels_last)
    return Run(run_dir=run_dir, config=config, classes=classes, metrics=metrics, model=model)


# --------------------------------------------------------------------------------------------------
# JSON and safetensors


def final_val_accuracy(metrics: dict[str, Any]) -> float | None:
    """Validation accuracy of the model as saved, with the test-time augmentation validation kept (metrics.json
    records each kind compared); ``val_accuracy`` is the best epoch's, before any TTA, and what selection uses."""
    if metrics.get("tta_shift"):
        return metrics["val_accuracy_shift_tta"]
    if metrics.get("tta_hflip"):
        return metrics["val_accuracy_hflip_tta"]
    return metrics.get("val_accuracy")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file, returning tensors and its string metadata."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    try:
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    return tensors, metadata


def save_weights(run_dir: Path, model: Classifier, config: TrainConfig, classes: tuple[str, ...]) -> None:
    meta = {"model": config.model, "dataset": config.dataset, "classes": json.dumps(list(classes)),
            "tta_hflip": json.dumps(bool(model.tta_hflip)),
            "tta_shift": json.dumps(bool(model.tta_shift)), "ood_threshold": json.dumps(model.ood_threshold),
            "framing": json.dumps(asdict(model.framing))}
    save_tensors(run_dir / WEIGHTS_FILE, model.state_dict(), metadata=meta)


def framing_of(meta: dict[str, str], path: Path) -> Framing:
    """The framing a weights file's metadata records; MNIST's for files written before mnistkit recorded it."""
    if "framing" not in meta:
        return DIGIT_FRAMING
    try:
        return Framing(**json.loads(meta["framing"]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: metadata field 'framing' must be like {{\"box\": 20, \"centre\": \"mass\"}}, "
                              f"found {meta['framing']!r} ({exc})") from None


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str, expected: str) -> None:
    """Load weights, explaining a mismatch (wrong architecture) instead of raising torch's long error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:2])})")
        raise CheckpointError(
            f"{source}: these weights do not fit model '{expected}' (from another architecture?): "
            + "; ".join(parts)
        )
    module.load_state_dict(state)


# --------------------------------------------------------------------------------------------------
# The resumable training checkpoint


def flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and the JSON-able rest."""
    tensors, rest = {}, {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                rest[f"{pid}.{key}"] = value
    return tensors, {"scalars": rest, "param_groups": state["param_groups"]}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = flat.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema_model: nn.Module | None,
                    generator: torch.Generator, state: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Everything needed to continue training bit for bit: weights, optimizer, EMA, RNGs, ``state`` and the
    loop's own ``extra`` tensors (each image's last loss, say)."""
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    if ema_model is not None:
        tensors.update({f"ema.{k}": v for k, v in ema_model.state_dict().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_tensors(path, tensors, metadata={"state": json.dumps(state), "optimizer": json.dumps(opt_meta)})


def restore_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema_model: nn.Module | None,
                       generator: torch.Generator, model_name: str,
                       extra: dict[str, torch.Tensor] | None = None) -> dict:
    """Load what :func:`save_checkpoint` wrote into the given objects (``extra``'s tensors are overwritten in
    place); returns the saved ``state``."""
    tensors, meta = load_tensors(path)

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    load_state_checked(model, group("model."), str(path), model_name)
    optimizer.load_state_dict(unflatten_optimizer_state(group("optim."), json.loads(meta["optimizer"])))
    if ema_model is not None:
        load_state_checked(ema_model, group("ema."), str(path), model_name)
    for name, target in (extra or {}).items():
        saved = tensors.get(f"extra.{name}")
        if saved is None or saved.shape != target.shape:
            found = "nothing" if saved is None else f"shape {tuple(saved.shape)}"
            raise CheckpointError(f"{path}: expected '{name}' of shape {tuple(target.shape)} to resume, found {found}")
        target.copy_(saved)
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return json.loads(meta["state"])


# --------------------------------------------------------------------------------------------------
# Per-epoch history and per-step log


def append_history(run_dir: Path, row: dict) -> None:
    with open(run_dir / HISTORY_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / HISTORY_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append_steps(run_dir: Path, first_step: int, losses: torch.Tensor, accuracies: torch.Tensor) -> None:
    path = run_dir / STEPS_FILE
    new_file = not path.exists()
    with open(path, "a") as f:
        if new_file:
            f.write("step,loss,accuracy\n")
        f.writelines(f"{first_step + i + 1},{loss:.5f},{acc:.4f}\n"
                     for i, (loss, acc) in enumerate(zip(losses.tolist(), accuracies.tolist())))


def read_steps(run_dir: Path) -> dict[str, np.ndarray] | None:
    path = Path(run_dir) / STEPS_FILE
    if not path.exists():
        return None
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {"loss": np.array([float(r["loss"]) for r in rows]), "accuracy": np.array([float(r["accuracy"]) for r in rows])}


def start_logs(run_dir: Path, config: TrainConfig) -> None:
    """A fresh run: the directory, its config.json, and no logs left from an earlier run there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / HISTORY_FILE).unlink(missing_ok=True)
    (run_dir / STEPS_FILE).unlink(missing_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())


def truncate_logs(run_dir: Path, epoch: int, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from (a crash between the two writes)."""
    history = run_dir / HISTORY_FILE
    if history.exists():
        rows = [r for r in history.read_text().splitlines() if json.loads(r)["epoch"] <= epoch]
        atomic_write_bytes(history, "".join(r + "\n" for r in rows).encode())
    steps = run_dir / STEPS_FILE
    if steps.exists():
        lines = steps.read_text().splitlines()
        kept = lines[:1] + [r for r in lines[1:] if int(r.split(",", 1)[0]) <= step]
        atomic_write_bytes(steps, "".join(r + "\n" for r in kept).encode())
