"""Small batched tensor helpers shared by the corruption modules (padding, convolution, noise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pad2d(x: Tensor, pad_h: int, pad_w: int, mode: str) -> Tensor:
    """Pads H by ``pad_h`` and W by ``pad_w`` on both sides.

    ``mode`` is a torch padding mode. 'reflect' (OpenCV's BORDER_REFLECT_101) needs the pad to be
    smaller than the side, so tiny images fall back to 'replicate' instead of failing.
    """
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "reflect" and (pad_h >= x.shape[-2] or pad_w >= x.shape[-1]):
        mode = "replicate"
    return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=mode)


def depthwise_conv2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Same-size correlation of every channel of [B,C,H,W] ``x`` with one odd-sized 2-D kernel."""
    kh, kw = kernel.shape
    channels = x.shape[1]
    weight = kernel.to(device=x.device, dtype=x.dtype).expand(channels, 1, kh, kw)
    return F.conv2d(pad2d(x, kh // 2, kw // 2, mode), weight, groups=channels)


def separable_conv2d(x: Tensor, kernel1d: Tensor, mode: str) -> Tensor:
    """Same-size filtering with the outer product of an odd 1-D kernel with itself (two passes)."""
    k = kernel1d.numel()
    channels = x.shape[1]
    weight = kernel1d.to(device=x.device, dtype=x.dtype)
    rows = weight.view(1, 1, 1, k).expand(channels, 1, 1, k)
    cols = weight.view(1, 1, k, 1).expand(channels, 1, k, 1)
    x = F.conv2d(pad2d(x, 0, k // 2, mode), rows, groups=channels)
    return F.conv2d(pad2d(x, k // 2, 0, mode), cols, groups=channels)


def gaussian_kernel1d(sigma: float, radius: int) -> Tensor:
    """Normalised sampled gaussian exp(-t^2 / (2 sigma^2)) for t in [-radius, radius] (float64)."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2.0 * sigma * sigma))
    return k / k.sum()


def cpu_randn(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
    """N(0, 1) drawn on CPU from ``generator`` (device-independent results), moved to ``like``."""
    z = torch.randn(shape, generator=generator, dtype=torch.float32)
    return z.to(device=like.device, dtype=like.dtype)
