"""Model registry in the style of timm: ``create_model(name, **kwargs)`` and ``list_models()``.

Each registered builder returns the bare network (input: normalised (N, 1, 28, 28) floats, output:
logits). ``create_model`` wraps it in :class:`Classifier`, which holds the dataset's normalisation
as buffers and its class names, so a saved model takes plain images and needs no side information.

The input convention lives here and only here: :func:`as_image_batch` turns what users hold (uint8
or float, (N, 28, 28) or (N, 1, 28, 28), tensor or NumPy) into the float batch a model takes, and
:func:`infer` runs a model over any number of images in batches. Every other module calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistkit.data.preprocess import DIGIT_FRAMING, Framing
from mnistkit.errors import MnistkitError, UnknownNameError

# Images per forward pass when scoring many. On a 2-core CPU, batches of 256 run conv nets up to 2.7x
# faster than batches of 2,000, whose activations spill out of the caches (BENCHMARKS.md, eval batch).
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    description: str
    builder: Callable[..., nn.Module]


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, family: str, description: str):
    """Decorator: register ``builder(num_classes=10, **kwargs) -> nn.Module`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = ModelEntry(name, family, description, builder)
        return builder

    return wrap


def as_image_batch(images: torch.Tensor | np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Float (N, 1, H, W) images in [0, 1] from uint8 (0..255) or float, with or without the channel axis."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if device is not None:
        x = x.to(device)
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    elif x.dtype != torch.float32:
        x = x.float()
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise MnistkitError(f"images must have shape (N, H, W) or (N, 1, H, W), found {tuple(x.shape)}")
    return x


# One-pixel shifts averaged by shift TTA: the image itself and its four neighbours.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift images (..., H, W) down ``dy`` and right ``dx`` whole pixels, filling with 0: the background of
    images in mnistkit's convention (ink is bright)."""
    if dy == 0 and dx == 0:
        return images
    p = max(abs(dy), abs(dx))
    padded = F.pad(images, (p, p, p, p))
    h, w = images.shape[-2:]
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


@contextmanager
def tta_set(model: nn.Module, **flags: bool):
    """The model with its TTA switches (``tta_hflip``, ``tta_shift``) set as given, restored afterwards."""
    saved = {name: getattr(model, name, False) for name in flags}
    for name, on in flags.items():
        setattr(model, name, on)
    try:
        yield model
    finally:
        for name, on in saved.items():
            setattr(model, name, on)


class Classifier(nn.Module):
    """A network with its input normalisation and class names: takes images (see :func:`as_image_batch`),
    returns logits."""

    def __init__(self, net: nn.Module, mean: float = 0.0, std: float = 1.0, classes: tuple[str, ...] | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.net = net
        self.classes: tuple[str, ...] = tuple(classes) if classes is not None else ()
        # In eval mode, also average the logits of the mirrored image: for data whose mirror image keeps
        # its class, when validation showed it helps (decided per run in `train`).
        self.tta_hflip = False
        # In eval mode, average the logits over the image shifted by one pixel each way (TTA_SHIFTS): also
        # decided per run on validation, where the recipe asks for it (TrainConfig.try_shift_tta).
        self.tta_shift = False
        # Inputs whose out-of-distribution score (metrics.energy_score) lies above this are answered "not a
        # <item>" (e.g. "not a digit"); chosen on validation data per run in `train`. None: never abstain.
        self.ood_threshold: float | None = None
        self.item = ""  # what one input is ("digit"); "" for data whose items have no common name
        # How the training images frame their subject (measured on them in `train`): a picture is framed this way
        # before it is scored (`predict`, `serve`, the drawing page).
        self.framing: Framing = DIGIT_FRAMING

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = as_image_batch(images)
        if self.tta_shift and not self.training:
            return sum(self.logits(shift_images(x, dy, dx)) for dy, dx in TTA_SHIFTS) / len(TTA_SHIFTS)
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        # A 1-channel tensor's memory format is ambiguous, so normalising drops channels-last; restore it
        # when the network's weights use it, or the first convolution takes a slow reordering path.
        if x.ndim == 4 and self.first_weight_channels_last():
            x = x.contiguous(memory_format=torch.channels_last)
        if self.tta_hflip and not self.training:
            return (self.net(x) + self.net(x.flip(-1))) / 2
        return self.net(x)

    def first_weight_channels_last(self) -> bool:
        for p in self.net.parameters():
            if p.ndim == 4:
                return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        return False


def list_models() -> list[ModelEntry]:
    return [_MODELS[name] for name in _MODELS]


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, list(_MODELS)) from None


def create_model(
    name: str, num_classes: int = 10, mean: float = 0.0, std: float = 1.0, classes: tuple[str, ...] | None = None,
    **kwargs,
) -> Classifier:
    """Build a registered model. ``mean``/``std`` set the input normalisation (0 and 1: none); ``classes``
    names the outputs (default: "0", "1", ...)."""
    entry = get_model_entry(name)
    if classes is not None and len(classes) != num_classes:
        num_classes = len(classes)
    try:
        net = entry.builder(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise MnistkitError(f"model '{name}': bad arguments {kwargs} ({exc})") from None
    return Classifier(net, mean=mean, std=std, classes=classes or tuple(str(i) for i in range(num_classes)))


@torch.inference_mode()
def infer(model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits of ``model`` for any number of images (any form :func:`as_image_batch` takes), in batches on
    the model's device, in eval mode; returned as float32 on the CPU. The model's mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    images = as_image_batch(images) if not isinstance(images, torch.Tensor) else images
    outputs = []
    try:
        for start in range(0, len(images), batch_size):
            batch = as_image_batch(images[start : start + batch_size].to(device, non_blocking=True))
            outputs.append(model(batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)
