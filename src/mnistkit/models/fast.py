"""mnistkit's own networks, designed for throughput on small CPUs as much as for accuracy.

Each stage is conv -> max-pool -> batch-norm -> ReLU: pooling before the normalisation and the
activation means those run on a quarter of the pixels, which on a 2-core CPU roughly doubles
inference speed over the usual conv -> BN -> ReLU -> pool order at the same accuracy.

The `stride` stem goes further for training speed: a 4x4 stride-2 convolution replaces the first
conv + max-pool, so nothing runs at full resolution but one cheap convolution, and max-pool's
backward pass (a full-resolution buffer to zero and scatter into) disappears from the first stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mnistkit.models.registry import register_model


class ConvBeforeFloorPool(nn.Conv2d):
    """A stride-1 "same" convolution of an odd-sized map whose output a 2x2 max-pool in floor mode reads. That pool
    never reads the last row or column, so they are not computed: the zero padding after them shrinks by one. On the
    7x7 maps of mknet's last stage that skips 13 of 49 outputs, 27% of that conv's arithmetic. Same weights and
    the same pooled result as ``nn.Conv2d(padding=kernel // 2)`` (checkpoints load into either)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__(cin, cout, kernel, padding=0, bias=False)
        before = kernel // 2
        self.pads = (before, before - 1, before, before - 1)  # left, right, top, bottom: fixed, so exports see constants

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The value spelled out: an exported Pad then carries it, and onnxruntime folds such a pad into the conv.
        return super().forward(F.pad(x, self.pads, value=0.0))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}"


