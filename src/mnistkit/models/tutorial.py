"""The networks of the classic PyTorch MNIST tutorials, layer for layer as published.

The matching training recipes, with their published hyperparameters, are the presets of the same
names in ``mnistkit.config.PRESETS``; README.md lists each with its published accuracy.
"""

from __future__ import annotations

from torch import nn

from mnistkit.models.registry import register_model


@register_model("mlp", "tutorial", "fully connected 784-512-256-10 baseline on flattened pixels")
def mlp(num_classes: int = 10, hidden: tuple[int, ...] = (512, 256), dropout: float = 0.2) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("cnn-16-32", "tutorial", "two 5x5 conv layers (16, 32 channels, padded) and one linear layer")
def cnn_16_32(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, num_classes),
    )


@register_model("lenet", "tutorial", "LeNet-style: conv 10, conv 20 (5x5), linear 320-50-10")
def lenet(num_classes: int = 10) -> nn.Module:
    # As published: no activation between the two linear layers.
    return nn.Sequential(
        nn.Conv2d(1, 10, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(10, 20, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(320, 50), nn.Linear(50, num_classes),
    )


@register_model("cnn-32-64", "tutorial", "two 3x3 conv layers (32, 64 channels), linear 1600-64-10")
def cnn_32_64(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes),
    )


@register_model("quickdraw-cnn", "tutorial", "QuickDraw doodle CNN: conv 24, conv 24 (5x5), linear 384-50-10")
def quickdraw_cnn(num_classes: int = 10) -> nn.Module:
    # The tutorial ends in log-softmax + NLL loss; we return logits and train with cross-entropy,
    # which is the same loss computed in one numerically stable step.
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(24, 24, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(24 * 4 * 4, 50), nn.ReLU(inplace=True), nn.Linear(50, num_classes),
    )
