"""The training loop: a TrainConfig goes in, a run directory with weights and metrics comes out.

Read top to bottom: load the data onto the device as uint8 tensors, build the model, then for each
epoch shuffle indices, slice batches, augment them as a whole, take SGD steps, evaluate on the
validation split, keep the best weights and write a resumable checkpoint. The test split is scored
once at the end (and, if asked, after each epoch for reporting), never used to choose anything.
Drawing the report is the caller's choice (`mnistkit train` does it; ``train()`` does not).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mnistkit import distributed, runs
from mnistkit.config import TrainConfig, adapt_to_precision
from mnistkit.data.augment import alternate_flips, augment_batch, flip_parity
from mnistkit.data.datasets import Splits, get_dataset_spec, pixel_stats
from mnistkit.data.preprocess import measure_framing
from mnistkit.errors import CheckpointError, MnistkitError
from mnistkit.fileio import atomic_write_json
from mnistkit.metrics import accuracy_and_loss, energy_score, rejection_threshold
from mnistkit.models import TTA_SHIFTS, Classifier, as_image_batch, count_macs, count_parameters, create_model, infer
from mnistkit.runs import Run


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


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX)."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 when ``cfg.amp`` asks for it and the device computes in bf16 natively, else None (fp32).

    On a CPU with AVX-512 BF16, bf16 autocast trains mknet-l 1.3-1.5x faster (BENCHMARKS.md, speed
    options); on an AVX-512 CPU without it, oneDNN emulates bf16 and training ran 10x slower, so there
    it stays fp32."""
    if not cfg.amp:
        return None
    if device.type == "cuda" or (device.type == "cpu" and native_cpu_bf16()):
        return torch.bfloat16
    return None


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


def schedule_progress(step: int, total_steps: int, elapsed: float, budget: float) -> float:
    """How far through its lr schedule a run is, in [0, 1]: the share of its steps done or, with a time
    budget, of the budget spent, whichever is further. So the lr anneals to the end by whichever limit
    stops the run first: the clock on a slow machine, the epochs on a fast one."""
    done = step / total_steps
    return min(1.0, max(done, elapsed / budget)) if budget else done


def training_seconds_left(deadline: float, wall_elapsed: float, still_to_score: float, epoch_train: float,
                          epoch_other: float) -> float:
    """Seconds of training that still fit before ``deadline`` (wall seconds since the run started) once
    ``wall_elapsed`` of them are gone, when scoring after the last epoch takes ``still_to_score`` seconds and
    each epoch of ``epoch_train`` seconds of training takes ``epoch_other`` more to validate and save (the
    last one too, however short)."""
    if epoch_train <= 0:
        return 0.0
    spare = deadline - wall_elapsed - still_to_score - epoch_other
    return max(0.0, spare / (1 + epoch_other / epoch_train))


def passes_after_training(cfg: TrainConfig, amp: bool) -> tuple[int, int]:
    """At most how many passes over the (validation, test) images `train` makes after its last epoch, each
    TTA view counted as one: the fp32 re-validation of a bf16 run, then choose_tta's trials, then the test
    split with every view kept."""
    flip, shift = cfg.augment.hflip > 0, cfg.try_shift_tta
    views = (2 if flip else 1) * (len(TTA_SHIFTS) if shift else 1)
    return 1 + int(amp) + (2 if flip else 0) + (views if shift else 0), views


