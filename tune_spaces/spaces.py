"""Search spaces for the hyper-parameters the paper tunes, and their scheduler.

- GNT's sigma: the paper finds a sharp optimum (ResNet50: 0.5) between "too small to
  matter" and "overfits to the noise" (its Fig. 2); searched log-uniformly.
- ANT's epsilon: an l2 size, like every epsilon antray takes (``--grid`` values too). The
  range is ImageNet's, 19.4 to 233 around the paper's 135, carried to the dataset's image
  size at the same per-coordinate size as the default epsilon is (MNIST: 1.4 to 16.8). On
  MNIST clipping saturates noise near 19.8 (docs/METHOD.md), so the upper end stays below it.
- ANT's restart iterations: how long each restarted generator trains from scratch against
  the current classifier (the reference: 1000 Adam steps), i.e. how strong the noise is
  that each restart brings; searched log-uniformly over whole numbers, 50 to 2000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generators.rescale import IMAGENET_NUM_COORDINATES, convert_epsilon


@dataclass(frozen=True)
class SearchSpace:
    """One tuned config key: ``key`` gets each sampled value through ``--set``-style overrides."""

    name: str
    key: str  # the trial config's parameter name and the config path it overrides
    low: float  # in the key's own unit (epsilon: l2)
    high: float
    description: str
    integer: bool = False  # a count: sampled and set as a whole number
    # low/high are l2 sizes at ImageNet's 224x224x3, carried to the dataset's image size
    per_image_size: bool = False

    def overrides(self, value: float) -> list[str]:
        if self.key == "noise.sigmas":
            return [f"noise.sigmas=[{value}]"]
        if self.integer:
            return [f"{self.key}={round(value)}"]
        return [f"{self.key}={value}"]


SPACES: dict[str, SearchSpace] = {
    "gnt_sigma": SearchSpace("gnt_sigma", "noise.sigmas", 0.05, 1.0, "GNT: one sigma, log-uniform"),
    "ant_epsilon": SearchSpace(
        "ant_epsilon",
        "ant.epsilon",
        19.4,
        233.0,
        "ANT: l2 size, log-uniform (ImageNet's range at the dataset's image size)",
        per_image_size=True,
    ),
    "ant_restart_iterations": SearchSpace(
        "ant_restart_iterations",
        "ant.restart_iterations",
        50,
        2000,
        "ANT: Adam steps of each restarted generator, log-uniform whole numbers",
        integer=True,
    ),
}


def space_bounds(space: SearchSpace, *, num_coordinates: int) -> tuple[float, float]:
    """The search range in config units for images of ``num_coordinates``."""
    if not space.per_image_size:
        return space.low, space.high
    low, high = (
        convert_epsilon(
            v, from_coordinates=IMAGENET_NUM_COORDINATES, to_coordinates=num_coordinates
        )
        for v in (space.low, space.high)
    )
    return low, high


def grid_values(low: float, high: float, count: int) -> list[float]:
    """``count`` log-spaced values from low to high (rounded for readable configs)."""
    if count == 1:
        return [round(math.sqrt(low * high), 4)]
    ratio = (high / low) ** (1 / (count - 1))
    return [round(low * ratio**i, 4) for i in range(count)]


def param_space(
    space: SearchSpace,
    *,
    num_coordinates: int,
    grid: Sequence[float] | None = None,
) -> dict[str, Any]:
    """A Ray Tune ``param_space``: an explicit grid, or log-uniform over the bounds."""
    from ray import tune

    if grid:
        return {"value": tune.grid_search([float(v) for v in grid])}
    low, high = space_bounds(space, num_coordinates=num_coordinates)
    if space.integer:
        return {"value": tune.lograndint(int(low), int(high) + 1)}  # high is exclusive
    return {"value": tune.loguniform(low, high)}


def asha_scheduler(*, max_epochs: int, grace_period: int = 1, reduction_factor: int = 2):
    """ASHA on epochs: a trial reports once per epoch (``training_iteration``); it may stop
    a weak trial at an earlier rung but lets every trial finish its last epoch by itself
    (``tune_spaces.asha``)."""
    from tune_spaces.asha import FinishingASHA

    return FinishingASHA(
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=min(grace_period, max_epochs),
        reduction_factor=reduction_factor,
    )
