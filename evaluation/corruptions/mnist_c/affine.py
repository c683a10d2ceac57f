"""MNIST-C's affine corruptions: shear, scale, rotate and translate, as one batched warp.

The reference builds a skimage ``AffineTransform`` and calls ``transform.warp(x,
inverse_map=aff)``: output pixel (col, row) takes the input's bilinear sample at
``A @ (col, row) + t``, zero outside the image. For shear, scale and rotate, t keeps the image
centre (13.5, 13.5) fixed. Here every image gets its own 2x3 matrix (the random signs are per
image) and one ``grid_sample`` call does the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from evaluation.corruptions.mnist_c.params import CENTRE, ROTATE, SCALE, SHEAR, TRANSLATE


def random_signs(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """+1 or -1 with equal chance (numpy's ``random.choice([-1, 1])``), float64 on the CPU."""
    return torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2.0 - 1.0


def centred(linear: Tensor) -> Tensor:
    """[B, 2, 3] inverse maps from [B, 2, 2] linear parts, translated to fix the centre.

    Same as the reference's a3 = 13.5 (1 - a1 - a2), b3 = 13.5 (1 - b1 - b2).
    """
    shift = CENTRE * (1.0 - linear.sum(dim=2, keepdim=True))
    return torch.cat([linear, shift], dim=2)


def warp(x: Tensor, inverse_maps: Tensor) -> Tensor:
    """Bilinear samples of [B, C, H, W] ``x`` at ``inverse_maps`` [B, 2, 3] @ (col, row, 1).

    Pixel centres sit at integer coordinates and samples between a pixel and the outside mix
    with zero, as skimage's order-1 warp with mode 'constant' (``align_corners=True`` and zero
    padding). The grid is built in float64 so integer shifts land exactly on pixels.
    """
    b, _, h, w = x.shape
    rows = torch.arange(h, dtype=torch.float64)
    cols = torch.arange(w, dtype=torch.float64)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    points = torch.stack([grid_c, grid_r, torch.ones_like(grid_c)], dim=-1)  # [H, W, 3]
    source = torch.einsum("bij,hwj->bhwi", inverse_maps.to(torch.float64), points)
    scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], dtype=torch.float64)
    grid = (source * scale - 1.0).to(device=x.device, dtype=x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def shear_maps(signs: Tensor) -> Tensor:
    """skimage's AffineTransform(shear=s): [[1, -sin s], [0, cos s]], s = sign * 0.4 rad."""
    s = signs * SHEAR
    linear = torch.zeros(s.shape[0], 2, 2, dtype=torch.float64)
    linear[:, 0, 0] = 1.0
    linear[:, 0, 1] = -torch.sin(s)
    linear[:, 1, 1] = torch.cos(s)
    return centred(linear)


def rotate_maps(signs: Tensor) -> Tensor:
    """skimage's AffineTransform(rotation=r): [[cos r, -sin r], [sin r, cos r]], r = +-0.4."""
    r = signs * ROTATE
    cos, sin = torch.cos(r), torch.sin(r)
    linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], dim=1)
    return centred(linear)


def shear(x: Tensor, generator: torch.Generator) -> Tensor:
    """Horizontal shear by an angle of 0.4 rad, its direction drawn per image."""
    return warp(x, shear_maps(random_signs((x.shape[0],), generator))).clamp(0.0, 1.0)


def rotate(x: Tensor, generator: torch.Generator) -> Tensor:
    """Rotation by 0.4 rad (22.9 degrees) about the centre, its direction drawn per image."""
    return warp(x, rotate_maps(random_signs((x.shape[0],), generator))).clamp(0.0, 1.0)


def scale(x: Tensor, generator: torch.Generator) -> Tensor:
    """Shrinks the digit to 70% about the centre (inverse-map scale 1/0.7). Deterministic."""
    del generator
    linear = torch.eye(2, dtype=torch.float64).expand(x.shape[0], 2, 2) * SCALE
    return warp(x, centred(linear)).clamp(0.0, 1.0)


def translate(x: Tensor, generator: torch.Generator) -> Tensor:
    """Shifts the digit by 3 pixels along each axis, both signs drawn per image (4 cases).

    The inverse map samples (col + dx, row + dy), so the content moves by (-dx, -dy); the
    vacated border is black.
    """
    offsets = random_signs((x.shape[0], 2), generator) * TRANSLATE  # (dx, dy)
    maps = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
    maps[:, 0, 0] = maps[:, 1, 1] = 1.0
    maps[:, :, 2] = offsets
    return warp(x, maps).clamp(0.0, 1.0)


__all__ = ["random_signs", "rotate", "scale", "shear", "translate", "warp"]
