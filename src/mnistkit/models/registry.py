"""Model registry in the style of timm: ``create_model(name, **kwargs)`` and ``list_models()``.

Each registered builder returns the bare network (input: normalised (N, 1, 28, 28) floats, output:
logits). ``create_model`` wraps it in :class:`Classifier`, which holds the dataset's normalisation
as buffers, so a saved model takes plain [0, 1] images and needs no side information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mnistkit.errors import MnistkitError, UnknownNameError


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


class Classifier(nn.Module):
    """A network with its input normalisation: takes images in [0, 1] (or uint8), returns logits."""

    def __init__(self, net: nn.Module, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        if images.ndim == 3:
            images = images.unsqueeze(1)
        x = (images - self.mean) / self.std
        # A 1-channel tensor's memory format is ambiguous, so normalising drops channels-last; restore it
        # when the network's weights use it, or the first convolution takes a slow reordering path.
        if x.ndim == 4 and self.first_weight_channels_last():
            x = x.contiguous(memory_format=torch.channels_last)
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
    name: str, num_classes: int = 10, mean: float = 0.0, std: float = 1.0, **kwargs
) -> Classifier:
    """Build a registered model. ``mean``/``std`` set the input normalisation (0 and 1: none)."""
    entry = get_model_entry(name)
    try:
        net = entry.builder(num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise MnistkitError(f"model '{name}': bad arguments {kwargs} ({exc})") from None
    return Classifier(net, mean=mean, std=std)