def conv_pool_bn(cin: int, cout: int, size: int, kernel: int = 3) -> list[nn.Module]:
    """conv -> 2x2 max-pool -> BN -> ReLU on a ``size`` x ``size`` map."""
    conv = (ConvBeforeFloorPool(cin, cout, kernel) if size % 2
            else nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False))
    return [conv, nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def strided_stem(cout: int) -> list[nn.Module]:
    return [nn.Conv2d(1, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


STEMS = ("pool", "stride")


class Deskew(nn.Module):
    """Straighten each image's slant and centre its ink, from the image's own second moments (the classic MNIST
    deskewing, as a batched shear), so that the network behind it sees upright strokes. Under `best`'s recipe it
    scored lower on validation and added no diversity to an ensemble (BENCHMARKS.md, 2026-12-07)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ink = (x - x.amin(dim=(2, 3), keepdim=True)).float()[:, 0]  # (n, h, w), 0 at the background
        total = ink.sum(dim=(1, 2)).clamp_min(1e-6)[:, None]  # (n, 1)
        ys = (torch.arange(h, device=x.device, dtype=torch.float32) * 2 + 1) / h - 1  # pixel centres in [-1, 1]
        xs = (torch.arange(w, device=x.device, dtype=torch.float32) * 2 + 1) / w - 1
        rows, cols = ink.sum(2), ink.sum(1)  # (n, h), (n, w)
        cy = (rows * ys).sum(1, keepdim=True) / total
        cx = (cols * xs).sum(1, keepdim=True) / total
        dy, dx = ys - cy, xs - cx  # (n, h), (n, w)
        var_y = (rows * dy**2).sum(1, keepdim=True) / total
        cov = torch.einsum("nhw,nh,nw->n", ink, dy, dx)[:, None] / total
        skew = (cov / var_y.clamp_min(1e-6)).clamp(-1, 1)
        # Output (x, y) samples the input at (x + skew * y + cx, y + cy): slant sheared away, ink centred. The grid
        # is written out rather than made by affine_grid, which ONNX opset 17 lacks.
        sample_x = xs.view(1, 1, w) + (skew * ys).view(n, h, 1) + cx.view(n, 1, 1)
        sample_y = (ys.view(1, h) + cy).view(n, h, 1).expand(n, h, w)
        grid = torch.stack([sample_x, sample_y], dim=3)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)


class Residual(nn.Sequential):
    """``x + layers(x)``: the extra convs of a stage as one residual block, as in the ResNet-9 of fast CIFAR
    training, so a deep stage starts near the identity."""

    def forward(self, x):
        return x + super().forward(x)


def mknet(num_classes: int = 10, widths: tuple[int, ...] = (8, 24, 48), extra_convs: int | Sequence[int] = 0,
          dropout: float = 0.0, stem: str = "pool", full_res_convs: int = 0,
          residual: bool = False, deskew: bool = False, stage_dropout: float = 0.0) -> nn.Sequential:
    """Three stages that halve the resolution (28 -> 14 -> 7 -> 3), optional extra 3x3 convs after each
    (one count for all stages, or one per stage), a linear head. The first stage is conv + max-pool
    (``stem="pool"``) or a strided conv (``"stride"``); ``full_res_convs`` runs that many conv + BN + ReLU
    layers at full resolution before the first pool, for data whose detail a single conv misses; ``residual``
    wraps each stage's extra convs in a skip connection; ``deskew`` puts a `Deskew` layer first; ``stage_dropout``
    adds a dropout layer after each stage (0.2 under `best` tied on validation over three seeds, BENCHMARKS.md)."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, found '{stem}'")
    extras = [extra_convs] * len(widths) if isinstance(extra_convs, int) else list(extra_convs)
    if len(extras) != len(widths):
        raise ValueError(f"extra_convs must be one count or one per stage ({len(widths)}), found {extra_convs}")
    if full_res_convs and stem == "stride":
        raise ValueError("full_res_convs needs stem='pool': the strided stem has no full-resolution stage")
    layers: list[nn.Module] = [Deskew()] if deskew else []
    cin, size = 1, 28
    for _ in range(full_res_convs):
        layers += [nn.Conv2d(cin, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        cin = widths[0]
    for i, (w, extra) in enumerate(zip(widths, extras)):
        layers += strided_stem(w) if (i == 0 and stem == "stride") else conv_pool_bn(cin, w, size)
        size //= 2
        extra_layers = [layer for _ in range(extra) for layer in conv_bn(w, w)]
        layers += [Residual(*extra_layers)] if (residual and extra_layers) else extra_layers
        if stage_dropout:
            layers.append(nn.Dropout(stage_dropout))
        cin = w
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * size * size, num_classes)]
    return nn.Sequential(*layers)


@register_model("mknet-s", "mnistkit",
                "mnistkit's small CNN (8/24/48 channels), fastest at inference: the `default` and `fast` presets")
def mknet_s(num_classes: int = 10, **kwargs) -> nn.Module:
    # 8 first-layer channels, not 12: a multiple of the AVX2 vector width runs 2x faster on CPUs.
    kwargs.setdefault("widths", (8, 24, 48))
    return mknet(num_classes, **kwargs)


@register_model("mknet-xs", "mnistkit",
                "fastest to train (strided stem, 16/16/64 channels): the `fast` preset")
def mknet_xs(num_classes: int = 10, **kwargs) -> nn.Module:
    # Widths in multiples of 16, the AVX-512 vector width: 16/24/40-wide layers measured 25-35% slower per
    # epoch than 16/16/64 on this project's CPU (BENCHMARKS.md, `fast` candidates).
    kwargs.setdefault("widths", (16, 16, 64))
    kwargs.setdefault("stem", "stride")
    return mknet(num_classes, **kwargs)


@register_model("mknet-m", "mnistkit", "wider (16/32/64 channels): the `fashion-mnist` recipe's base")
def mknet_m(num_classes: int = 10, **kwargs) -> nn.Module:
    kwargs.setdefault("widths", (16, 32, 64))
    return mknet(num_classes, **kwargs)


@register_model("mknet-l", "mnistkit", "mnistkit's most accurate CNN (32/64/128, extra convs): the `best` preset")
def mknet_l(num_classes: int = 10, **kwargs) -> nn.Module:
    kwargs.setdefault("extra_convs", 1)
    kwargs.setdefault("dropout", 0.1)
    kwargs.setdefault("widths", (32, 64, 128))
    return mknet(num_classes, **kwargs)
