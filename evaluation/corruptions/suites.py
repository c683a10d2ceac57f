"""Which generated corruption suite each benchmark uses: names, severities and how to apply.

The evaluation loop asks :func:`generated_suite` for a benchmark and never branches on its
name, so a benchmark's generated suite (ImageNet-C's set at CIFAR strength, or MNIST-C's
own 15 corruptions) is chosen in this one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from evaluation.corruptions import available_corruptions, category_of, corrupt
from evaluation.corruptions.mnist_c import SEVERITIES as MNIST_C_SEVERITIES
from evaluation.corruptions.mnist_c import (
    corrupt_mnist,
    mnist_c_category,
    mnist_c_corruptions,
)
from evaluation.corruptions.params import SEVERITIES

ApplyFn = Callable[..., Tensor]  # apply(x, name, severity, *, seed) -> corrupted x


@dataclass(frozen=True)
class GeneratedSuite:
    """A generated benchmark: ``apply(x, name, severity, seed=s)`` corrupts a [B, C, H, W]
    batch in [0, 1] deterministically for a seed; ``category(name)`` groups the report."""

    benchmark: str
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    apply: ApplyFn
    category: Callable[[str], str]


def _imagenet_c_style(benchmark: str) -> GeneratedSuite:
    return GeneratedSuite(
        benchmark=benchmark,
        corruptions=tuple(available_corruptions()),
        severities=tuple(SEVERITIES),
        apply=corrupt,
        category=category_of,
    )


def _mnist_c() -> GeneratedSuite:
    # MNIST-C's own 15 corruptions at their one published strength ('identity' is not one).
    return GeneratedSuite(
        benchmark="mnist-c",
        corruptions=tuple(mnist_c_corruptions()),
        severities=MNIST_C_SEVERITIES,
        apply=corrupt_mnist,
        category=mnist_c_category,
    )


_SUITES: dict[str, Callable[[], GeneratedSuite]] = {
    "imagenet-c": lambda: _imagenet_c_style("imagenet-c"),
    "cifar10-c": lambda: _imagenet_c_style("cifar10-c"),
    "mnist-c": _mnist_c,
}


def generated_suite(benchmark: str) -> GeneratedSuite:
    """The generated suite for ``benchmark`` ('imagenet-c', 'cifar10-c' or 'mnist-c')."""
    if benchmark not in _SUITES:
        raise ValueError(f"no generated suite for {benchmark!r}; choose from {sorted(_SUITES)}")
    return _SUITES[benchmark]()
