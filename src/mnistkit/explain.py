"""Why the model answered as it did: attribution maps over the 28x28 input, with Captum.

Integrated Gradients (Sundararajan et al., 2017) integrates the gradient of the chosen class's logit
along the straight path from a baseline to the image. The baseline is the all-black image, which for
MNIST-style data means "no ink", so a pixel's attribution says how much its ink pushed the logit up
(positive) or down (negative), and the attributions add up to logit(image) - logit(black); the
difference between the two sides (``delta``) shows how well the integral converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mnistkit.models import Classifier, as_image_batch, infer

METHOD = "integrated-gradients"


@dataclass
class Attribution:
    maps: torch.Tensor  # (N, H, W): each pixel's contribution to the target class's logit
    targets: torch.Tensor  # (N,): the class each map explains
    delta: torch.Tensor  # (N,): sum of the map minus (logit(image) - logit(baseline)); near 0 when converged


def integrated_gradients(model: Classifier, images: torch.Tensor | np.ndarray, targets: torch.Tensor | None = None,
                         steps: int = 32) -> Attribution:
    """Attribution maps for ``images`` (any form :func:`as_image_batch` takes) towards ``targets``
    (default: the predicted class of each image), computed on the model's device in eval mode."""
    from captum.attr import IntegratedGradients

    device = next(model.parameters()).device
    x = as_image_batch(images).to(device)
    if targets is None:
        targets = infer(model, x).argmax(1)
    targets = torch.as_tensor(targets, device=device).long().reshape(-1)
    was_training = model.training
    model.eval()
    try:
        maps, delta = IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=targets, n_steps=steps, method="gausslegendre",
            internal_batch_size=max(steps, 256), return_convergence_delta=True)
    finally:
        model.train(was_training)
    return Attribution(maps=maps.detach()[:, 0].float().cpu(), targets=targets.cpu(), delta=delta.detach().cpu())
