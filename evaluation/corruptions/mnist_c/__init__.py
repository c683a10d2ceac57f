"""MNIST-C (Mu & Gilmer 2019) generated on the fly: its 15 corruptions at their one severity.

The benchmark's static files are MNIST's test digits passed through the authors'
``corruptions.py`` (github.com/google-research/mnist-c) with each function's default severity;
``params.py`` lists those constants. This package re-implements the 15 functions as batched
torch code (scikit-image for Canny), so any MNIST-sized digits can be corrupted on any device.

Inputs are float tensors [B, 1, 28, 28] (or one [1, 28, 28] digit) in [0, 1]; the output has
the same shape, dtype and device, values in [0, 1], and no autograd history.
``corrupt_mnist(x, name, seed=s)`` is deterministic for the seed and the batch: every random
choice the reference makes per image (noise, the sign of a shear or rotation, the direction of
a translation, a blur angle, a fractal, line end points) is drawn per image from a CPU
``torch.Generator`` seeded per call, never from the global RNG. ``identity`` is not one of the
15 and is not registered here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import torch
from torch import Tensor

from evaluation.corruptions.mnist_c import affine, blur, edges, lines, overlay
from evaluation.corruptions.mnist_c.params import SIDE

Category = Literal["noise", "blur", "affine", "weather", "line", "digital"]
MnistCorruptionFn = Callable[[Tensor, torch.Generator], Tensor]
SEVERITIES: Final[tuple[int, ...]] = (1,)  # one strength per corruption, reported as 1


@dataclass(frozen=True)
class MnistCorruption:
    """One MNIST-C corruption: ``fn(x, generator)`` corrupts a [B, 1, 28, 28] batch.

    ``stochastic`` says whether the output depends on the seed or only on the digit.
    """

    name: str
    category: Category
    fn: MnistCorruptionFn
    stochastic: bool


# The benchmark's order (the reference's CORRUPTIONS list without 'identity').
_ALL = (
    MnistCorruption("shot_noise", "noise", overlay.shot_noise, True),
    MnistCorruption("impulse_noise", "noise", overlay.impulse_noise, True),
    MnistCorruption("glass_blur", "blur", blur.glass_blur, True),
    MnistCorruption("motion_blur", "blur", blur.motion_blur, True),
    MnistCorruption("shear", "affine", affine.shear, True),
    MnistCorruption("scale", "affine", affine.scale, False),
    MnistCorruption("rotate", "affine", affine.rotate, True),
    MnistCorruption("brightness", "weather", overlay.brightness, False),
    MnistCorruption("translate", "affine", affine.translate, True),
    MnistCorruption("stripe", "digital", overlay.stripe, False),
    MnistCorruption("fog", "weather", overlay.fog, True),
    MnistCorruption("spatter", "weather", overlay.spatter, True),
    MnistCorruption("dotted_line", "line", lines.dotted_line, True),
    MnistCorruption("zigzag", "line", lines.zigzag, True),
    MnistCorruption("canny_edges", "digital", edges.canny_edges, False),
)
MNIST_C: Mapping[str, MnistCorruption] = MappingProxyType({c.name: c for c in _ALL})


def mnist_c_corruptions() -> list[str]:
    """The 15 MNIST-C corruption names, in the benchmark's order."""
    return list(MNIST_C)


def _lookup(name: str) -> MnistCorruption:
    if name not in MNIST_C:
        choices = mnist_c_corruptions()
        raise ValueError(f"unknown MNIST-C corruption {name!r}; choose from {choices}")
    return MNIST_C[name]


def mnist_c_category(name: str) -> str:
    """The group of an MNIST-C corruption: noise, blur, affine, weather, line or digital."""
    return _lookup(name).category


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"expected a float tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, SIDE, SIDE):
        raise ValueError(
            f"MNIST-C corrupts gray {SIDE}x{SIDE} digits [B, 1, {SIDE}, {SIDE}], "
            f"got {tuple(x.shape)}"
        )


@torch.no_grad()
def corrupt_mnist(x: Tensor, name: str, severity: int = 1, *, seed: int) -> Tensor:
    """Applies MNIST-C corruption ``name`` to a batch of digits in [0, 1].

    ``severity`` must be 1: the benchmark has one strength per corruption. Half-precision
    inputs are processed in float32 and cast back.

    Raises:
        ValueError: unknown ``name``, a severity other than 1, or a malformed image tensor.
    """
    spec = _lookup(name)
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"MNIST-C has the single severity 1, got {severity!r}")
    single = isinstance(x, Tensor) and x.ndim == 3
    batch = x.unsqueeze(0) if single else x
    _check_images(batch)
    if batch.shape[0] == 0:
        return x.detach().clone()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    work_dtype = torch.float64 if batch.dtype == torch.float64 else torch.float32
    work = batch.detach().to(work_dtype).clamp(0.0, 1.0)
    out = spec.fn(work, generator).clamp(0.0, 1.0).to(batch.dtype)
    return out[0] if single else out


__all__ = [
    "MNIST_C",
    "SEVERITIES",
    "Category",
    "MnistCorruption",
    "corrupt_mnist",
    "mnist_c_category",
    "mnist_c_corruptions",
]
