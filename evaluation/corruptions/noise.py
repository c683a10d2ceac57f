"""Noise corruptions: gaussian, shot (poisson), impulse (salt & pepper) and speckle noise.

All random numbers come from the CPU ``generator`` passed in and are then moved to the image's
device, so a seed gives the same corruption on CPU and GPU. Noise is independent per pixel and
per channel, as in the reference (numpy / skimage draw one value per array element).
"""

from __future__ import annotations

import torch
from torch import Tensor

from evaluation.corruptions._ops import cpu_randn


def gaussian_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """x + N(0, std^2), clipped: sensor read noise, the same for dark and bright pixels."""
    return (x + std * cpu_randn(x.shape, generator, x)).clamp(0.0, 1.0)


def shot_noise(x: Tensor, scale: float, generator: torch.Generator) -> Tensor:
    """poisson(x * scale) / scale, clipped: photon counting noise, larger in bright regions.

    torch.poisson only accepts a CPU generator for CPU rates, so the rates go to the CPU and the
    counts come back; the cost is one device round trip.
    """
    rates = (x.detach().to(device="cpu", dtype=torch.float64) * scale).clamp_min(0.0)
    counts = torch.poisson(rates, generator=generator)
    return (counts / scale).to(device=x.device, dtype=x.dtype).clamp(0.0, 1.0)


def impulse_noise(x: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Salt & pepper: a fraction ``amount`` of the values becomes 0 or 1 with equal chance.

    Mirrors skimage.util.random_noise(mode='s&p', salt_vs_pepper=0.5): one flip decision and one
    salt-or-pepper decision per array element (so channels are hit independently).
    """
    flip = torch.rand(x.shape, generator=generator) < amount
    salt = torch.rand(x.shape, generator=generator) < 0.5
    flip = flip.to(x.device)
    salt = salt.to(x.device)
    out = torch.where(flip & salt, torch.ones_like(x), x)
    return torch.where(flip & ~salt, torch.zeros_like(x), out)


def speckle_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """x + x * N(0, std^2), clipped: multiplicative noise that scales with intensity."""
    return (x + x * std * cpu_randn(x.shape, generator, x)).clamp(0.0, 1.0)
