"""Training configuration: one dataclass, serialisable to and from JSON, built from named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mnistkit.data.augment import AugmentConfig
from mnistkit.errors import MnistkitError, UnknownNameError

OPTIMIZERS = ("sgd", "adam", "adamw")
COMPARE_MODELS = ("mlp", "lenet", "cnn-16-32", "cnn-32-64", "inception", "resnet", "mknet-s")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved as config.json in the run directory."""

    model: str = "mknet-s"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_size: int = 5000
    val_seed: int = 0  # fixed, so every run and every seed selects on the same validation images
    normalize: bool = True  # False: feed [0, 1] pixels as some tutorials do

    epochs: int = 15  # with budget_seconds, the most epochs to run
    budget_seconds: float = 0.0  # > 0: train for this many seconds, the lr schedule following the clock
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ema_decay: float = 0.0  # 0 disables the exponential moving average of weights

    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    compile: bool = False
    amp: bool = False  # bf16/fp16 autocast on CUDA; ignored on CPU, where it does not help
    eval_batch_size: int = 2000
    test_every_epoch: bool = False  # report-only: test accuracy is never used for selection
    out: str | None = None
    preset: str | None = None
    report: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, found '{self.optimizer}'"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, found '{self.schedule}'"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, found '{self.device}'"),
            (self.epochs >= 1, f"epochs must be at least 1, found {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, found {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, found {self.lr}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), found {self.label_smoothing}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), found {self.ema_decay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise MnistkitError(f"config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MnistkitError(f"config: unknown fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)


AUG_LIGHT = dict(rotate_degrees=10, translate=0.1, scale=0.1)
AUG_STRONG = dict(rotate_degrees=12, translate=0.1, scale=0.12, shear_degrees=8)

# Each preset is a set of TrainConfig fields. The tutorial presets are the published recipes
# (see shared/reference/tutorial-recipes.md); the mnistkit ones were tuned on the validation split.
PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(model="mknet-s", epochs=15, batch_size=128, lr=0.1, optimizer="sgd", schedule="onecycle",
                    weight_decay=5e-4, augment=AUG_LIGHT),
    "fast": dict(model="mknet-m", epochs=1, batch_size=128, lr=0.2, optimizer="sgd", schedule="onecycle",
                 weight_decay=5e-4),
    "best": dict(model="mknet-l", epochs=30, batch_size=128, lr=0.1, optimizer="sgd", schedule="onecycle",
                 weight_decay=5e-4, label_smoothing=0.1, augment=AUG_STRONG, ema_decay=0.999),
    # Starting points for other datasets. Their files cannot be fetched on the machine mnistkit is
    # developed on, so unlike the presets above these are not yet tuned on their validation splits.
    "fashion-mnist": dict(model="mknet-m", dataset="fashion-mnist", epochs=20, batch_size=128, lr=0.1,
                          optimizer="sgd", schedule="onecycle", weight_decay=5e-4, label_smoothing=0.1,
                          augment=dict(translate=0.08, scale=0.05)),
    "quickdraw": dict(model="mknet-m", dataset="quickdraw", epochs=15, batch_size=128, lr=0.1, optimizer="sgd",
                      schedule="onecycle", weight_decay=5e-4, augment=AUG_LIGHT),
    "mlp": dict(model="mlp", epochs=10, batch_size=100, lr=1e-3, optimizer="adam", schedule="constant",
                weight_decay=0.0, normalize=True),
    "cnn-16-32": dict(model="cnn-16-32", epochs=3, batch_size=50, lr=1e-3, optimizer="adam",
                      schedule="constant", weight_decay=0.0, normalize=False),
    "lenet": dict(model="lenet", epochs=10, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.5,
                  nesterov=False, schedule="constant", weight_decay=0.0, normalize=True),
    "cnn-32-64": dict(model="cnn-32-64", epochs=5, batch_size=32, lr=1e-2, optimizer="sgd", momentum=0.0,
                      nesterov=False, schedule="constant", weight_decay=0.0, normalize=False),
    "quickdraw-cnn": dict(model="quickdraw-cnn", epochs=10, batch_size=64, lr=0.03, optimizer="sgd",
                          momentum=0.9, nesterov=False, schedule="constant", weight_decay=0.0),
    "inception": dict(model="inception", epochs=8, batch_size=128, lr=0.05, optimizer="sgd",
                      schedule="onecycle", weight_decay=5e-4),
    "resnet": dict(model="resnet", epochs=8, batch_size=128, lr=0.05, optimizer="sgd", schedule="onecycle",
                   weight_decay=5e-4),
}


def make_config(preset: str | None = "default", **overrides: Any) -> TrainConfig:
    """A TrainConfig from a named preset, with ``overrides`` (None values ignored) on top."""
    name = preset or "default"
    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["preset"] = name
    return TrainConfig.from_dict(values)
