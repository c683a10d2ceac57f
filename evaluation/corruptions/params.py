"""Per-severity constants of the CIFAR-10-C and ImageNet-C corruptions.

The numbers are the published ones of Hendrycks & Dietterich (ICLR 2019), taken from the
benchmark generation scripts in github.com/hendrycks/robustness:

- ``CIFAR_PARAMS``:    ImageNet-C/create_c/make_cifar_c.py    (32x32 images)
- ``IMAGENET_PARAMS``: ImageNet-C/create_c/make_imagenet_c.py (224x224 images)

Entry ``k - 1`` of each tuple is the parameter of severity ``k``. Only the numbers are taken
from there; the batched torch implementations live in the sibling modules. Images whose longer
side is at most ``CIFAR_MAX_SIDE`` (CIFAR-10 32x32, MNIST 28x28) use the CIFAR table, all
larger images the ImageNet table, so that a severity means a comparable strength relative to
the image size.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

SEVERITIES: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)
CIFAR_MAX_SIDE: Final[int] = 32

# Meaning of one entry, per corruption:
#   gaussian_noise   std of the additive N(0, c^2) noise
#   shot_noise       photon count scale c: poisson(x * c) / c
#   impulse_noise    salt-and-pepper amount (fraction of replaced values)
#   speckle_noise    std of the multiplicative noise: x + x * N(0, c^2)
#   gaussian_blur    sigma of the gaussian kernel (pixels)
#   defocus_blur     (disk radius, sigma of the anti-aliasing gaussian)
#   motion_blur      (ImageMagick radius, sigma)
#   fog              (fractal strength, wibble decay of the plasma fractal)
#   brightness       offset added to the HSV value channel
#   contrast         factor on the deviation from the per-channel mean
#   pixelate         downscale factor (side * c, truncated)
#   jpeg_compression JPEG quality
_CIFAR: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    "motion_blur": ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5)),
    "fog": ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}

_IMAGENET: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "motion_blur": ((10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0)),
    "fog": ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
}

CIFAR_PARAMS: Final[Mapping[str, tuple[Any, ...]]] = MappingProxyType(_CIFAR)
IMAGENET_PARAMS: Final[Mapping[str, tuple[Any, ...]]] = MappingProxyType(_IMAGENET)


def table_for(height: int, width: int) -> Mapping[str, tuple[Any, ...]]:
    """The constant table matching an image size (CIFAR up to 32 px per side, else ImageNet)."""
    return CIFAR_PARAMS if max(height, width) <= CIFAR_MAX_SIDE else IMAGENET_PARAMS


def severity_param(name: str, severity: int, height: int, width: int) -> Any:
    """The published parameter of corruption ``name`` at ``severity`` for an HxW image.

    Callers validate ``name`` and ``severity`` first; this only indexes the table.
    """
    return table_for(height, width)[name][severity - 1]
