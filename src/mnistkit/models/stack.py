"""A plain stack of unpadded convolutions without pooling, after the simple CNNs of An et al. (2020).

Each 5x5 convolution shrinks the map by four pixels (28 -> 24 -> ... -> 8) instead of halving it, so every
layer still sees stroke-level detail, and the linear head reads an 8x8 map position by position. It costs
about three times `mknet-l`'s arithmetic per image; the paper trains wider versions (32-160 channels) for
150 epochs, this one is sized for a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mnistkit.models.registry import register_model

IMAGE_SIZE = 28


def conv_stack(num_classes: int = 10, widths: Sequence[int] = (16, 32, 48, 64, 80), kernel: int = 5,
               dropout: float = 0.1) -> nn.Sequential:
    """Unpadded ``kernel`` x ``kernel`` conv -> BN -> ReLU per width, then dropout and a linear head."""
    size = IMAGE_SIZE - len(widths) * (kernel - 1)
    if size < 1:
        raise ValueError(f"{len(widths)} unpadded {kernel}x{kernel} convs shrink a {IMAGE_SIZE}x{IMAGE_SIZE} image "
                         f"to nothing; use fewer layers or a smaller kernel")
    layers: list[nn.Module] = []
    cin = 1
    for width in widths:
        layers += [nn.Conv2d(cin, width, kernel, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * size * size, num_classes)]
    return nn.Sequential(*layers)


@register_model("convstack", "mnistkit", "five unpadded 5x5 convs, no pooling (16-80 channels), after An et al. 2020")
def convstack(num_classes: int = 10, **kwargs) -> nn.Module:
    return conv_stack(num_classes, **kwargs)
