"""The training loop: a TrainConfig goes in, a run directory with weights and metrics comes out.

Read top to bottom: load the data onto the device as uint8 tensors, build the model, then for each
epoch shuffle indices, slice batches, augment them as a whole, take SGD steps, evaluate on the
validation split, keep the best weights and write a resumable checkpoint. The test split is scored
once at the end (and, if asked, after each epoch for reporting), never used to choose anything.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mnistkit import checkpoint as ckpt
from mnistkit.config import TrainConfig
from mnistkit.data.augment import augment_batch
from mnistkit.data.datasets import Splits, load_dataset, pixel_stats, split_validation
from mnistkit.errors import CheckpointError, MnistkitError
from mnistkit.evaluate import accuracy_and_loss, predict_logits
from mnistkit.models import Classifier, count_macs, count_parameters, create_model


@dataclass
class TrainResult:
    run_dir: Path
    model: Classifier
    metrics: dict


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MnistkitError("device 'cuda' requested but no CUDA GPU is available")
    return torch.device(name)


def learning_rate(cfg: TrainConfig, progress: float, epoch: int) -> float:
    """The lr at a point of the run (``progress`` in [0, 1]); a pure function, so resuming needs no state."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        if cfg.step_every:
            return cfg.lr * cfg.step_gamma ** ((epoch - 1) // cfg.step_every)
        return cfg.lr * cfg.step_gamma ** min(2, int(progress * 3))
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    # onecycle: linear warm-up from lr/25 to lr, then cosine annealing to ~0.
    warm = cfg.warmup_fraction
    if progress < warm:
        return cfg.lr * (0.04 + 0.96 * progress / warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warm) / (1 - warm))))


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation parameters: it only hurts them.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and cfg.momentum > 0
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


class EMA:
    """Exponential moving average of a model's weights; its copy is what gets evaluated and saved."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


def append_steps(path: Path, first_step: int, losses: torch.Tensor, accuracies: torch.Tensor) -> None:
    new_file = not path.exists()
    with open(path, "a") as f:
        if new_file:
            f.write("step,loss,accuracy\n")
        f.writelines(f"{first_step + i + 1},{loss:.5f},{acc:.4f}\n"
                     for i, (loss, acc) in enumerate(zip(losses.tolist(), accuracies.tolist())))


def truncate_history(run_dir: Path, epoch: int, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from (a crash between the two writes)."""
    history = run_dir / ckpt.HISTORY_FILE
    if history.exists():
        rows = [r for r in history.read_text().splitlines() if json.loads(r)["epoch"] <= epoch]
        ckpt.atomic_write_bytes(history, "".join(r + "\n" for r in rows).encode())
    steps = run_dir / ckpt.STEPS_FILE
    if steps.exists():
        lines = steps.read_text().splitlines()
        kept = lines[:1] + [r for r in lines[1:] if int(r.split(",", 1)[0]) <= step]
        ckpt.atomic_write_bytes(steps, "".join(r + "\n" for r in kept).encode())


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.model}-{cfg.dataset}-{stamp}"


def load_splits(cfg: TrainConfig) -> Splits:
    dataset = load_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_options)
    return split_validation(dataset, cfg.val_size, cfg.val_seed)


def build_model(cfg: TrainConfig, splits: Splits) -> Classifier:
    mean, std = pixel_stats(splits.train_images) if cfg.normalize else (0.0, 1.0)
    return create_model(cfg.model, num_classes=len(splits.classes), mean=mean, std=std, **cfg.model_kwargs)


def save_checkpoint(path: Path, model: nn.Module, optimizer, ema: EMA | None, generator: torch.Generator,
                    state: dict) -> None:
    opt_tensors, opt_meta = ckpt.flatten_optimizer_state(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"state": json.dumps(state), "optimizer": json.dumps(opt_meta)}
    ckpt.save_tensors(path, tensors, metadata=meta)


