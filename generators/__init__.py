"""Noise generators, fixed noise samplers and the clipping-aware l2 rescaling."""

from generators.networks import NoiseGenerator, create_generator
from generators.rescale import (
    clipping_aware_rescale,
    clipping_aware_scale,
    convert_epsilon,
    epsilon_from_per_coordinate,
    per_coordinate_from_epsilon,
)

__all__ = [
    "NoiseGenerator",
    "clipping_aware_rescale",
    "clipping_aware_scale",
    "convert_epsilon",
    "create_generator",
    "epsilon_from_per_coordinate",
    "per_coordinate_from_epsilon",
]
