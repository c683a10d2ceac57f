"""Fixed training-noise samplers: Gaussian (GNT) and Speckle (docs/METHOD.md).

These are the *training* noises. Test corruptions live in ``evaluation/`` and are
never used for training unless a config says so (AugMix's separation).
Every sampler maps a clean batch in [0, 1] to ``clip(noisy, 0, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# ImageNet-C's speckle severities 1..5 (Hendrycks & Dietterich 2019): Speckle training's
# levels (GNT-mult's Gaussian levels are in configs/imagenet_gnt_mult.yaml).
IMAGENET_C_SPECKLE_LEVELS = (0.15, 0.2, 0.35, 0.45, 0.6)


def _per_image_level(
    levels: Sequence[float], x: torch.Tensor, rng: torch.Generator | None
) -> torch.Tensor:
    """One level per image, uniformly from ``levels``, shaped to broadcast over x."""
    table = torch.as_tensor(tuple(levels), dtype=x.dtype, device=x.device)
    idx = torch.randint(len(table), (x.shape[0],), generator=rng, device=_noise_device(x, rng))
    return table[idx.to(x.device)].view((-1,) + (1,) * (x.dim() - 1))


def _noise_device(x: torch.Tensor, rng: torch.Generator | None) -> torch.device:
    """Draw where the seeded generator lives, else directly on the images' device."""
    return rng.device if rng is not None else x.device


def _check_levels(name: str, levels: Sequence[float]) -> tuple[float, ...]:
    levels = tuple(float(v) for v in levels)
    if not levels or any(v < 0 for v in levels):
        raise ValueError(f"{name} must be a non-empty list of values >= 0, got {levels}")
    return levels


class GaussianNoise:
    """``clip(x + N(0, sigma^2))`` with sigma fixed or drawn per image from ``sigmas``."""

    def __init__(self, sigmas: Sequence[float]) -> None:
        self.sigmas = _check_levels("sigmas", sigmas)

    def __call__(self, x: torch.Tensor, *, rng: torch.Generator | None = None) -> torch.Tensor:
        sigma = _per_image_level(self.sigmas, x, rng)
        noise = torch.randn(x.shape, generator=rng, device=_noise_device(x, rng))
        return (x + sigma * noise.to(x.device, x.dtype)).clamp(0.0, 1.0)


class SpeckleNoise:
    """``clip(x + x * n)``, ``n ~ N(0, c^2)``, with c drawn per image from ``levels``."""

    def __init__(self, levels: Sequence[float] = IMAGENET_C_SPECKLE_LEVELS) -> None:
        self.levels = _check_levels("speckle_levels", levels)

    def __call__(self, x: torch.Tensor, *, rng: torch.Generator | None = None) -> torch.Tensor:
        c = _per_image_level(self.levels, x, rng)
        noise = torch.randn(x.shape, generator=rng, device=_noise_device(x, rng))
        return (x + x * c * noise.to(x.device, x.dtype)).clamp(0.0, 1.0)
