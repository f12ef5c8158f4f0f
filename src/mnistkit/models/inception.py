"""A small GoogLeNet-style network: Inception blocks between plain convolutions."""

from __future__ import annotations

import torch
from torch import nn

from mnistkit.models.registry import register_model


def conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1, 1x1-5x5, 1x1-3x3-3x3, pool-1x1) concatenated along channels."""

    def __init__(self, cin: int, b1: int, b5: int, b3: int, bpool: int):
        super().__init__()
        self.branch1 = conv_bn(cin, b1, 1)
        self.branch5 = nn.Sequential(conv_bn(cin, b5 // 2, 1), conv_bn(b5 // 2, b5, 5))
        self.branch3 = nn.Sequential(conv_bn(cin, b3 // 2, 1), conv_bn(b3 // 2, b3, 3), conv_bn(b3, b3, 3))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn(cin, bpool, 1))
        self.out_channels = b1 + b5 + b3 + bpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch5(x), self.branch3(x), self.branch_pool(x)], dim=1)


@register_model("inception", "tutorial", "small GoogLeNet-style network with two Inception blocks")
def inception(num_classes: int = 10, width: int = 16) -> nn.Module:
    w = width
    block1 = InceptionBlock(2 * w, w, w, w, w)
    block2 = InceptionBlock(block1.out_channels, 2 * w, 2 * w, 2 * w, 2 * w)
    return nn.Sequential(
        conv_bn(1, 2 * w, 3), nn.MaxPool2d(2),  # 14x14
        block1, nn.MaxPool2d(2),  # 7x7
        block2, nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(block2.out_channels, num_classes),
    )
