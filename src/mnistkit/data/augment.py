"""Whole-batch augmentation on the training device: per-image random transforms, no Python loop.

Each image gets its own rotation, scale, shear and translation, composed into a 2x3 matrix and applied
to the whole batch with a single ``affine_grid`` + ``grid_sample``. Optional elastic distortion
(Simard et al., 2003) adds a smoothed random displacement field to the same sampling grid. A
horizontal flip is a sign in the same matrix. Stroke width varies by blending each image with its 3x3
max- or min-pool. Random erasing (Zhong et al., 2017) blanks one random rectangle per image with a mask
built from broadcast comparisons.

Flips suit data whose mirror image belongs to the same class (clothes, most objects), not digits or
characters; which datasets get them is decided on validation (see `mnistkit.config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnistkit.errors import MnistkitError


@dataclass
class AugmentConfig:
    """Ranges of the random affine warp. All zeros means no augmentation."""

    rotate_degrees: float = 0.0
    translate: float = 0.0  # fraction of the image size, in each direction
    scale: float = 0.0  # relative, e.g. 0.1 gives factors in [0.9, 1.1]
    shear_degrees: float = 0.0
    elastic_alpha: float = 0.0  # displacement strength in pixels; 0 turns elastic off
    elastic_sigma: float = 4.0  # smoothness of the displacement field in pixels
    hflip: float = 0.0  # probability of mirroring an image left-right
    # Mirror each image on every other epoch instead of by a fresh coin each time (Jordan, 2024,
    # "94% on CIFAR-10 in 3.29 seconds"): any two epochs in a row show it both ways, where coins show a
    # quarter of the images the same way twice. The train loop passes the pattern (see `alternate_flips`).
    # Has no effect with hflip=0.
    hflip_alternate: bool = False
    erase: float = 0.0  # probability of blanking one random rectangle (random erasing / cutout)
    erase_max_area: float = 0.3  # the largest rectangle, as a fraction of the image (the smallest is 2%)
    # Up to this share of the way to a one-pixel thicker (or thinner) stroke, per image: a 3x3 grey dilation
    # (erosion) blended with the image. Pen width is a main way handwriting varies that a warp does not change.
    stroke_width: float = 0.0
    # Round each translation to whole pixels: with no rotation, scale or shear the warp is then an exact
    # crop, without the blur of sampling between pixels, which test images never have.
    whole_pixel_shifts: bool = False

    @property
    def warps(self) -> bool:
        return any((self.rotate_degrees, self.translate, self.scale, self.shear_degrees, self.elastic_alpha, self.hflip))

    @property
    def enabled(self) -> bool:
        return self.warps or self.erase > 0 or self.stroke_width > 0

    def __post_init__(self) -> None:
        if self.hflip_alternate and self.hflip not in (0, 0.5):  # with hflip=0 there is nothing to alternate
            raise MnistkitError(f"config: augment.hflip_alternate mirrors half the images each epoch: it needs "
                                f"hflip=0.5 (or 0, no flips), found hflip={self.hflip}")


def uniform(n: int, bound: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * bound


def flip_parity(cfg: AugmentConfig, n: int, seed: int, device) -> torch.Tensor | None:
    """Each of ``n`` training images' random, fixed side (bool) for `alternate_flips`, or None where ``cfg``
    does not alternate flips. Drawn from the seed alone, not from the training generator, so a resumed run
    alternates as the first one did."""
    if not (cfg.hflip_alternate and cfg.hflip):
        return None
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def alternate_flips(parity: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images to mirror in ``epoch``, given each image's fixed random ``parity`` (bool): those
    whose parity differs from the epoch's, so each image alternates."""
    return parity ^ bool(epoch % 2)


def random_affine_matrices(n: int, cfg: AugmentConfig, generator: torch.Generator, device,
                           size: tuple[int, int], flips: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates in [-1, 1] units, for images of ``size``
    (height, width) pixels. ``flips`` (n bools) says which to mirror, instead of a coin with
    probability ``cfg.hflip``."""
    angle = uniform(n, math.radians(cfg.rotate_degrees), generator, device)
    shear = uniform(n, math.radians(cfg.shear_degrees), generator, device)
    scale = 1 + uniform(n, cfg.scale, generator, device)
    shift = uniform(2 * n, 2 * cfg.translate, generator, device).view(n, 2)
    if cfg.whole_pixel_shifts:  # one pixel is 2 / width grid units across and 2 / height down
        pixel = torch.tensor([2 / size[1], 2 / size[0]], device=device)
        shift = torch.round(shift / pixel) * pixel
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # Inverse map: sampling the input at A @ out + b shows the input rotated by -angle and scaled by 1/scale.
    theta = torch.empty(n, 2, 3, device=device)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (-sin + cos * tan) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = (cos + sin * tan) / scale
    theta[:, :, 2] = shift
    if cfg.hflip:  # mirroring the output's x coordinate mirrors the picture
        flip = flips if flips is not None else torch.rand(n, generator=generator, device=device) < cfg.hflip
        theta[:, :, 0] = torch.where(flip[:, None], -theta[:, :, 0], theta[:, :, 0])
    return theta


def gaussian_kernel1d(sigma: float, device) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def elastic_displacement(n: int, size: int, cfg: AugmentConfig, generator, device) -> torch.Tensor:
    """(n, size, size, 2) smooth random displacements in [-1, 1] grid units."""
    field = torch.rand(n * 2, 1, size, size, generator=generator, device=device) * 2 - 1
    k = gaussian_kernel1d(cfg.elastic_sigma, device)
    pad = len(k) // 2
    field = F.conv2d(F.pad(field, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))
    field = field / field.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (field.view(n, 2, size, size).permute(0, 2, 3, 1)) * (cfg.elastic_alpha * 2 / size)


def random_erase(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Set one random rectangle of each chosen image to 0 (background), all images at once."""
    n, _, h, w = images.shape
    device = images.device
    rand = lambda: torch.rand(n, generator=generator, device=device)  # noqa: E731
    area = (0.02 + rand() * (cfg.erase_max_area - 0.02)) * h * w
    aspect = torch.exp(math.log(0.3) + rand() * (math.log(3.3) - math.log(0.3)))
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    top = rand() * (h - eh)
    left = rand() * (w - ew)
    chosen = rand() < cfg.erase
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)) & chosen.view(n, 1, 1))
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def vary_stroke_width(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Thicken or thin each image's strokes by its own random amount in [-stroke_width, stroke_width]."""
    amount = uniform(images.shape[0], cfg.stroke_width, generator, images.device).view(-1, 1, 1, 1)
    thicker = F.max_pool2d(images, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-images, 3, stride=1, padding=1)
    return images + amount.clamp_min(0) * (thicker - images) + (-amount).clamp_min(0) * (thinner - images)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                  flips: torch.Tensor | None = None) -> torch.Tensor:
    """Warp a float batch (N, 1, H, W) with per-image random transforms; background stays at 0.
    ``flips`` (N bools), if given, says which images to mirror (see `alternate_flips`)."""
    if cfg.warps:
        n, _, h, w = images.shape
        theta = random_affine_matrices(n, cfg, generator, images.device, (h, w), flips)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        if cfg.elastic_alpha:
            grid = grid + elastic_displacement(n, h, cfg, generator, images.device)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.stroke_width > 0:
        images = vary_stroke_width(images, cfg, generator)
    if cfg.erase > 0:
        images = random_erase(images, cfg, generator)
    return images
