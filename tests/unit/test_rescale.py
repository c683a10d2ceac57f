"""Clipping-aware rescaling: exact norm, range, saturation, agreement with bisection."""

import math

import pytest
import torch

from generators.networks import create_generator
from generators.rescale import (
    clipping_aware_rescale,
    clipping_aware_scale,
    convert_epsilon,
    epsilon_from_per_coordinate,
    per_coordinate_from_epsilon,
    saturated,
)


def clipped_norm(x, delta, eta):
    view = (-1,) + (1,) * (x.dim() - 1)
    return (torch.clamp(x + eta.view(view) * delta, 0, 1) - x).flatten(1).norm(dim=1)


def bisection_eta(x, delta, epsilon, steps=200):
    lo = torch.zeros(x.shape[0], dtype=torch.float64)
    hi = torch.full_like(lo, 1e-3)
    xd, dd = x.double(), delta.double()
    while (clipped_norm(xd, dd, hi) < epsilon).any() and hi.max() < 1e12:
        hi = torch.where(clipped_norm(xd, dd, hi) < epsilon, hi * 2, hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = clipped_norm(xd, dd, mid) < epsilon
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return hi


CASES = [
    # (name, image sampler, shape, epsilon)
    ("uniform images", lambda g, s: torch.rand(s, generator=g), (8, 3, 16, 16), 4.0),
    (
        "binary-ish MNIST-like",
        lambda g, s: (torch.rand(s, generator=g) > 0.8).float(),
        (8, 1, 28, 28),
        6.0,
    ),
    ("mid-grey", lambda g, s: torch.full(s, 0.5), (4, 3, 8, 8), 1.0),
    (
        "large epsilon near saturation",
        lambda g, s: torch.rand(s, generator=g),
        (6, 1, 28, 28),
        14.0,
    ),
]


@pytest.mark.parametrize("name,make,shape,epsilon", CASES, ids=[c[0] for c in CASES])
def test_rescaled_norm_is_epsilon_and_in_range(name, make, shape, epsilon):
    g = torch.Generator().manual_seed(0)
    x = make(g, shape)
    delta = torch.randn(shape, generator=g)
    out = clipping_aware_rescale(x, delta, epsilon=epsilon)
    assert out.min() >= 0 and out.max() <= 1
    eta = clipping_aware_scale(x, delta, epsilon=epsilon)
    reachable = torch.isfinite(eta)
    norms = (out - x).flatten(1).norm(dim=1)
    assert reachable.any()
    torch.testing.assert_close(
        norms[reachable], torch.full_like(norms[reachable], epsilon), rtol=1e-4, atol=0
    )


@pytest.mark.parametrize("name,make,shape,epsilon", CASES, ids=[c[0] for c in CASES])
def test_agrees_with_bisection(name, make, shape, epsilon):
    g = torch.Generator().manual_seed(1)
    x = make(g, shape)
    delta = torch.randn(shape, generator=g)
    eta = clipping_aware_scale(x.double(), delta.double(), epsilon=epsilon)
    reference = bisection_eta(x, delta, epsilon)
    finite = torch.isfinite(eta)
    torch.testing.assert_close(eta[finite], reference[finite], rtol=1e-6, atol=1e-9)


def test_unreachable_epsilon_returns_saturated_image():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 6, 6, generator=g)
    delta = torch.randn(4, 1, 6, 6, generator=g)
    max_norm = (saturated(x, delta) - x).flatten(1).norm(dim=1)
    epsilon = float(max_norm.max()) + 1.0
    eta = clipping_aware_scale(x, delta, epsilon=epsilon)
    assert torch.isinf(eta).all()
    torch.testing.assert_close(
        clipping_aware_rescale(x, delta, epsilon=epsilon), saturated(x, delta)
    )


def test_saturated_pixels_are_left_alone_and_zero_delta_is_unreachable():
    x = torch.tensor([[[[0.0, 1.0, 0.5, 0.5]]]])
    delta = torch.tensor([[[[-1.0, 1.0, 1.0, 0.0]]]])  # first two push outward: no room
    out = clipping_aware_rescale(x, delta, epsilon=0.25)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 0, 1] == 1 and out[0, 0, 0, 3] == 0.5
    torch.testing.assert_close(out[0, 0, 0, 2], torch.tensor(0.75))
    assert torch.isinf(clipping_aware_scale(x, torch.zeros_like(x), epsilon=0.1)).all()


def test_per_image_epsilon_and_gradient_flows():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 5, 5, generator=g)
    delta = torch.randn(3, 1, 5, 5, generator=g, requires_grad=True)
    eps = torch.tensor([0.5, 1.0, 1.5])
    out = clipping_aware_rescale(x, delta, epsilon=eps)
    torch.testing.assert_close((out - x).flatten(1).norm(dim=1), eps.float(), rtol=1e-4, atol=0)
    out.sum().backward()
    assert delta.grad is not None and torch.isfinite(delta.grad).all()


def test_epsilon_per_coordinate_conversions():
    n = 3 * 224 * 224
    assert per_coordinate_from_epsilon(135.0, num_coordinates=n) == pytest.approx(0.348, abs=1e-3)
    assert epsilon_from_per_coordinate(0.5, num_coordinates=784) == pytest.approx(14.0)
    assert convert_epsilon(135.0, from_coordinates=n, to_coordinates=784) == pytest.approx(
        135.0 * math.sqrt(784 / n)
    )


@pytest.mark.parametrize(
    "kind,shape", [("1x1", (2, 3, 17, 13)), ("3x3", (2, 3, 17, 13)), ("3x3", (4, 1, 28, 28))]
)
def test_generator_output_shape_equals_image_shape(kind, shape):
    gen = create_generator(kind, channels=shape[1])
    x = torch.rand(shape)
    assert gen.sample(x).shape == x.shape
    assert gen.perturb(x, epsilon=1.0).shape == x.shape
