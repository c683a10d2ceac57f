"""Exact, batched, clipping-aware l2 rescaling (Rauber & Bethge 2020).

Given images ``x`` in [0, 1] and directions ``delta``, find per image the scale
``eta >= 0`` with ``|| clip(x + eta * delta, 0, 1) - x ||_2 = epsilon``.

Each coordinate i contributes ``min(eta^2 * delta_i^2, space_i^2)`` to the squared
norm, where ``space_i`` is the distance to the border that ``delta_i`` points at.
As a function of ``t = eta^2`` the squared norm is piecewise linear and monotone,
with a breakpoint where each coordinate saturates (``t_i = space_i^2 / delta_i^2``).
Sorting the breakpoints and taking cumulative sums gives the function's value at
every breakpoint; the segment that crosses ``epsilon^2`` is then inverted exactly.
No iteration, no tolerance. Gradients flow through ``eta`` (the sort permutation
is piecewise constant, so the search runs without autograd and ``eta`` is rebuilt from
masked sums that carry the gradient), so a generator can be trained through the projection.
"""

from __future__ import annotations

import math

import torch

# The paper's ImageNet size: epsilon = 135 at 224x224x3; the per-coordinate
# scale epsilon / sqrt(N) is what carries over to other image sizes.
IMAGENET_EPSILON = 135.0
IMAGENET_NUM_COORDINATES = 3 * 224 * 224


def per_coordinate_from_epsilon(epsilon: float, *, num_coordinates: int) -> float:
    """Per-coordinate size ``epsilon / sqrt(N)`` of an l2 size ``epsilon`` over N coordinates."""
    return epsilon / math.sqrt(num_coordinates)


def epsilon_from_per_coordinate(scale: float, *, num_coordinates: int) -> float:
    """The l2 size with the given per-coordinate size over N coordinates."""
    return scale * math.sqrt(num_coordinates)


def convert_epsilon(epsilon: float, *, from_coordinates: int, to_coordinates: int) -> float:
    """Carry an epsilon between image sizes at a constant per-coordinate size."""
    scale = per_coordinate_from_epsilon(epsilon, num_coordinates=from_coordinates)
    return epsilon_from_per_coordinate(scale, num_coordinates=to_coordinates)


def paper_epsilon(*, num_coordinates: int) -> float:
    """The paper's ImageNet size carried to N coordinates at its per-coordinate size: the
    default ``ant.epsilon`` and eps* generator size (9.74 at 28x28, 19.3 at 32x32x3)."""
    return IMAGENET_EPSILON * math.sqrt(num_coordinates / IMAGENET_NUM_COORDINATES)


def largest_distance(*, num_coordinates: int) -> float:
    """``sqrt(N)``: the l2 distance between the all-0 and the all-1 image, the largest
    between any two images in [0, 1]^N. A size at or above it is out of reach for every
    image and direction: the rescaling returns the saturated image."""
    return math.sqrt(num_coordinates)


