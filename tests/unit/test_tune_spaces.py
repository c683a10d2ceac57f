"""Search spaces: epsilon ranges carry the per-coordinate size across image sizes."""

import math

import pytest

from tune_spaces import SPACES, grid_values
from tune_spaces.spaces import space_bounds


def test_epsilon_bounds_scale_with_image_size():
    mnist = space_bounds(SPACES["ant_epsilon"], num_coordinates=784)
    imagenet = space_bounds(SPACES["ant_epsilon"], num_coordinates=3 * 224 * 224)
    assert mnist == pytest.approx((0.05 * 28, 0.6 * 28))
    assert mnist[1] < 19.8  # below MNIST's saturation size (SPEC.md)
    assert imagenet[0] < 135 < imagenet[1]  # the paper's ImageNet epsilon is inside
    assert space_bounds(SPACES["gnt_sigma"], num_coordinates=784)[0] < 0.5


def test_overrides_and_grid():
    assert SPACES["gnt_sigma"].overrides(0.3) == ["noise.sigmas=[0.3]"]
    assert SPACES["ant_epsilon"].overrides(8.0) == ["ant.epsilon=8.0"]
    values = grid_values(0.1, 1.0, 3)
    assert values[0] == 0.1 and values[-1] == 1.0 and math.isclose(values[1], 0.3162, rel_tol=1e-3)