def focus_plan(images: int, batch: int, epochs: int, fraction: float) -> tuple[int, int]:
    """(epochs to run, images in each epoch after the first) under ``focus_fraction``: the first epoch trains every
    image, each later one ``fraction`` of them, and there are as many later epochs as keep the optimizer steps of
    ``epochs`` full ones."""
    if fraction >= 1 or epochs == 1:
        return epochs, images
    later = min(images, max(batch, round(images * fraction)))
    return 1 + math.ceil((epochs - 1) * (images // batch) / (later // batch)), later


def focused_order(last_loss: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's ``size`` image indices in random order: the ``size // 2`` images whose loss was highest when last
    trained on, and the rest drawn at random from the others, so that every image comes back now and then and its
    loss stays fresh. After Jiang et al. (2019), "Accelerating deep learning by focusing on the biggest losers",
    with each image's loss from its last training step instead of an extra forward pass."""
    hard = size // 2
    ranked = torch.argsort(last_loss, descending=True)
    others = ranked[hard:]
    drawn = others[torch.randperm(len(others), device=others.device, generator=generator)[: size - hard]]
    chosen = torch.cat([ranked[:hard], drawn])
    return chosen[torch.randperm(size, device=chosen.device, generator=generator)]


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
    """Exponential moving average of a model's weights; its copy is what gets evaluated and saved.

    The decay warms up as ``min(decay, (1 + step) / (10 + step))`` (as TensorFlow's moving average
    with ``num_updates``): a fixed 0.999 would keep the average mostly at the initial weights for the
    first thousand steps, which left a 5-epoch run's validation at 10% after two epochs (BENCHMARKS.md,
    the 400 s probe). After the warm-up, a long run's average is the same as with the fixed decay."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in ``model``'s weights after optimizer step number ``step`` (0 for the first)."""
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - self.decay_at(step))
        self.copy_buffers(model)

    @torch.no_grad()
    def copy_buffers(self, model: nn.Module) -> None:
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


def loop_tensors(last_loss: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The training loop's own state that a checkpoint keeps beside the weights, for a bit-for-bit resume."""
    return {"last_loss": last_loss} if last_loss is not None else {}


def build_model(cfg: TrainConfig, splits: Splits) -> Classifier:
    mean, std = pixel_stats(splits.train_images) if cfg.normalize else (0.0, 1.0)
    model = create_model(cfg.model, classes=splits.classes, mean=mean, std=std, **cfg.model_kwargs)
    model.item = get_dataset_spec(cfg.dataset).item
    model.framing = measure_framing(splits.train_images.cpu().numpy())
    return model


def validate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
             ranks: distributed.Ranks, dtype: torch.dtype | None = None) -> tuple[float, float]:
    """Accuracy and mean loss on a labelled split, computed in ``dtype`` (None: fp32); with several
    processes each scores a share and the sums are added up, so every process gets the same numbers
    and makes the same choices."""
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        logits = infer(model, images[ranks.rank :: ranks.world], cfg.eval_batch_size)
    share = labels[ranks.rank :: ranks.world]
    if not ranks.distributed:
        return accuracy_and_loss(logits, share)
    totals = distributed.sum_all(torch.tensor([(logits.argmax(1) == share).sum().item(),
                                               F.cross_entropy(logits, share, reduction="sum").item(), len(share)],
                                              dtype=torch.float64), ranks)
    return (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()


def choose_tta(model: Classifier, splits: Splits, cfg: TrainConfig) -> tuple[dict, torch.Tensor | None]:
    """Test-time augmentation, each kind kept if, and only if, it raises validation accuracy: mirror
    images for data trained with flips, then (``cfg.try_shift_tta``) one-pixel shifts. Returns every
    accuracy compared, for metrics.json, and the validation logits of the model as it ends up (None
    without a validation split), so that the abstention threshold needs no pass of its own."""
    if len(splits.val_images) == 0:
        return {}, None

    def val_logits() -> torch.Tensor:
        return infer(model, splits.val_images, cfg.eval_batch_size)

    def accuracy(logits: torch.Tensor) -> float:
        return (logits.argmax(1) == splits.val_labels).float().mean().item()

    # (flag, tried, metrics key without it, key with it); shifts are tried on top of the mirror choice
    kinds = (("tta_hflip", cfg.augment.hflip > 0, "val_accuracy_plain", "val_accuracy_hflip_tta"),
             ("tta_shift", cfg.try_shift_tta, "val_accuracy_before_shift_tta", "val_accuracy_shift_tta"))
    model.tta_hflip = model.tta_shift = False
    logits = val_logits()
    current = accuracy(logits)
    found = {}
    for flag, _, without_key, with_key in [k for k in kinds if k[1]]:
        setattr(model, flag, True)
        trial = val_logits()
        with_it = accuracy(trial)
        setattr(model, flag, with_it > current)
        found.update({flag: with_it > current, without_key: current, with_key: with_it})
        if with_it > current:
            logits, current = trial, with_it
    return found, logits


def calibrate_abstention(model: Classifier, val_logits: torch.Tensor | None, cfg: TrainConfig) -> dict:
    """Set the model's "not a <item>" threshold on the energy score so that ``cfg.ood_false_rejection`` of
    the validation images would be refused (``val_logits``: the final model's); the test split is never
    looked at."""
    if val_logits is None:
        model.ood_threshold = None
        return {}
    scores = energy_score(val_logits)
    model.ood_threshold = round(rejection_threshold(scores, cfg.ood_false_rejection), 6)
    return {"ood_score": "energy", "ood_threshold": model.ood_threshold,
            "ood_val_false_rejection": (scores > model.ood_threshold).float().mean().item()}


def fp32_seconds_per_image(model: nn.Module, images: torch.Tensor, cfg: TrainConfig) -> float:
    """Wall seconds per image of an fp32 pass over ``images``: the speed of the scoring after training, which a
    bf16 run's per-epoch validation (about twice as fast) would underprice."""
    start = time.perf_counter()
    infer(model, images, cfg.eval_batch_size)
    return (time.perf_counter() - start) / len(images)


def budget_for_deadline(cfg: TrainConfig, splits: Splits, state: dict, amp: bool, wall_elapsed: float,
                        epoch_train: float, epoch_wall: float, per_image: float) -> float:
    """The seconds of training (from the run's start) that let ``train`` end by ``cfg.deadline_seconds``,
    re-estimated after each epoch from what that epoch took here: its training, then its validation and
    saving; the passes still to come after training are priced at ``per_image`` seconds an image."""
    n_val, n_test = len(splits.val_images), len(splits.test_images)
    val_passes, test_passes = passes_after_training(cfg, amp)
    still_to_score = per_image * (val_passes * n_val + test_passes * n_test)
    left = training_seconds_left(cfg.deadline_seconds, wall_elapsed, still_to_score, epoch_train,
                                 max(0.0, epoch_wall - epoch_train))
    return min(cfg.budget_seconds or math.inf, state["train_seconds"] + left)


def config_of_run(cfg: TrainConfig | None, resume: str | Path | None) -> TrainConfig:
    """The config a run trains with, ``out`` naming its directory: the one saved in ``resume``'s directory, else
    ``cfg`` (None: the default recipe). The caller's config is not changed."""
    if resume is not None:
        run_dir = Path(resume)
        cfg = TrainConfig.from_dict(runs.read_json(run_dir / runs.CONFIG_FILE))
        if not (run_dir / runs.CHECKPOINT_FILE).exists():
            raise CheckpointError(f"{run_dir}: no {runs.CHECKPOINT_FILE} to resume from")
    else:
        cfg = cfg or TrainConfig()
        run_dir = Path(cfg.out) if cfg.out else runs.default_run_dir(cfg)
    return dataclasses.replace(cfg, out=str(run_dir))


def train_step(step_fn: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
               images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, amp_dtype: torch.dtype | None,
               per_image: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One optimizer step on a batch: its loss, its logits and, if ``per_image``, each image's loss (detached)."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = step_fn(images)
        if per_image:  # only here: the mean of per-image losses rounds differently from reduction="mean"
            losses = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing, reduction="none")
            loss = losses.mean()
        else:
            losses = None
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.sam_rho:
        sharpness_aware_gradients(step_fn, optimizer, images, labels, cfg, amp_dtype)
    optimizer.step()
    return loss, logits, losses.detach() if losses is not None else None


def sharpness_aware_gradients(step_fn: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                              images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                              amp_dtype: torch.dtype | None) -> None:
    """Replace the gradients with those at the weights moved ``cfg.sam_rho`` along them (SAM's second pass).

    Batch-norm running statistics are left as the first pass set them: the moved weights are not the model's."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    scale = cfg.sam_rho / (torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) + 1e-12)
    originals = [p.detach().clone() for p in params]  # restored exactly: w + e - e is not w in floating point
    with torch.no_grad():
        torch._foreach_add_(params, torch._foreach_mul(grads, scale))
    statistics = [(b, b.clone()) for m in step_fn.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  for b in m.buffers()]
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = F.cross_entropy(step_fn(images).float(), labels, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for buffer, saved in statistics:
        buffer.copy_(saved)
    with torch.no_grad():
        torch._foreach_copy_(params, originals)


def why_training_stopped(cfg: TrainConfig, budget: float, state: dict, epochs: int) -> str:
    """The line that says a clock, not the epochs, ended training, and how to lift it."""
    if cfg.deadline_seconds and budget < (cfg.budget_seconds or math.inf):
        return (f"deadline: training stopped after {state['train_seconds']:.0f} s so that scoring ends within "
                f"{cfg.deadline_seconds:g} s of the start on this machine (--set deadline_seconds=0 lifts it)")
    return (f"time budget: {budget:g} s of training spent after {state['epoch']} of {epochs} epochs "
            "(--set budget_seconds=0 trains them all)")


def score_test_split(model: nn.Module, splits: Splits, cfg: TrainConfig, ranks: distributed.Ranks,
                     ) -> tuple[float, float, torch.Tensor | None]:
    """Test accuracy and loss of the final model, and its test logits (None where several processes share it)."""
    if ranks.distributed:
        return *validate(model, splits.test_images, splits.test_labels, cfg, ranks), None
    logits = infer(model, splits.test_images, cfg.eval_batch_size)
    return *accuracy_and_loss(logits, splits.test_labels), logits


@dataclasses.dataclass
class Loop:
    """What every epoch of a run works with, built once by `start_loop`: the config as adapted to the data and the
    device, the processes, the data on the device, the network and its optimizer."""

    cfg: TrainConfig
    ranks: distributed.Ranks
    device: torch.device
    splits: Splits
    train_x: torch.Tensor  # the training images and labels, on the device
    train_y: torch.Tensor
    model: Classifier
    step_fn: nn.Module  # what a training step calls: the model, wrapped for data parallelism or compiled
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    generator: torch.Generator  # the epochs' order (and, in one process, the augmentation): checkpointed
    parity: torch.Tensor | None  # each image's side for alternating flips
    local_batch: int  # this process's share of a batch
    epochs: int  # as focus_plan sets them
    focus_size: int  # images in each epoch after the first
    total_steps: int

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)

    @property
    def ema_model(self) -> Classifier | None:
        return self.ema.model if self.ema is not None else None

    @property
    def eval_model(self) -> Classifier:
        """The model that is validated and saved: the weights' moving average where there is one."""
        return self.ema.model if self.ema is not None else self.model


def start_loop(cfg: TrainConfig, adapt: bool) -> Loop:
    """Start the processes, load the data onto the device and build the network, its optimizer and EMA. ``adapt``
    lets the network follow the device's precision (a resumed run keeps the one its checkpoint holds)."""
    ranks, device = distributed.start(resolve_device(cfg.device))
    if not ranks.main:
        cfg = dataclasses.replace(cfg, progress=False)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)  # the epoch's order: the same in every process

    cfg, splits = runs.prepare_data(cfg)
    amp_dtype = autocast_dtype(cfg, device)
    if adapt:
        cfg = adapt_to_precision(cfg, bf16=amp_dtype is not None)
    if cfg.progress and cfg.recipe_note:
        print(f"recipe: {cfg.recipe_note}")
    train_x = splits.train_images.to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(cfg, splits).to(device).to(memory_format=memory_format)
    optimizer = make_optimizer(cfg, model)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    # DDP averages gradients; batch-norm statistics are averaged once an epoch instead (average_buffers).
    step_fn = DistributedDataParallel(model, forward_sync_buffers=False) if ranks.distributed else model
    step_fn = torch.compile(step_fn) if cfg.compile else step_fn
    if cfg.amp and amp_dtype is None and cfg.progress:
        print(f"amp: this {device.type} has no native bf16, so training stays in fp32")

    full_steps = len(train_x) // cfg.batch_size
    if full_steps == 0:
        raise MnistkitError(f"batch_size {cfg.batch_size} exceeds the {len(train_x)} training images")
    epochs, focus_size = focus_plan(len(train_x), cfg.batch_size, cfg.epochs, cfg.focus_fraction)
    return Loop(cfg=cfg, ranks=ranks, device=device, splits=splits, train_x=train_x,
                train_y=splits.train_labels.to(device), model=model, step_fn=step_fn, optimizer=optimizer, ema=ema,
                amp_dtype=amp_dtype, memory_format=memory_format, generator=generator,
                parity=flip_parity(cfg.augment, len(train_x), cfg.seed, device),
                local_batch=distributed.local_batch(cfg.batch_size, ranks), epochs=epochs, focus_size=focus_size,
                total_steps=full_steps + (epochs - 1) * (focus_size // cfg.batch_size))


@dataclasses.dataclass
class EpochSteps:
    """What an epoch's optimizer steps did: how many ran, and each one's loss and accuracy (all processes')."""

    done: int
    planned: int  # the steps of a whole epoch: more than ``done`` where a time budget ended it
    loss: torch.Tensor  # (done,) on the CPU
    accuracy: torch.Tensor


def train_epoch(loop: Loop, state: dict, epoch: int, budget: float, last_loss: torch.Tensor | None) -> EpochSteps:
    """One epoch of optimizer steps, the hot loop: shuffle, slice a batch, augment it whole, step, average the
    weights. Stops early where ``budget`` seconds of training are spent. Advances ``state``'s step count and
    training seconds, and, where epochs focus on the hard images, each trained image's ``last_loss``."""
    cfg, ranks, device, batch = loop.cfg, loop.ranks, loop.device, loop.local_batch
    epoch_start = time.perf_counter()
    first_step = state["step"]
    loop.model.train()
    if last_loss is None or epoch == 1:
        order = torch.randperm(len(loop.train_x), device=device, generator=loop.generator)
    else:
        order = focused_order(last_loss, loop.focus_size, loop.generator)
    steps_per_epoch = len(order) // cfg.batch_size
    epoch_loss = torch.zeros_like(last_loss) if last_loss is not None else None
    # With several processes, each augments its own images: a generator of its own, seeded per epoch so
    # that resuming from a checkpoint needs no per-process state.
    augment_generator = loop.generator if not ranks.distributed else torch.Generator(device=device).manual_seed(
        cfg.seed * 1_000_003 + epoch * ranks.world + ranks.rank)
    augmenting = epoch <= loop.epochs - cfg.clean_epochs  # the last `clean_epochs` train on the images as they are
    # Per-step results stay on the device until the epoch ends: no host sync in the hot loop.
    step_loss = torch.zeros(steps_per_epoch, device=device)
    step_correct = torch.zeros(steps_per_epoch, device=device)
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{loop.epochs}", leave=False,
               disable=not cfg.progress, mininterval=0.5, unit="batch")
    for i in bar:
        elapsed = state["train_seconds"] + time.perf_counter() - epoch_start
        if budget:  # every process stops on rank 0's clock
            elapsed = distributed.clock_of_rank0(elapsed, ranks, device)
        if budget and elapsed >= budget:
            break
        progress = schedule_progress(state["step"], loop.total_steps, elapsed, budget)
        for group in loop.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, progress, epoch)
        start = i * cfg.batch_size + ranks.rank * batch  # this process's share of the global batch
        idx = order[start : start + batch]
        images = as_image_batch(loop.train_x[idx])
        flips = alternate_flips(loop.parity[idx], epoch) if loop.parity is not None else None
        if augmenting:
            images = augment_batch(images, cfg.augment, augment_generator, flips)
        images = images.contiguous(memory_format=loop.memory_format)
        labels = loop.train_y[idx]
        loss, logits, per_image = train_step(loop.step_fn, loop.optimizer, images, labels, cfg, loop.amp_dtype,
                                             per_image=epoch_loss is not None)
        if epoch_loss is not None:
            epoch_loss[idx] = per_image
        if loop.ema is not None:
            loop.ema.update(loop.model, state["step"])
        state["step"] += 1
        step_loss[i] = loss.detach()
        step_correct[i] = (logits.argmax(1) == labels).sum()
        if i % 50 == 49 or i == steps_per_epoch - 1:
            bar.set_postfix(loss=f"{step_loss[: i + 1].mean().item():.4f}",
                            acc=f"{step_correct[: i + 1].sum().item() / ((i + 1) * batch):.4f}")
    state["train_seconds"] += time.perf_counter() - epoch_start
    state["train_seconds"] = distributed.clock_of_rank0(state["train_seconds"], ranks, device)
    done = state["step"] - first_step
    if done == 0:
        return EpochSteps(0, steps_per_epoch, torch.empty(0), torch.empty(0))
    if ranks.distributed:
        distributed.average_buffers(loop.model, ranks)
        if loop.ema is not None:
            loop.ema.copy_buffers(loop.model)
    if last_loss is not None:  # each image of the epoch was trained on by one process, the others hold 0
        trained = order[: done * cfg.batch_size]
        last_loss[trained] = distributed.sum_all(epoch_loss, ranks)[trained]
    return EpochSteps(done, steps_per_epoch, loss=distributed.sum_all(step_loss[:done], ranks).cpu() / ranks.world,
                      accuracy=distributed.sum_all(step_correct[:done], ranks).cpu() / cfg.batch_size)


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          on_epoch: Callable[[dict], None] | None = None, score_test: bool = True) -> Run:
    """Train a model as ``cfg`` says (``None``: the default recipe). With ``resume``, continue the run
    saved in that directory (its config.json is used and ``cfg`` is ignored).

    ``on_epoch(row)`` is called with each epoch's metrics once they are saved, and the size of the validation
    split as ``val_images`` (a hyper-parameter search prunes from them). ``score_test=False`` never touches the
    test split (``test_accuracy`` is None)."""
    wall_start = time.perf_counter()
    loop = start_loop(config_of_run(cfg, resume), adapt=resume is None)
    cfg, ranks, splits, run_dir, eval_model = loop.cfg, loop.ranks, loop.splits, loop.run_dir, loop.eval_model
    # Each training image's loss at its last step, where epochs focus on the hard ones. The few the first epoch leaves
    # out (a last partial batch) start at 0: the random half of later epochs reaches them.
    last_loss = torch.zeros(len(loop.train_x), device=loop.device) if loop.focus_size < len(loop.train_x) else None
    budget = cfg.budget_seconds  # if set, training stops when it is spent (see schedule_progress for the lr)
    state = {"epoch": 0, "step": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "train_seconds": 0.0}
    best_state = None  # the best-validation weights, kept by every process
    if resume is not None:  # every process reads the checkpoint that the main one wrote
        state = runs.restore_checkpoint(run_dir / runs.CHECKPOINT_FILE, loop.model, loop.optimizer, loop.ema_model,
                                        loop.generator, cfg.model, extra=loop_tensors(last_loss))
        best_state = runs.load_tensors(run_dir / runs.WEIGHTS_FILE)[0]
        if ranks.main:
            runs.truncate_logs(run_dir, state["epoch"], state["step"])
        if cfg.progress:
            print(f"Resuming {run_dir} after epoch {state['epoch']} of {loop.epochs}")
    elif ranks.main:
        runs.start_logs(run_dir, cfg)

    fp32_per_image = None  # a deadline's price of scoring, where the per-epoch validation cannot give it
    for epoch in range(state["epoch"] + 1, loop.epochs + 1):
        if budget and state["train_seconds"] >= budget:
            break
        epoch_start = time.perf_counter()
        steps = train_epoch(loop, state, epoch, budget, last_loss)
        if steps.done == 0:
            break
        epoch_train = time.perf_counter() - epoch_start
        # In the training dtype: bf16 halves the time of this pass, which a time budget does not count.
        val_acc, val_loss = validate(eval_model, splits.val_images, splits.val_labels, cfg, ranks, loop.amp_dtype)
        val_seconds = time.perf_counter() - epoch_start - epoch_train
        row = {"epoch": epoch, "step": state["step"], "lr": loop.optimizer.param_groups[0]["lr"],
               "train_loss": steps.loss.mean().item(), "train_accuracy": steps.accuracy.mean().item(),
               "val_loss": val_loss, "val_accuracy": val_acc, "train_seconds": state["train_seconds"],
               "progress": schedule_progress(state["step"], loop.total_steps, state["train_seconds"], budget)}
        if cfg.test_every_epoch and score_test:
            row["test_accuracy"], row["test_loss"] = validate(eval_model, splits.test_images, splits.test_labels,
                                                              cfg, ranks)
        # A tie goes to the later epoch: a small validation split ties at its best over many epochs, the first of
        # them often at a high learning rate. On 12 small sets the last scored 4.4 points higher on held-out images on
        # average, and never lower (`python bench/selection.py`, BENCHMARKS.md).
        if val_acc >= state["best_val_accuracy"]:
            state["best_val_accuracy"], state["best_epoch"] = val_acc, epoch
            best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
            if ranks.main:
                runs.save_weights(run_dir, eval_model, cfg, splits.classes)
        state["epoch"] = epoch
        if ranks.main:
            runs.append_history(run_dir, row)
            runs.append_steps(run_dir, state["step"] - steps.done, steps.loss, steps.accuracy)
            runs.save_checkpoint(run_dir / runs.CHECKPOINT_FILE, loop.model, loop.optimizer, loop.ema_model,
                                 loop.generator, state, extra=loop_tensors(last_loss))
        if cfg.progress:
            test = f"  test acc {row['test_accuracy']:.4f}" if "test_accuracy" in row else ""
            tqdm.write(f"epoch {epoch:3d}/{loop.epochs}  train loss {row['train_loss']:.4f} acc "
                       f"{row['train_accuracy']:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}{test}  "
                       f"[{state['train_seconds']:.1f}s]")
        if on_epoch is not None:
            on_epoch({**row, "val_images": len(splits.val_images)})
        if cfg.deadline_seconds and steps.done == steps.planned:  # cut short, an epoch has spent the budget
            epoch_wall = time.perf_counter() - epoch_start
            if fp32_per_image is None and (loop.amp_dtype is not None or not len(splits.val_images)):
                sample = splits.val_images if len(splits.val_images) else splits.train_images
                fp32_per_image = fp32_seconds_per_image(eval_model, sample[:1024], cfg)  # once: scoring is fp32
            per_image = fp32_per_image or val_seconds / len(splits.val_images)
            budget = budget_for_deadline(cfg, splits, state, loop.amp_dtype is not None,
                                         time.perf_counter() - wall_start, epoch_train=epoch_train,
                                         epoch_wall=epoch_wall, per_image=per_image)
            budget = distributed.clock_of_rank0(budget, ranks, loop.device)  # every process stops at the same step
    return finish_run(loop, state, best_state, budget, wall_start, score_test)


def finish_run(loop: Loop, state: dict, best_state: dict, budget: float, wall_start: float, score_test: bool) -> Run:
    """After the last epoch: take the best-validation weights, choose TTA and the abstention threshold on
    validation, save the model, score the test split (here and only here) and write metrics.json."""
    cfg, ranks, splits, run_dir, eval_model = loop.cfg, loop.ranks, loop.splits, loop.run_dir, loop.eval_model
    if budget and state["epoch"] < loop.epochs and cfg.progress:
        print(why_training_stopped(cfg, budget, state, loop.epochs))
    eval_model.load_state_dict(best_state)
    if loop.amp_dtype is not None and len(splits.val_images):  # report the saved fp32 model's own accuracy
        state["best_val_accuracy"] = validate(eval_model, splits.val_images, splits.val_labels, cfg, ranks)[0]
    tta, val_logits = choose_tta(eval_model, splits, cfg)
    abstention = calibrate_abstention(eval_model, val_logits, cfg)  # after TTA: the threshold is for the final model
    if ranks.main:
        runs.save_weights(run_dir, eval_model, cfg, splits.classes)
    test_acc, test_loss, test_logits = score_test_split(eval_model, splits, cfg, ranks) if score_test else (None,) * 3
    metrics = {
        "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset, "epochs": state["epoch"],
        "best_epoch": state["best_epoch"], "train_seconds": round(state["train_seconds"], 3),
        "wall_seconds": round(time.perf_counter() - wall_start, 3),
        "val_accuracy": state["best_val_accuracy"], "test_accuracy": test_acc, "test_loss": test_loss,
        "parameters": count_parameters(eval_model), "macs_per_image": count_macs(eval_model),
        "device": str(loop.device), "seed": cfg.seed, "torch": torch.__version__,
        "train_dtype": str(loop.amp_dtype or torch.float32).removeprefix("torch."),
        "train_images": len(loop.train_x), "val_images": len(splits.val_images), "test_images": len(splits.test_images),
        "classes": list(splits.classes), "world_size": ranks.world, "global_batch": cfg.batch_size,
        "batch_per_process": loop.local_batch, **tta, **abstention,
    }
    if cfg.deadline_seconds:
        metrics["train_budget_seconds"] = round(budget, 3)  # the training the deadline left, as last estimated
    if ranks.main:
        atomic_write_json(run_dir / runs.METRICS_FILE, metrics)
    distributed.stop(ranks)
    if cfg.progress:
        test = f"test acc {test_acc:.4f}" if test_acc is not None else "test not scored"
        final = runs.final_val_accuracy(metrics)
        with_tta = f" ({final:.4f} with the TTA it keeps)" if final != metrics["val_accuracy"] else ""
        print(f"best epoch {state['best_epoch']}: val acc {state['best_val_accuracy']:.4f}{with_tta}, {test}  "
              f"({state['train_seconds']:.1f}s training)  -> {run_dir}")
    return Run(run_dir=run_dir, config=cfg, classes=splits.classes, metrics=metrics, model=eval_model.eval(),
               test_logits=test_logits)
