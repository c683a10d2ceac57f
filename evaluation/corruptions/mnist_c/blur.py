"""MNIST-C's blurs: glass blur (blur, local pixel shuffles, blur) and motion blur."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from evaluation.corruptions._ops import gaussian_kernel1d
from evaluation.corruptions.blur import motion_blur as imagemagick_motion_blur
from evaluation.corruptions.mnist_c.params import GLASS_BLUR, MOTION_BLUR


def vertical_gaussian(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur along H only (scipy's kernel radius int(4 sigma + 0.5), edges replicated).

    Why only along H: the reference calls skimage's ``gaussian(x, sigma, multichannel=True)``
    on a 2-D 28x28 digit, and skimage then takes the last axis for colour channels and gives
    it sigma 0, so MNIST-C's glass blur smooths each column and never across columns.
    """
    kernel = gaussian_kernel1d(sigma, int(4.0 * sigma + 0.5)).to(device=x.device, dtype=x.dtype)
    k = kernel.numel()
    padded = F.pad(x, (0, 0, k // 2, k // 2), mode="replicate")
    return F.conv2d(padded, kernel.view(1, 1, k, 1).expand(x.shape[1], 1, k, 1), groups=x.shape[1])


def glass_shuffle_draws(
    batch: int, side: int, max_delta: int, iterations: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The per-image random choices of the pixel shuffle, drawn on the CPU.

    Returns ``swap`` [B, iterations, n, n] bool (each visited pixel swaps with probability 1/2)
    and ``offset`` [B, iterations, n, n, 2] int64 (dy, dx), each uniform on
    {-max_delta, ..., max_delta - 1}: numpy's randint excludes its upper bound, so with
    max_delta 1 a pixel only ever swaps with itself or its upper / left / upper-left neighbour.
    The visited pixels are rows and columns side - max_delta down to max_delta + 1, so
    n = side - 2 max_delta of each.
    """
    n = side - 2 * max_delta
    swap = torch.rand((batch, iterations, n, n), generator=generator) < 0.5
    offset = torch.randint(-max_delta, max_delta, (batch, iterations, n, n, 2), generator=generator)
    return swap, offset


def glass_shuffle(x: Tensor, swap: Tensor, offset: Tensor, max_delta: int) -> Tensor:
    """Applies the reference's in-place local shuffle to every image of ``x`` [B, 1, H, W].

    Pixels are visited in reverse raster order (rows then columns from side - max_delta down
    to max_delta + 1), and a visited pixel swaps with the pixel at its drawn offset. The swaps
    are sequential (a value moved up-left can be moved again when its new position is
    visited), so the loop runs over positions and is vectorised over the batch only.
    """
    b, c, h, w = x.shape
    flat = x.reshape(b, h * w).clone()
    iterations = swap.shape[1]
    swap, offset = swap.to(x.device), offset.to(x.device)
    rows, cols = range(h - max_delta, max_delta, -1), range(w - max_delta, max_delta, -1)
    for it in range(iterations):
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                here = row * w + col
                there = (row + offset[:, it, i, j, 0]) * w + (col + offset[:, it, i, j, 1])
                there = torch.where(swap[:, it, i, j], there, here)[:, None]
                mine = flat[:, here].clone()
                flat[:, here] = flat.gather(1, there)[:, 0]
                flat.scatter_(1, there, mine[:, None])
    return flat.reshape(b, c, h, w)


def glass_blur(x: Tensor, generator: torch.Generator) -> Tensor:
    """Blur, shuffle neighbouring pixels, blur again: frosted-glass distortion.

    As in the reference the first blur is stored as 8-bit (np.uint8 truncates) before the
    shuffle, and both blurs are vertical only (see :func:`vertical_gaussian`).
    """
    sigma, max_delta, iterations = GLASS_BLUR
    blurred = torch.floor(vertical_gaussian(x, sigma).clamp(0.0, 1.0) * 255.0) / 255.0
    swap, offset = glass_shuffle_draws(x.shape[0], x.shape[-1], max_delta, iterations, generator)
    shuffled = glass_shuffle(blurred, swap, offset, max_delta)
    return vertical_gaussian(shuffled, sigma).clamp(0.0, 1.0)


def motion_blur(x: Tensor, generator: torch.Generator) -> Tensor:
    """ImageMagick's motion blur with radius 10 and sigma 3 along an angle ~ U(-45, 45) degrees
    drawn per image (the ImageNet-C re-implementation, at MNIST-C's constants)."""
    return imagemagick_motion_blur(x, MOTION_BLUR, generator)