def saturated(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``lim eta->inf clip(x + eta * delta)``: every moving coordinate pushed to its border."""
    return torch.where(
        delta > 0, torch.ones_like(x), torch.where(delta < 0, torch.zeros_like(x), x)
    )


# Relative tolerance on the squared norm within which epsilon counts as the largest
# reachable size: float32 callers round E_max by ~1e-7, and the cumulative sums below
# may fall a few ulps short of it, which would otherwise pick a wrong segment.
EDGE_RTOL = 1e-6
_FLOAT32_MAX = torch.finfo(torch.float32).max


def _scale(
    x: torch.Tensor, delta: torch.Tensor, epsilon: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eta, at_edge)``: eta as in ``clipping_aware_scale`` (float64) and the images whose
    epsilon is the largest reachable size (to rounding) or beyond it.

    The segment search (sort, cumulative sums) runs without autograd: which coordinates are
    saturated on the crossing segment is piecewise constant in ``x`` and ``delta``. ``eta``
    is then rebuilt from masked sums over the coordinates, which carry the gradient; this
    gives the same value and gradient as differentiating through the sort, at the cost of
    two elementwise passes instead of a backward through sort, gathers and cumsums."""
    if x.shape != delta.shape:
        raise ValueError(f"x {tuple(x.shape)} and delta {tuple(delta.shape)} differ in shape")
    batch = x.shape[0]
    # float64: cumulative sums over ~1.5e5 ImageNet coordinates lose ~1e-5 in float32.
    xf = x.flatten(1).to(torch.float64)
    df = delta.flatten(1).to(torch.float64)
    eps = torch.as_tensor(epsilon, dtype=torch.float64, device=x.device).expand(batch)
    eps2 = eps.square()

    space = torch.where(df >= 0, 1.0 - xf, xf)
    d2 = df.square()
    moving = d2 > 0
    s2 = torch.where(moving, space.square(), torch.zeros_like(d2))
    # Coordinates that do not move never saturate: breakpoint at +inf.
    safe_d2 = torch.where(moving, d2, torch.ones_like(d2))
    breaks = torch.where(moving, s2 / safe_d2, torch.full_like(d2, math.inf))

    with torch.no_grad():
        at_edge, reachable, still_moving, last, has_break = _crossing_segment(s2, d2, breaks, eps2)
    # On the segment that crosses epsilon^2, the squared norm is
    # sum(s2 of the saturated coordinates) + t * sum(d2 of the still-moving ones).
    still = still_moving.to(torch.float64)
    sat_before = (s2 * (1.0 - still)).sum(dim=1)
    slope = (d2 * still).sum(dim=1)
    safe_slope = torch.where(slope > 0, slope, torch.ones_like(slope))
    t_star = ((eps2 - sat_before) / safe_slope).clamp_min(0.0)
    eta = torch.sqrt(t_star + 1e-300) * (eps2 > 0)
    # At (or, to rounding, just below) the largest reachable size every moving coordinate
    # saturates: the answer is the last finite breakpoint, and the image is saturated(x, d).
    last_break = torch.gather(breaks, 1, last).squeeze(1)
    last_break = torch.where(has_break, last_break, torch.zeros_like(eta))
    eta = torch.where(at_edge, torch.sqrt(last_break + 1e-300), eta)
    eta = torch.where(reachable, eta, torch.full_like(eta, math.inf))
    return eta, at_edge


def _crossing_segment(
    s2: torch.Tensor, d2: torch.Tensor, breaks: torch.Tensor, eps2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sorted-breakpoint search, per image: ``at_edge``, ``reachable``, the mask of the
    coordinates still moving on the segment whose end is the first breakpoint at which the
    squared norm reaches ``eps2`` (sorted positions >= k), the index of the last finite
    breakpoint, and whether there is one (any coordinate moves)."""
    # Sorted by float32 keys: half the radix-sort passes of float64 on a GPU. Only near-ties
    # (relative 1e-7) can trade places, which moves the squared norm by ~1e-7 of one
    # coordinate's share; every sum below stays float64. Finite breakpoints beyond float32's
    # range stay finite keys, so +inf (coordinates that do not move) still sorts last.
    finite_breaks = torch.isfinite(breaks)
    keys = torch.where(finite_breaks, breaks.clamp(max=_FLOAT32_MAX), breaks).to(torch.float32)
    order = torch.argsort(keys, dim=1)
    t_sorted = torch.gather(breaks, 1, order)
    s2_sorted = torch.gather(s2, 1, order)
    d2_sorted = torch.gather(d2, 1, order)
    saturated_sum = torch.cumsum(s2_sorted, dim=1)  # coordinates 0..k saturated at t_k
    free_slope = d2.sum(dim=1, keepdim=True) - torch.cumsum(d2_sorted, dim=1)  # still moving
    finite = torch.isfinite(t_sorted)
    t_safe = torch.where(finite, t_sorted, torch.zeros_like(t_sorted))
    norm2_at_break = torch.where(
        finite, saturated_sum + t_safe * free_slope, torch.full_like(t_sorted, math.inf)
    )
    max2 = s2.sum(dim=1)
    at_edge = eps2 >= max2 * (1.0 - EDGE_RTOL)
    reachable = eps2 <= max2 * (1.0 + EDGE_RTOL)
    # First breakpoint at which the squared norm reaches epsilon^2; epsilon^2 lies
    # on the linear segment that ends there.
    k = torch.argmax((norm2_at_break >= eps2[:, None]).to(torch.int8), dim=1, keepdim=True)
    positions = torch.arange(breaks.shape[1], device=breaks.device).expand_as(breaks)
    still_moving = torch.zeros_like(breaks, dtype=torch.bool)
    still_moving.scatter_(1, order, positions >= k)
    last_pos = (finite.sum(dim=1, keepdim=True) - 1).clamp_min(0)  # inf sorts last
    last = torch.gather(order, 1, last_pos)
    return at_edge, reachable, still_moving, last, finite[:, 0]  # inf sorts last


def clipping_aware_scale(
    x: torch.Tensor, delta: torch.Tensor, *, epsilon: float | torch.Tensor
) -> torch.Tensor:
    """Per-image ``eta`` (shape ``[B]``) so that ``||clip(x + eta*delta) - x||_2 = epsilon``.

    ``inf`` where epsilon cannot be reached even with every coordinate saturated; at the
    largest reachable size (to a relative ``EDGE_RTOL`` on the squared norm) the smallest
    eta that saturates every moving coordinate. ``epsilon`` is a float or a ``[B]``
    tensor, in [0, 1] pixel units.
    """
    eta, _ = _scale(x, delta, epsilon)
    return eta.to(x.dtype)


def clipping_aware_rescale(
    x: torch.Tensor, delta: torch.Tensor, *, epsilon: float | torch.Tensor
) -> torch.Tensor:
    """``clip(x + eta * delta, 0, 1)`` with exactly ``||. - x||_2 = epsilon`` per image.

    Where epsilon is the largest reachable size (to rounding) or beyond it, the fully
    saturated image ``saturated(x, delta)`` is returned, exactly.
    """
    eta, at_edge = _scale(x, delta, epsilon)
    view = (-1,) + (1,) * (x.dim() - 1)
    eta = eta.to(x.dtype)
    solved = torch.isfinite(eta) & ~at_edge
    eta_safe = torch.where(solved, eta, torch.zeros_like(eta)).view(view)
    perturbed = torch.clamp(x + eta_safe * delta, 0.0, 1.0)
    return torch.where(solved.view(view), perturbed, saturated(x, delta))
