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
    epsilon = torch.as_tensor(epsilon, dtype=torch.float64)
    while (clipped_norm(xd, dd, hi) < epsilon).any() and hi.max() < 1e12:
        hi = torch.where(clipped_norm(xd, dd, hi) < epsilon, hi * 2, hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = clipped_norm(xd, dd, mid) < epsilon
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return hi


def max_norm(x, delta):
    """The largest reachable clipped size ``||saturated(x, delta) - x||_2``, float64."""
    return (saturated(x, delta) - x).double().flatten(1).norm(dim=1)


def gaussian(g, shape):
    return torch.randn(shape, generator=g)


def sparse(g, shape):
    """A direction that moves about 5 % of the coordinates."""
    return torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.05)


def binary(g, shape):
    return (torch.rand(shape, generator=g) > 0.8).float()


# Epsilons: a number, or a function of (x, delta) giving one size per image.
AT_EDGE_64 = max_norm  # the largest reachable size, computed in float64
AT_EDGE_32 = lambda x, d: max_norm(x, d).float()  # noqa: E731  rounded to float32
JUST_ABOVE_EDGE = lambda x, d: max_norm(x, d) * (1 + 1e-9)  # noqa: E731

CASES = [
    # (name, image sampler, direction sampler, shape, epsilon)
    ("uniform images", lambda g, s: torch.rand(s, generator=g), gaussian, (8, 3, 16, 16), 4.0),
    ("binary-ish MNIST-like", binary, gaussian, (8, 1, 28, 28), 6.0),
    ("mid-grey", lambda g, s: torch.full(s, 0.5), gaussian, (4, 3, 8, 8), 1.0),
    (
        "large epsilon near saturation",
        lambda g, s: torch.rand(s, generator=g),
        gaussian,
        (6, 1, 28, 28),
        14.0,
    ),
    ("binary, sparse direction", binary, sparse, (8, 1, 28, 28), 2.0),
    # At the edge (epsilon = the largest reachable size, to rounding): the fully
    # saturated image, exactly.
    ("binary, sparse direction, at edge (float64)", binary, sparse, (64, 1, 28, 28), AT_EDGE_64),
    ("binary, sparse direction, at edge (float32)", binary, sparse, (64, 1, 28, 28), AT_EDGE_32),
    ("binary, gaussian direction, at edge", binary, gaussian, (16, 1, 28, 28), AT_EDGE_64),
    ("uniform, sparse direction, at edge", lambda g, s: torch.rand(s, generator=g), sparse,
     (16, 3, 8, 8), AT_EDGE_64),
    ("binary, sparse direction, just above edge", binary, sparse, (16, 1, 28, 28),
     JUST_ABOVE_EDGE),
]  # fmt: skip
IDS = [c[0] for c in CASES]


def _case(make, direction, shape, epsilon, seed):
    g = torch.Generator().manual_seed(seed)
    x = make(g, shape)
    delta = direction(g, shape)
    eps = epsilon(x, delta) if callable(epsilon) else torch.full((shape[0],), float(epsilon))
    return x, delta, eps


def _at_edge(x, delta, eps):
    return eps.double() >= max_norm(x, delta) * (1 - 1e-6)


@pytest.mark.parametrize("name,make,direction,shape,epsilon", CASES, ids=IDS)
def test_rescaled_norm_is_epsilon_and_in_range(name, make, direction, shape, epsilon):
    x, delta, eps = _case(make, direction, shape, epsilon, seed=0)
    out = clipping_aware_rescale(x, delta, epsilon=eps)
    assert out.min() >= 0 and out.max() <= 1
    norms = (out - x).double().flatten(1).norm(dim=1)
    edge = _at_edge(x, delta, eps)
    # Below the edge: the exact size. At it (to rounding): the saturated image, exactly.
    torch.testing.assert_close(norms[~edge], eps[~edge].double(), rtol=1e-4, atol=0)
    assert torch.equal(out[edge], saturated(x, delta)[edge])
    if callable(epsilon):
        assert edge.all()
        torch.testing.assert_close(norms, max_norm(x, delta), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name,make,direction,shape,epsilon", CASES, ids=IDS)
def test_agrees_with_bisection(name, make, direction, shape, epsilon):
    x, delta, eps = _case(make, direction, shape, epsilon, seed=1)
    eta = clipping_aware_scale(x.double(), delta.double(), epsilon=eps.double())
    edge = _at_edge(x, delta, eps)
    finite = torch.isfinite(eta) & ~edge
    if finite.any():
        reference = bisection_eta(x[finite], delta[finite], eps[finite].double())
        torch.testing.assert_close(eta[finite], reference, rtol=1e-6, atol=1e-9)
    # At the edge: the smallest eta that saturates every moving coordinate.
    space = torch.where(delta >= 0, 1 - x, x).double()
    need = torch.where(delta != 0, space / delta.double().abs(), torch.zeros_like(space))
    torch.testing.assert_close(eta[edge], need[edge].flatten(1).max(dim=1).values)


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
    # An image at the edge (saturated) must not poison the batch's gradient with NaN.
    delta.grad = None
    edge = torch.stack([eps[0].double(), max_norm(x, delta.detach())[1], eps[2].double()])
    clipping_aware_rescale(x, delta, epsilon=edge).sum().backward()
    assert torch.isfinite(delta.grad).all() and delta.grad[0].abs().sum() > 0


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


def test_empty_batch_comes_back_empty():
    # A small per-worker batch can give a replayed generator no images at all.
    x, delta = torch.rand(0, 1, 4, 4), torch.randn(0, 1, 4, 4)
    assert clipping_aware_rescale(x, delta, epsilon=1.0).shape == (0, 1, 4, 4)


def test_gradient_matches_finite_differences():
    # eta is rebuilt from masked sums after a search without autograd: its gradient in x,
    # delta and a per-image epsilon must still be the true one (segments away from a kink).
    g = torch.Generator().manual_seed(5)
    x = (0.1 + 0.8 * torch.rand(2, 2, 3, 3, generator=g, dtype=torch.float64)).requires_grad_()
    delta = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64).requires_grad_()
    eps = torch.tensor([0.8, 1.6], dtype=torch.float64, requires_grad=True)

    def scale(x, delta, eps):
        return clipping_aware_scale(x, delta, epsilon=eps)

    def rescale(x, delta, eps):
        return clipping_aware_rescale(x, delta, epsilon=eps)

    assert torch.autograd.gradcheck(scale, (x, delta, eps), eps=1e-7, atol=1e-6)
    assert torch.autograd.gradcheck(rescale, (x, delta, eps), eps=1e-7, atol=1e-6)


def test_exact_just_below_the_largest_reachable_size():
    # The crossing segment's slope is a direct sum: no cancellation on the last segments.
    g = torch.Generator().manual_seed(6)
    x = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64)
    delta = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    eps = max_norm(x, delta) * (1 - 1e-4)
    eta = clipping_aware_scale(x, delta, epsilon=eps)
    torch.testing.assert_close(clipped_norm(x, delta, eta), eps, rtol=1e-13, atol=0)
