"""CIFAR-10-C / ImageNet-C corruptions generated on the fly as batched torch code.

Hendrycks & Dietterich's benchmark ships fixed corrupted copies of the test sets; generating the
same corruptions on the fly lets us evaluate (and train) on any dataset and device without those
files. The per-severity constants are the published ones (see ``params.py``); the implementations
are batched torch re-writes of the reference numpy / skimage / OpenCV / ImageMagick code.

Inputs are float tensors [B, C, H, W] (or a single [C, H, W] image) in [0, 1] with C = 1 or 3,
on any device; the output has the same shape, dtype and device, values in [0, 1], and carries
no autograd history. ``corrupt(x, name, severity, seed=s)`` is deterministic given the seed and
the batch shape: every random draw comes from a CPU ``torch.Generator`` seeded per call (never
the global RNG), so results are also the same on CPU and GPU up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import torch
from torch import Tensor

from evaluation.corruptions import blur, digital, noise, weather
from evaluation.corruptions.params import SEVERITIES, severity_param

Category = Literal["noise", "blur", "weather", "digital"]
CorruptionFn = Callable[[Tensor, Any, torch.Generator], Tensor]


@dataclass(frozen=True)
class Corruption:
    """One registered corruption.

    ``fn(x, param, generator)`` applies it to a [B, C, H, W] batch with ``param`` the published
    constant of one severity (see params.py). ``stochastic`` says whether the output depends on
    the seed (noise, random angles, random fractals) or only on the image.
    """

    name: str
    category: Category
    fn: CorruptionFn
    stochastic: bool


_ALL = (
    Corruption("gaussian_noise", "noise", noise.gaussian_noise, True),
    Corruption("shot_noise", "noise", noise.shot_noise, True),
    Corruption("impulse_noise", "noise", noise.impulse_noise, True),
    Corruption("speckle_noise", "noise", noise.speckle_noise, True),
    Corruption("gaussian_blur", "blur", blur.gaussian_blur, False),
    Corruption("defocus_blur", "blur", blur.defocus_blur, False),
    Corruption("motion_blur", "blur", blur.motion_blur, True),
    Corruption("fog", "weather", weather.fog, True),
    Corruption("brightness", "weather", weather.brightness, False),
    Corruption("contrast", "digital", digital.contrast, False),
    Corruption("pixelate", "digital", digital.pixelate, False),
    Corruption("jpeg_compression", "digital", digital.jpeg_compression, False),
)
CORRUPTIONS: Mapping[str, Corruption] = MappingProxyType({c.name: c for c in _ALL})


def available_corruptions() -> list[str]:
    """Names of all registered corruptions, in benchmark order (noise, blur, weather, digital)."""
    return list(CORRUPTIONS)


def _lookup(name: str) -> Corruption:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {available_corruptions()}")
    return CORRUPTIONS[name]


def category_of(name: str) -> str:
    """The ImageNet-C category ('noise', 'blur', 'weather' or 'digital') of a corruption."""
    return _lookup(name).category


def _check_severity(severity: int) -> None:
    # bool is an int subclass; True must not pass as severity 1.
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"expected a float tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected shape [B, C, H, W] with C in (1, 3), got {tuple(x.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"expected non-empty images, got {tuple(x.shape)}")


@torch.no_grad()
def corrupt(x: Tensor, name: str, severity: int, *, seed: int) -> Tensor:
    """Applies corruption ``name`` at ``severity`` (1..5) to a batch of images in [0, 1].

    The constants come from the CIFAR-10-C table for images with max(H, W) <= 32 (CIFAR, MNIST)
    and from the ImageNet-C table otherwise. The same (x, seed) gives the same output, and with
    a fixed seed higher severities corrupt more. Half-precision inputs are processed in float32
    and cast back.

    Raises:
        ValueError: unknown ``name``, ``severity`` outside 1..5, or a malformed image tensor.
    """
    spec = _lookup(name)
    _check_severity(severity)
    single = isinstance(x, Tensor) and x.ndim == 3
    batch = x.unsqueeze(0) if single else x
    _check_images(batch)
    if batch.shape[0] == 0:
        return x.detach().clone()
    param = severity_param(name, severity, batch.shape[2], batch.shape[3])
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    work_dtype = torch.float64 if batch.dtype == torch.float64 else torch.float32
    work = batch.detach().to(work_dtype).clamp(0.0, 1.0)
    out = spec.fn(work, param, generator).clamp(0.0, 1.0).to(batch.dtype)
    return out[0] if single else out


__all__ = [
    "CORRUPTIONS",
    "Category",
    "Corruption",
    "CorruptionFn",
    "available_corruptions",
    "category_of",
    "corrupt",
]
