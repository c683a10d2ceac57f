"""MNIST-C's corruptions that change pixel values in place: noise, brightness, stripe, fog and
spatter. The two noises and brightness are the ImageNet-C functions at MNIST-C's constants."""

from __future__ import annotations

import torch
from torch import Tensor

from evaluation.corruptions import noise, weather
from evaluation.corruptions._ops import gaussian_kernel1d, separable_conv2d
from evaluation.corruptions.mnist_c.params import (
    BRIGHTNESS,
    FOG,
    FOG_MAPSIZE,
    IMPULSE_NOISE_AMOUNT,
    SHOT_NOISE_SCALE,
    SPATTER,
    SPATTER_COLOUR,
    SPATTER_MASK_FLOOR,
    STRIPE_COLUMNS,
)

# Plasma maps are 256x256 float64 (0.5 MiB each): generate this many at a time.
_FRACTAL_CHUNK = 64


def shot_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """poisson(3 x) / 3, clipped: values fall on {0, 1/3, 2/3, 1}; black stays black."""
    return noise.shot_noise(x, SHOT_NOISE_SCALE, generator)


def impulse_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Salt and pepper: 17% of the pixels become 0 or 1 with equal chance."""
    return noise.impulse_noise(x, IMPULSE_NOISE_AMOUNT, generator)


def brightness(x: Tensor, generator: torch.Generator) -> Tensor:
    """HSV value + 0.5, clipped; for a gray digit (saturation 0) this is clip(x + 0.5)."""
    return weather.brightness(x, BRIGHTNESS, generator)


def stripe(x: Tensor, generator: torch.Generator) -> Tensor:
    """Inverts the 7 leftmost and 7 rightmost columns (half of the image). Deterministic."""
    del generator
    left, right = STRIPE_COLUMNS
    out = x.clone()
    out[..., :left] = 1.0 - x[..., :left]
    out[..., right:] = 1.0 - x[..., right:]
    return out


def fog_fractals(batch: int, side: int, generator: torch.Generator) -> Tensor:
    """[batch, side, side] top-left crops of 256x256 plasma fractals (wibble decay 1.4).

    The reference calls ``plasma_fractal()`` with its default map size 256 and crops 28x28,
    after normalising the whole map to [0, 1]; a crop therefore shows smooth, large-scale haze
    and spans only part of [0, 1]. Generated in chunks to bound memory, in float32: a whole
    256x256 map per digit is the suite's main cost, and float32 halves it.
    """
    _, decay = FOG
    crops = [
        weather.plasma_fractal(
            min(_FRACTAL_CHUNK, batch - start), FOG_MAPSIZE, decay, generator, torch.float32
        )[:, :side, :side]
        for start in range(0, batch, _FRACTAL_CHUNK)
    ]
    return torch.cat(crops) if crops else torch.zeros(0, side, side)


def fog_with(x: Tensor, fractals: Tensor) -> Tensor:
    """(x + 3 f) * m / (m + 3) with m each image's maximum: haze that keeps the peak value."""
    strength, _ = FOG
    f = fractals[:, None].to(device=x.device, dtype=x.dtype)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + strength * f) * peak / (peak + strength)).clamp(0.0, 1.0)


def fog(x: Tensor, generator: torch.Generator) -> Tensor:
    """Adds a plasma-fractal haze of strength 3, one fractal per image."""
    return fog_with(x, fog_fractals(x.shape[0], x.shape[-1], generator))


def spatter_with(x: Tensor, liquid: Tensor) -> Tensor:
    """Mud blobs from a noise field ``liquid`` [B, 1, H, W] (the reference's N(0.65, 0.3) draw).

    The field is smoothed (sigma 1), thresholded at 0.65, the resulting blob mask smoothed
    again (sigma 1.5) and kept where it reaches 0.8; there the digit is replaced by mud of
    value 63/255 (x (1 - m) + 63/255 m). Blurs use skimage's defaults: scipy's kernel radius
    int(4 sigma + 0.5) and edge pixels repeated.
    """
    _, _, sigma, threshold, mask_sigma = SPATTER
    liquid = liquid.to(device=x.device, dtype=x.dtype)
    smooth = separable_conv2d(liquid, gaussian_kernel1d(sigma, int(4 * sigma + 0.5)), "replicate")
    blobs = (smooth > threshold).to(x.dtype)
    radius = int(4 * mask_sigma + 0.5)
    mask = separable_conv2d(blobs, gaussian_kernel1d(mask_sigma, radius), "replicate")
    mask = torch.where(mask < SPATTER_MASK_FLOOR, torch.zeros_like(mask), mask)
    return (x * (1.0 - mask) + SPATTER_COLOUR * mask).clamp(0.0, 1.0)


def spatter(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mud spatter: gray blobs over 13% of the image on average (see :func:`spatter_with`)."""
    loc, spread, *_ = SPATTER
    liquid = loc + spread * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return spatter_with(x, liquid)
