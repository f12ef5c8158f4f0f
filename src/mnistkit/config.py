"""Training configuration: one dataclass whose defaults *are* the default recipe; presets are differences.

Every field can be set from Python (``TrainConfig(epochs=3)``), from a JSON file (``--config``) or from
the command line (``--set augment.rotate_degrees=5``), and all three go through the same checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistkit.data.augment import AugmentConfig
from mnistkit.data.datasets import get_dataset_spec
from mnistkit.errors import MnistkitError, UnknownNameError
from mnistkit.models import EVAL_BATCH_SIZE

OPTIMIZERS = ("sgd", "adam", "adamw")
COMPARE_MODELS = ("mlp", "lenet", "cnn-16-32", "cnn-32-64", "inception", "resnet", "mknet-s")
# Test images in a report's PCA/t-SNE panels: 200 a class shows the clusters, and two t-SNEs of 2,000
# points take 6 s on a 2-core CPU against 18 s for 5,000, the slowest part of a report.
EMBEDDING_SAMPLE = 2000
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Fields that older mnistkit versions wrote into config.json and that no longer exist.
RETIRED_FIELDS = frozenset({"report"})


def light_augmentation() -> AugmentConfig:
    return AugmentConfig(rotate_degrees=10, translate=0.1, scale=0.1)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved as config.json in the run directory.

    ``TrainConfig()`` is the `default` recipe: mknet-s, 15 epochs of one-cycle SGD with light affine
    augmentation (99.5% on MNIST in about 80 s of training on 2 CPU cores)."""

    model: str = "mknet-s"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_size: int = 5000
    val_fraction: float = 0.0  # > 0: hold out this share of the training images instead of val_size
    val_seed: int = 0  # fixed, so every run and every seed selects on the same validation images
    val_stratified: bool = False  # each class gives its share of the validation images (the generic recipe)
    normalize: bool = True  # False: feed [0, 1] pixels as some tutorials do

    epochs: int = 15  # with budget_seconds, the most epochs to run
    min_steps: int = 0  # > 0: raise epochs until the run takes at least this many optimizer steps
    max_steps: int = 0  # > 0: lower epochs until the run takes at most this many optimizer steps (large data)
    budget_seconds: float = 0.0  # > 0: train for this many seconds, the lr schedule following the clock
    # > 0: end `train` (training and the scoring after it) within this many seconds of wall time: from the first
    # epoch on, training stops early where the per-epoch validation, TTA and test passes still to come would
    # overrun, as measured on this machine (train.training_seconds_left). A slow CPU loses training, not the clock.
    deadline_seconds: float = 0.0
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_fraction: float = 0.2  # onecycle: share of steps spent rising to the peak lr
    step_every: int = 0  # step schedule: epochs between decays (0: a third of the run)
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: AugmentConfig = field(default_factory=light_augmentation)
    ema_decay: float = 0.0  # 0 disables the exponential moving average of weights
    # < 1: after a first epoch over every image, each epoch trains on this share of them, half chosen by the highest
    # loss at their last step and half at random from the rest (see train.focused_order). The run keeps the
    # optimizer steps of `epochs` full epochs, in more, shorter epochs; a time budget buys more passes over the
    # images still being got wrong.
    focus_fraction: float = 1.0
    # > 0: sharpness-aware minimisation (Foret et al., 2021): each step takes its gradient at the weights moved this far
    # (L2) uphill, which costs a second forward and backward pass per step. Off in every preset: 0.05 in `best` gained
    # +0.03 points of validation over three seeds for twice the time (BENCHMARKS.md).
    sam_rho: float = 0.0
    # > 0: the last this many of `epochs` train on unaugmented images, so the network ends on the distribution it is
    # scored on (He et al. 2019's "refined" augmentation). A time budget that ends the run sooner skips them. Off in
    # every preset: 5 in `best` left one seed's validation within noise (BENCHMARKS.md).
    clean_epochs: int = 0

    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    compile: bool = False
    amp: bool = False  # bf16 autocast for training steps and per-epoch validation, where bf16 is native (else fp32)
    # model_kwargs changes for a device that trains in fp32 although `amp` asks for bf16: there a time-budgeted
    # recipe's seconds buy fewer epochs, and a cheaper network does better (see adapt_to_precision).
    fp32_model_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = EVAL_BATCH_SIZE
    # After training, also try averaging over one-pixel shifts at inference (5x the inference cost);
    # kept only if validation accuracy rises. Mirror images are tried whenever augment.hflip > 0.
    try_shift_tta: bool = False
    test_every_epoch: bool = False  # report-only: test accuracy is never used for selection
    ood_false_rejection: float = 0.01  # share of validation images the "not a digit" threshold refuses
    out: str | None = None
    preset: str | None = field(default=None, compare=False)  # a label of where the config came from
    recipe_note: str = field(default="", compare=False)  # why this recipe, and how it adapted to the data
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**check_fields(AugmentConfig, self.augment, "augment."))
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, found '{self.optimizer}'"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, found '{self.schedule}'"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, found '{self.device}'"),
            (self.epochs >= 1, f"epochs must be at least 1, found {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, found {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, found {self.lr}"),
            (self.val_size >= 0, f"val_size must be >= 0, found {self.val_size}"),
            (0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), found {self.val_fraction}"),
            (self.min_steps >= 0, f"min_steps must be >= 0, found {self.min_steps}"),
            (self.max_steps >= 0, f"max_steps must be >= 0, found {self.max_steps}"),
            (not self.max_steps or self.max_steps >= self.min_steps,
             f"max_steps must be 0 or at least min_steps ({self.min_steps}), found {self.max_steps}"),
            (self.budget_seconds >= 0, f"budget_seconds must be >= 0, found {self.budget_seconds}"),
            (self.deadline_seconds >= 0, f"deadline_seconds must be >= 0, found {self.deadline_seconds}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), found {self.label_smoothing}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), found {self.ema_decay}"),
            (self.sam_rho >= 0, f"sam_rho must be >= 0, found {self.sam_rho}"),
            (self.clean_epochs >= 0, f"clean_epochs must be >= 0, found {self.clean_epochs}"),
            (0 < self.focus_fraction <= 1, f"focus_fraction must be in (0, 1], found {self.focus_fraction}"),
            (0 < self.warmup_fraction < 1, f"warmup_fraction must be in (0, 1), found {self.warmup_fraction}"),
            (0 < self.ood_false_rejection < 1,
             f"ood_false_rejection must be in (0, 1), found {self.ood_false_rejection}"),
        ]
        for ok, message in checks:
            if not ok:
                raise MnistkitError(f"config: {message}")
        get_dataset_spec(self.dataset).check_options(self.dataset_options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from JSON-like values, every field checked for name and type."""
        data = {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        return cls(**check_fields(cls, data))


def check_fields(cls: type, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` with each value checked against the type of the dataclass field of that name."""
    if not isinstance(data, dict):
        raise MnistkitError(f"config: {prefix.rstrip('.') or 'config'} must be a JSON object, found {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise MnistkitError(f"config: unknown fields {[prefix + k for k in unknown]}; known fields: {known}")
    return {name: check_type(prefix + name, value, hints[name]) for name, value in data.items()}


def check_type(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it fits ``hint`` (an int is accepted for a float), else a MnistkitError naming the field."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is dict and isinstance(value, dict):
            return value
        if dataclasses.is_dataclass(option) and isinstance(value, (dict, option)):
            return value
    wanted = " or ".join(getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    raise MnistkitError(f"config: {name} must be {wanted}, found {value!r} ({type(value).__name__})")


NO_AUGMENTATION = dict(rotate_degrees=0, translate=0, scale=0, shear_degrees=0, elastic_alpha=0, hflip=0, erase=0)
STRONG_AUGMENTATION = dict(rotate_degrees=12, translate=0.1, scale=0.12, shear_degrees=8)
# The published tutorial recipes train plain SGD/Adam at a constant rate on unaugmented images.
TUTORIAL = dict(schedule="constant", weight_decay=0.0, nesterov=False, augment=NO_AUGMENTATION)

# Each preset lists only where it differs from TrainConfig(). The tutorial presets are the published
# recipes of the classic PyTorch MNIST tutorials; mnistkit's were tuned on the validation split.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # One epoch of mknet-xs (strided stem): over 5 seeds as accurate on validation as mknet-s once label
    # smoothing is on, and a third faster (`python bench/fast_candidates.py`, BENCHMARKS.md).
    "fast": dict(model="mknet-xs", epochs=1, lr=0.3, label_smoothing=0.1, augment=NO_AUGMENTATION),
    "best": dict(model="mknet-l", epochs=30, amp=True, label_smoothing=0.1, augment=STRONG_AUGMENTATION, ema_decay=0.999),
    # The short Fashion-MNIST recipe, chosen on validation (`python bench/fashion.py --sweep`; BENCHMARKS.md has each
    # comparison): two extra convs per stage, whole-pixel shifts, mirror images by coin, shift TTA where validation
    # rises. 30 epochs' steps or 220 s of training, whichever ends first, and a 240 s deadline for training and scoring:
    # the whole run with its report stays inside 5 minutes on a slow 2-core CPU too, training giving way there.
    # Epochs after the first focus on the hardest half of the images (+0.55 final val over two seeds, 2026-12-05).
    "fashion-mnist": dict(model="mknet-m", model_kwargs={"extra_convs": 2}, dataset="fashion-mnist", epochs=30,
                          budget_seconds=220, deadline_seconds=240, label_smoothing=0.1, try_shift_tta=True,
                          focus_fraction=0.5,
                          augment=dict(NO_AUGMENTATION, translate=0.1, hflip=0.5, whole_pixel_shifts=True)),
    # The long Fashion-MNIST recipe: 48/96/192 channels in bf16 where the CPU has it, else 32/64/128 in fp32 (there the
    # cheaper network's extra epochs won), for 1,550 s with the lr following the clock; random erasing, EMA,
    # whole-pixel shifts, mirror and shift TTA where validation keeps them. The 1,690 s deadline keeps the run with
    # its report inside 30 minutes on a CPU too slow for the budget. Focused epochs as in the short recipe (fp32, one
    # seed: +0.18 final val, 2026-12-05). What else was tried, with numbers: BENCHMARKS.md.
    "fashion-mnist-long": dict(model="mknet-l", model_kwargs={"extra_convs": 2, "widths": [48, 96, 192]},
                               fp32_model_kwargs={"widths": [32, 64, 128]},
                               dataset="fashion-mnist", epochs=400, budget_seconds=1550, deadline_seconds=1690, amp=True,
                               label_smoothing=0.1, ema_decay=0.999, try_shift_tta=True, focus_fraction=0.5,
                               augment=dict(NO_AUGMENTATION, translate=0.1, hflip=0.5, erase=0.3,
                                            whole_pixel_shifts=True)),
    "quickdraw": dict(model="mknet-m", dataset="quickdraw"),
    # For data mnistkit was not tuned on: sizes itself to the data (see adapt_to_data) and regularises more, since a
    # small dataset overfits a recipe made for 55,000 images. Two extra convs per stage and shift TTA won on a Fashion
    # subset by a rule fixed beforehand (BENCHMARKS.md 2026-12-02; `python bench/generic.py` measures it). 30 epochs
    # where 3,000 steps take fewer: on 50,000 Fashion images, 15 left final validation 0.74 points lower over two seeds
    # (BENCHMARKS.md 2026-12-04); data under about 14,000 images trains the epochs min_steps gives it, as before.
    # Focused epochs, the same steps: on Fashion 3,000 per class +0.93 final val over two seeds (2026-12-05); where
    # min_steps raises the epochs (under ~14,000 images) adapt_to_data turns them off: pooled over five such sets
    # they tied on validation, 2,322 of 2,440 each, short of the +0.15 points a rule fixed beforehand asked.
    # A stratified validation split: on a few hundred images of imbalanced classes a random 10% can leave out a
    # small class, and epochs and TTA would be chosen without it (a method choice, not tuned on any score).
    # At most 30,000 steps (about 14 min of training on the AVX-512 host, 30 on the slower AVX2 one): only data over
    # about 128,000 training images trains fewer than 30 epochs (Kuzushiji-49: 18; EMNIST byclass: 6), still seeing
    # 2.8 times the images 30 epochs of 50,000 Fashion images see. A bound on time, not tuned on any score: no data
    # that large is here to measure it on.
    "generic": dict(model="mknet-m", model_kwargs={"extra_convs": 2}, epochs=30, val_size=0, val_fraction=0.1,
                    val_stratified=True, min_steps=3000, max_steps=30000, label_smoothing=0.1, try_shift_tta=True,
                    focus_fraction=0.5, augment=dict(erase=0.25)),
    "mlp": dict(TUTORIAL, model="mlp", epochs=10, batch_size=100, lr=1e-3, optimizer="adam"),
    "cnn-16-32": dict(TUTORIAL, model="cnn-16-32", epochs=3, batch_size=50, lr=1e-3, optimizer="adam", normalize=False),
    "lenet": dict(TUTORIAL, model="lenet", epochs=10, batch_size=64, lr=0.01, momentum=0.5),
    "cnn-32-64": dict(TUTORIAL, model="cnn-32-64", epochs=5, batch_size=32, lr=1e-2, momentum=0.0, normalize=False),
    "quickdraw-cnn": dict(TUTORIAL, model="quickdraw-cnn", epochs=10, batch_size=64, lr=0.03),
    "inception": dict(model="inception", epochs=8, lr=0.05, augment=NO_AUGMENTATION),
    "resnet": dict(model="resnet", epochs=8, lr=0.05, augment=NO_AUGMENTATION),
}


def adapt_to_data(cfg: TrainConfig, train_images: int) -> TrainConfig:
    """Resolve the data-dependent settings (``val_fraction``, ``min_steps``, ``max_steps``) for a dataset with
    ``train_images`` training images, noting each change in ``recipe_note``. Where ``min_steps`` raises the
    epochs, focused epochs are turned off (``focus_fraction`` 1). Idempotent."""
    changes: dict[str, Any] = {}
    notes = []
    val_size = cfg.val_size
    if cfg.val_fraction > 0:
        val_size = min(train_images - 1, max(1, round(cfg.val_fraction * train_images)))
        if val_size != cfg.val_size:
            changes["val_size"] = val_size
            notes.append(f"val_size {val_size} ({cfg.val_fraction:.0%} of {train_images:,} training images)")
    remaining = train_images - val_size
    batch = cfg.batch_size
    if 0 < remaining < 4 * batch:  # too few images for several steps an epoch: smaller batches, lr scaled alike
        batch = max(1, remaining // 4)
        changes.update(batch_size=batch, lr=cfg.lr * batch / cfg.batch_size)
        notes.append(f"batch_size {batch} and lr {changes['lr']:.3g} for {remaining:,} training images")
    if cfg.min_steps and remaining >= batch:
        needed = math.ceil(cfg.min_steps / (remaining // batch))
        if needed > cfg.epochs:
            changes["epochs"] = needed
            notes.append(f"epochs {cfg.epochs} -> {needed} for at least {cfg.min_steps:,} optimizer steps")
            if cfg.focus_fraction < 1:
                # Many passes over few images: the highest losses mark noise and mislabels more than hard examples.
                changes["focus_fraction"] = 1.0
                notes.append("focus_fraction 1: every image every epoch on data this small")
    epochs = changes.get("epochs", cfg.epochs)
    if cfg.max_steps and remaining >= batch and epochs * (remaining // batch) > cfg.max_steps:
        allowed = max(1, cfg.max_steps // (remaining // batch))
        changes["epochs"] = allowed
        notes.append(f"epochs {epochs} -> {allowed} for at most {cfg.max_steps:,} optimizer steps on {remaining:,} "
                     "training images")
    if not changes:
        return cfg
    note = "; ".join(filter(None, [cfg.recipe_note, "adapted to the data: " + ", ".join(notes)]))
    return dataclasses.replace(cfg, **changes, recipe_note=note)


def adapt_to_precision(cfg: TrainConfig, bf16: bool) -> TrainConfig:
    """The config with ``fp32_model_kwargs`` applied where ``cfg.amp`` asks for bf16 and the device trains in
    fp32 instead (``bf16`` False), noted in ``recipe_note``. Idempotent; a resumed run is not adapted again."""
    if not cfg.amp or bf16 or not cfg.fp32_model_kwargs:
        return cfg
    model_kwargs = merge(cfg.model_kwargs, cfg.fp32_model_kwargs)
    if model_kwargs == cfg.model_kwargs:
        return cfg
    changes = ", ".join(f"{key}={value}" for key, value in cfg.fp32_model_kwargs.items())
    why = f"no native bf16 on this device, so training is fp32 and the network cheaper for more epochs: {changes}"
    return dataclasses.replace(cfg, model_kwargs=model_kwargs, recipe_note="; ".join(filter(None, [cfg.recipe_note, why])))


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``; nested dicts (augment, model_kwargs, ...) are merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_by_hand(values: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``merge(values, change)`` for a change someone chose (a ``--set`` line, a search trial). If it sets any of
    the model_kwargs that ``fp32_model_kwargs`` would swap, the fallback is dropped whole: it is one network, and a
    network chosen by hand is never swapped, nor half-swapped, on an fp32 device."""
    out = merge(values, change)
    hand_set = change.get("model_kwargs")
    if isinstance(hand_set, dict) and set(hand_set) & set(out.get("fp32_model_kwargs") or {}):
        out["fp32_model_kwargs"] = {}
    return out


def dataset_recipe(dataset: str) -> tuple[str, dict[str, Any], str]:
    """The preset a dataset trains with when no preset is named, changes it needs, and why."""
    spec = get_dataset_spec(dataset)
    changes: dict[str, Any] = {"dataset": dataset}
    why = f"no preset given: '{spec.recipe}' is the recipe for dataset '{dataset}'"
    if spec.recipe == "generic" and spec.mirror_invariant:
        changes["augment"] = {"hflip": 0.5}
        why += " (with horizontal flips: its images keep their class when mirrored)"
    return spec.recipe, changes, why


def make_config(preset: str | None = "default", **overrides: Any) -> TrainConfig:
    """A TrainConfig from a named preset, with ``overrides`` (None values ignored) on top. With
    ``preset=None`` the dataset's own recipe is used (``dataset_recipe``)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    changes: dict[str, Any] = {}
    note = f"preset '{preset}'"
    if preset is None:
        preset, changes, note = dataset_recipe(overrides.get("dataset", PRESETS["default"].get("dataset", "mnist")))
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, list(PRESETS))
    values = merge(merge(TrainConfig().to_dict(), PRESETS[preset]), changes)
    values = merge_by_hand(values, overrides)
    values["preset"] = preset
    values["recipe_note"] = overrides.get("recipe_note") or note
    return TrainConfig.from_dict(values)


VALIDATION_FIELDS = ("val_size", "val_fraction", "val_seed", "val_stratified")


def validation_split_for(dataset: str) -> dict[str, Any]:
    """How ``dataset``'s own recipe holds out validation images, for runs of other recipes on that data (compare):
    the tutorials' presets assume MNIST's 5,000, more than a small folder of images has."""
    recipe = make_config(None, dataset=dataset)
    return {name: getattr(recipe, name) for name in VALIDATION_FIELDS}


def parse_assignment(text: str) -> dict[str, Any]:
    """``'augment.rotate_degrees=5'`` -> ``{'augment': {'rotate_degrees': 5}}``. The value is read as JSON
    when it parses (numbers, true/false, null, lists, objects) and as a plain string otherwise."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise MnistkitError(f"--set expects KEY=VALUE (e.g. lr=0.05 or augment.rotate_degrees=5), found '{text}'")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The fields in a JSON config file (a run's config.json or `mnistkit tune`'s best config)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MnistkitError(f"{path}: config file not found") from None
    except json.JSONDecodeError as exc:
        raise MnistkitError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise MnistkitError(f"{path}: a config file must hold a JSON object of TrainConfig fields")
    return data


def build_config(preset: str | None = None, config_file: str | Path | None = None,
                 options: dict[str, Any] | None = None, assignments: list[str] | None = None) -> TrainConfig:
    """The config the CLI trains: a preset, then a config file, then named options, then ``--set`` lines.

    A config file's ``out`` is ignored so that re-training from a run's config.json never writes into
    that run."""
    from_file = read_config_file(config_file) if config_file else {}
    from_file.pop("out", None)
    dataset = (options or {}).get("dataset") or from_file.get("dataset")
    values = make_config(preset or from_file.get("preset"), dataset=dataset).to_dict()
    values = merge(values, from_file)
    values = merge(values, {k: v for k, v in (options or {}).items() if v is not None})
    for line in assignments or []:
        values = merge_by_hand(values, parse_assignment(line))
    return TrainConfig.from_dict(values)
