"""Blur corruptions: gaussian, defocus (disk) and motion blur, as batched convolutions."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from evaluation.corruptions._ops import depthwise_conv2d, gaussian_kernel1d, separable_conv2d


def gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (deterministic).

    Matches skimage.filters.gaussian as the reference calls it: scipy's kernel radius
    int(4 * sigma + 0.5) and its default border mode 'nearest' (edge pixels replicated).
    """
    del generator
    kernel = gaussian_kernel1d(sigma, int(4.0 * sigma + 0.5))
    return separable_conv2d(x, kernel, "replicate").clamp(0.0, 1.0)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The reference's anti-aliased disk: a binary disk of ``radius``, normalised, then smoothed.

    Like the reference the support is 17x17 for radius <= 8 (else 2*radius+1) and the smoothing is
    an OpenCV-style gaussian of size 3 (else 5) with sigma ``alias_blur`` and reflect-101 borders.
    Small radii (< 1) leave only the centre tap, so the smoothing gaussian does all the blurring.
    As in the reference, a disk touching the border of its array (radius 8 and 10) gains ~1%
    mass from the reflect-101 smoothing, so those kernels sum to ~1.01 (the output is clipped).
    """
    if radius <= 8:
        coords = torch.arange(-8, 9, dtype=torch.float64)
        ksize = 3
    else:
        coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
        ksize = 5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    smooth = gaussian_kernel1d(alias_blur, ksize // 2)
    return separable_conv2d(disk[None, None], smooth, "reflect")[0, 0]


def defocus_blur(x: Tensor, param: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Convolution with an anti-aliased disk (out-of-focus lens), reflect-101 borders like
    cv2.filter2D's default. ``param`` is (radius, alias_blur). Deterministic."""
    del generator
    radius, alias_blur = param
    return depthwise_conv2d(x, disk_kernel(radius, alias_blur), "reflect").clamp(0.0, 1.0)


def motion_blur(x: Tensor, param: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Motion blur along a random direction, angle ~ U(-45, 45) degrees drawn per image.

    The reference calls ImageMagick's MotionBlurImage(radius, sigma, angle) through Wand. Without
    ImageMagick this re-implements that algorithm in torch: a one-sided line kernel of
    2 * ceil(radius) + 1 taps with weights exp(-i^2 / (2 sigma^2)), i = 0.., normalised; tap i
    samples the pixel at the offset (round(i cos a), round(i sin a)) (x right, y down), rounded
    half-up to whole pixels, and out-of-image samples repeat the edge pixel (ImageMagick's default
    virtual-pixel method). Approximation: the reference additionally round-trips through an 8-bit
    PNG and ImageMagick's quantum arithmetic, which is not reproduced, so results differ from
    CIFAR-10-C / ImageNet-C files by rounding and by the random angles, not in kind.
    """
    radius, sigma = param
    b, c, h, w = x.shape
    angles = torch.rand(b, generator=generator, dtype=torch.float64) * 90.0 - 45.0
    width = 2 * math.ceil(radius) + 1
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2.0 * sigma * sigma))
    weights = (weights / weights.sum()).tolist()
    theta = torch.deg2rad(angles)[:, None]
    dx = torch.ceil(taps[None] * torch.cos(theta) - 0.5).long()  # [B, taps]
    dy = torch.ceil(taps[None] * torch.sin(theta) - 0.5).long()
    rows = (torch.arange(h)[None, None, :] + dy[:, :, None]).clamp(0, h - 1)  # [B, taps, H]
    cols = (torch.arange(w)[None, None, :] + dx[:, :, None]).clamp(0, w - 1)  # [B, taps, W]
    rows, cols = rows.to(x.device), cols.to(x.device)
    flat = x.reshape(b, c, h * w)
    out = torch.zeros_like(flat)
    for tap, weight in enumerate(weights):
        # flat source index of every output pixel for this tap, one [H, W] map per image
        index = rows[:, tap, :, None] * w + cols[:, tap, None, :]
        out += weight * flat.gather(2, index.reshape(b, 1, h * w).expand(b, c, h * w))
    return out.reshape(b, c, h, w).clamp(0.0, 1.0)