def restore_checkpoint(path: Path, model: nn.Module, optimizer, ema: EMA | None, generator: torch.Generator,
                       model_name: str) -> dict:
    tensors, meta = ckpt.load_tensors(path)
    group = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    ckpt.load_state_checked(model, group("model."), str(path), model_name)
    optimizer.load_state_dict(ckpt.unflatten_optimizer_state(group("optim."), json.loads(meta["optimizer"])))
    if ema is not None:
        ckpt.load_state_checked(ema.model, group("ema."), str(path), model_name)
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return json.loads(meta["state"])


def train(cfg: TrainConfig | None, resume: str | Path | None = None) -> TrainResult:
    """Train a model as ``cfg`` says. With ``resume``, continue the run saved in that directory (its
    config.json is used, ``cfg`` may be None)."""
    if resume is not None:
        run_dir = Path(resume)
        saved = ckpt.read_json(run_dir / ckpt.CONFIG_FILE)
        cfg = TrainConfig.from_dict(saved)
        if not (run_dir / ckpt.CHECKPOINT_FILE).exists():
            raise CheckpointError(f"{run_dir}: no {ckpt.CHECKPOINT_FILE} to resume from")
    else:
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    cfg = dataclasses.replace(cfg, out=str(run_dir))  # the caller's config stays as it was
    wall_start = time.perf_counter()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    splits = load_splits(cfg)
    train_x = splits.train_images.to(device)
    train_y = splits.train_labels.to(device)
    model = build_model(cfg, splits).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(cfg, model)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    step_fn = torch.compile(model) if cfg.compile else model
    amp_dtype = torch.bfloat16 if (cfg.amp and device.type == "cuda") else None

    steps_per_epoch = len(train_x) // cfg.batch_size
    if steps_per_epoch == 0:
        raise MnistkitError(f"batch_size {cfg.batch_size} exceeds the {len(train_x)} training images")
    total_steps = steps_per_epoch * cfg.epochs
    budget = cfg.budget_seconds  # if set, the schedule follows elapsed time and training stops when it is spent
    state = {"epoch": 0, "step": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "train_seconds": 0.0}
    if resume is not None:
        state = restore_checkpoint(run_dir / ckpt.CHECKPOINT_FILE, model, optimizer, ema, generator, cfg.model)
        truncate_history(run_dir, state["epoch"], state["step"])
        print(f"Resuming {run_dir} after epoch {state['epoch']} of {cfg.epochs}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ckpt.HISTORY_FILE).unlink(missing_ok=True)
        (run_dir / ckpt.STEPS_FILE).unlink(missing_ok=True)
        ckpt.atomic_write_json(run_dir / ckpt.CONFIG_FILE, cfg.to_dict())
    meta = {"model": cfg.model, "dataset": cfg.dataset, "classes": json.dumps(list(splits.classes))}
    eval_model = ema.model if ema is not None else model

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if budget and state["train_seconds"] >= budget:
            break
        epoch_start = time.perf_counter()
        first_step = state["step"]
        model.train()
        order = torch.randperm(len(train_x), device=device, generator=generator)
        # Per-step results stay on the device until the epoch ends: no host sync in the hot loop.
        step_loss = torch.zeros(steps_per_epoch, device=device)
        step_correct = torch.zeros(steps_per_epoch, device=device)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not cfg.progress, mininterval=0.5, unit="batch")
        for i in bar:
            if budget:
                elapsed = state["train_seconds"] + time.perf_counter() - epoch_start
                if elapsed >= budget:
                    break
                progress = elapsed / budget
            else:
                progress = state["step"] / total_steps
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, progress, epoch)
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            images = train_x[idx].unsqueeze(1).float().div_(255)
            images = augment_batch(images, cfg.augment, generator).contiguous(memory_format=memory_format)
            labels = train_y[idx]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = step_fn(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            state["step"] += 1
            step_loss[i] = loss.detach()
            step_correct[i] = (logits.argmax(1) == labels).sum()
            if i % 50 == 49 or i == steps_per_epoch - 1:
                bar.set_postfix(loss=f"{step_loss[: i + 1].mean().item():.4f}",
                                acc=f"{step_correct[: i + 1].sum().item() / ((i + 1) * cfg.batch_size):.4f}")
        state["train_seconds"] += time.perf_counter() - epoch_start
        steps_done = state["step"] - first_step
        if steps_done == 0:
            break
        step_loss, step_accuracy = step_loss[:steps_done].cpu(), step_correct[:steps_done].cpu() / cfg.batch_size

        val_acc, val_loss = accuracy_and_loss(predict_logits(eval_model, splits.val_images, cfg.eval_batch_size),
                                              splits.val_labels)
        row = {"epoch": epoch, "step": state["step"], "lr": optimizer.param_groups[0]["lr"],
               "train_loss": step_loss.mean().item(), "train_accuracy": step_accuracy.mean().item(),
               "val_loss": val_loss, "val_accuracy": val_acc, "train_seconds": state["train_seconds"]}
        if cfg.test_every_epoch:
            row["test_accuracy"], row["test_loss"] = accuracy_and_loss(
                predict_logits(eval_model, splits.test_images, cfg.eval_batch_size), splits.test_labels)
        if val_acc > state["best_val_accuracy"]:
            state["best_val_accuracy"], state["best_epoch"] = val_acc, epoch
            ckpt.save_tensors(run_dir / ckpt.WEIGHTS_FILE, eval_model.state_dict(), metadata=meta)
        state["epoch"] = epoch
        ckpt.append_jsonl(run_dir / ckpt.HISTORY_FILE, row)
        append_steps(run_dir / ckpt.STEPS_FILE, first_step, step_loss, step_accuracy)
        save_checkpoint(run_dir / ckpt.CHECKPOINT_FILE, model, optimizer, ema, generator, state)
        if cfg.progress:
            test = f"  test acc {row['test_accuracy']:.4f}" if "test_accuracy" in row else ""
            tqdm.write(f"epoch {epoch:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc "
                       f"{row['train_accuracy']:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}{test}  "
                       f"[{state['train_seconds']:.1f}s]")

    # Report on the best-validation weights; the test split is scored here and only here.
    best, _ = ckpt.load_tensors(run_dir / ckpt.WEIGHTS_FILE)
    eval_model.load_state_dict(best)
    test_acc, test_loss = accuracy_and_loss(predict_logits(eval_model, splits.test_images, cfg.eval_batch_size),
                                            splits.test_labels)
    metrics = {
        "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset, "epochs": state["epoch"],
        "best_epoch": state["best_epoch"], "train_seconds": round(state["train_seconds"], 3),
        "wall_seconds": round(time.perf_counter() - wall_start, 3),
        "val_accuracy": state["best_val_accuracy"], "test_accuracy": test_acc, "test_loss": test_loss,
        "parameters": count_parameters(eval_model), "macs_per_image": count_macs(eval_model),
        "device": str(device), "seed": cfg.seed, "torch": torch.__version__,
        "train_images": len(train_x), "val_images": len(splits.val_images), "test_images": len(splits.test_images),
        "classes": list(splits.classes),
    }
    ckpt.atomic_write_json(run_dir / ckpt.METRICS_FILE, metrics)
    if cfg.progress:
        print(f"best epoch {state['best_epoch']}: val acc {state['best_val_accuracy']:.4f}, "
              f"test acc {test_acc:.4f}  ({state['train_seconds']:.1f}s training)  -> {run_dir}")
    if cfg.report:
        from mnistkit.report import write_report  # late import: the report module builds on this one

        write_report(run_dir, log=print if cfg.progress else (lambda *_: None))
    result_model = eval_model.eval()
    result_model.classes = splits.classes
    result_model.config = cfg
    return TrainResult(run_dir=run_dir, model=result_model, metrics=metrics)
