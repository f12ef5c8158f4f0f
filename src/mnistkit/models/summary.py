"""Model summaries: a layer table (output shapes, parameters) and multiply-accumulates per image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    macs: int


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one layer for one image (convolutions and linear layers only)."""
    if isinstance(module, nn.Conv2d):
        per_output = (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        return int(output[0].numel() * per_output)
    if isinstance(module, nn.Linear):
        return int(module.in_features * module.out_features * (output[0].numel() // module.out_features))
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> list[LayerRow]:
    """Run one dummy image through ``model`` and record every leaf layer's output shape and cost."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if any(module.children()) or name == "":
            continue

        def hook(mod, _inputs, output, name=name):
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append(LayerRow(name, type(mod).__name__, tuple(output.shape[1:]), params, layer_macs(mod, output)))

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            device = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> int:
    return sum(r.macs for r in summarize(model, input_shape))
