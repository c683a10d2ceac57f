"""eps*: exact against a linear classifier (with and without clipping), a prediction that
flips mid-ray and comes back at saturation, edge cases, agreement with the reference's
fixed-step search, the forward budget, determinism, generator directions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evaluation.eps_star import (
    EpsStarResult,
    SearchPlan,
    adversarial_eps_star,
    draw_directions,
    eps_star,
    median_with_inf,
    reference_search,
)
from generators.networks import create_generator
from generators.rescale import clipping_aware_rescale

SHAPE = (3, 8, 8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoClassLinear(nn.Module):
    """Logits ``[0, w.x + b]``: class 1 iff ``w.x + b > 0`` (a tie predicts class 0)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.register_buffer("w", w.clone().float())
        self.b = float(b)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).flatten(1).sum(dim=1) + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


def monotone_direction(w: torch.Tensor, sign: float = -1.0):
    """Directions ``sign * sign(w) * |u|``: every coordinate moves w.x the same way."""

    def fn(like: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        mag = 0.5 + torch.rand(like.shape, generator=rng)
        return sign * torch.sign(w).expand_as(like) * mag

    return fn


def linear_score(w: torch.Tensor, b: float, x: torch.Tensor) -> torch.Tensor:
    return (x * w).flatten(1).sum(dim=1) + b


def analytic_eps(w: torch.Tensor, b: float, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Smallest clipped l2 size with ``w.clip(x + eta d) + b <= 0``, by float64 bisection in eta.

    Independent of the library: clip in float64, no clipping-aware rescaling. Requires a
    score that is non-increasing in eta (``monotone_direction``).
    """
    w, x, d = w.double(), x.double(), d.double()
    view = (-1,) + (1,) * (x.dim() - 1)

    def path(eta: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + eta.view(view) * d, 0.0, 1.0)

    space = torch.where(d >= 0, 1.0 - x, x)
    breaks = torch.where(d != 0, space / d.abs().clamp_min(1e-300), torch.zeros_like(x))
    eta_hi = breaks.flatten(1).max(dim=1).values * 1.01 + 1e-12
    eta_lo = torch.zeros_like(eta_hi)
    for _ in range(200):
        mid = (eta_lo + eta_hi) / 2
        flips = linear_score(w, b, path(mid)) <= 0
        eta_hi = torch.where(flips, mid, eta_hi)
        eta_lo = torch.where(flips, eta_lo, mid)
    sizes = (path(eta_hi) - x).flatten(1).norm(dim=1)
    out = sizes.clone()
    out[linear_score(w, b, x) <= 0] = 0.0
    out[linear_score(w, b, path(eta_hi * 0 + 1e9)) > 0] = math.inf
    return out, eta_hi


def test_linear_without_clipping_matches_analytic() -> None:
    torch.manual_seed(0)
    w = torch.randn(SHAPE)
    x = torch.full((16, *SHAPE), 0.5)
    margin = 10.0
    b = margin - float((x[0] * w).sum())
    direction = monotone_direction(w)
    model = TwoClassLinear(w, b)
    y = torch.ones(16, dtype=torch.int64)
    d = draw_directions(x, direction, seed=3)
    # Closed form without clipping: s(eta) = margin - eta * sum(|w| |d|).
    eta = margin / (w.abs().double() * d.abs().double()).flatten(1).sum(dim=1)
    expected = eta * d.double().flatten(1).norm(dim=1)
    assert float((eta[:, None] * d.abs().double().flatten(1)).max()) < 0.5  # nothing clips
    assert torch.allclose(analytic_eps(w, b, x, d)[0], expected, rtol=1e-5)

    fine = eps_star(model, x, y, direction=direction, seed=3, plan=SearchPlan(rel_tol=5e-4))
    assert torch.allclose(fine.per_image, expected, rtol=1e-3, atol=0)
    assert (fine.per_image >= expected * (1 - 1e-5)).all()  # an upper bracket end
    assert fine.max_forwards_per_image <= 20
    assert 2 < fine.forwards_per_image <= 20

    default = eps_star(model, x, y, direction=direction, seed=3)
    assert torch.allclose(default.per_image, expected, rtol=5e-3, atol=0)
    assert default.max_forwards_per_image <= 20
    assert default.median == pytest.approx(float(expected.median()), rel=5e-3)


def test_linear_with_clipping_matches_exact_clipped_path() -> None:
    torch.manual_seed(1)
    w = torch.randn(SHAPE)
    n = 24
    u = torch.rand(n, *SHAPE)
    x = torch.where(u < 0.4, 0.0, torch.where(u < 0.8, 1.0, torch.rand(n, *SHAPE)))
    direction = monotone_direction(w)
    d = draw_directions(x, direction, seed=5)
    sat = torch.clamp(x + 1e9 * d, 0.0, 1.0)
    b = -float(((linear_score(w, 0.0, x) + linear_score(w, 0.0, sat)) / 2).mean())
    model = TwoClassLinear(w, b)
    y = torch.ones(n, dtype=torch.int64)

    expected, eta_flip = analytic_eps(w, b, x, d)
    finite = torch.isfinite(expected) & (expected > 0)
    assert finite.float().mean() > 0.75
    # Clipping matters: coordinates saturate before the flip in every searched image.
    space = torch.where(d >= 0, 1.0 - x, x).double()
    breaks = space / d.abs().double()
    saturated_before = ((breaks > 0) & (breaks < eta_flip.view(-1, 1, 1, 1))).flatten(1).sum(1)
    assert (saturated_before[finite] > 0).all()
    unclipped = eta_flip * d.double().flatten(1).norm(dim=1)
    assert ((unclipped[finite] / expected[finite]) > 1.01).all()  # naive size is wrong

    fine = eps_star(model, x, y, direction=direction, seed=5, plan=SearchPlan(rel_tol=5e-4))
    assert torch.equal(torch.isinf(fine.per_image), torch.isinf(expected))
    assert torch.equal(fine.per_image == 0, expected == 0)
    assert torch.allclose(fine.per_image[finite], expected[finite], rtol=1e-3, atol=0)
    assert fine.max_forwards_per_image <= 20
    assert fine.forwards_per_image <= 20

    default = eps_star(model, x, y, direction=direction, seed=5)
    assert torch.allclose(default.per_image[finite], expected[finite], rtol=5e-3, atol=0)
    assert default.max_forwards_per_image <= 20


def test_never_flipped_is_inf_and_misclassified_is_zero() -> None:
    torch.manual_seed(2)
    w = torch.randn(SHAPE)
    x = torch.rand(6, *SHAPE) * 0.5 + 0.25
    b = 5.0 - float(linear_score(w, 0.0, x).min())  # every image scores >= 5: class 1
    model = TwoClassLinear(w, b)
    y = torch.tensor([1, 1, 1, 0, 0, 1])
    away = monotone_direction(w, sign=+1.0)  # pushes the score up: never flips
    result = eps_star(model, x, y, direction=away, seed=0)
    assert torch.isinf(result.per_image[y == 1]).all()
    assert (result.per_image[y == 0] == 0).all()
    scan = SearchPlan().levels + 1
    assert result.forwards.tolist() == [1 + scan] * 3 + [1, 1] + [1 + scan]  # clean + scan
    assert (result.never_flipped, result.misclassified_clean) == (4, 2)
    assert result.median == math.inf  # 4 of 6 never flip: more than half
    assert result.forwards_per_image == pytest.approx((4 * (1 + scan) + 2) / 6)


def test_median_with_inf() -> None:
    """The lower median (torch.median, as the reference): +inf iff more than half are +inf."""
    assert median_with_inf(torch.tensor([3.0, 1.0, math.inf])) == 3.0
    assert median_with_inf(torch.tensor([1.0, 2.0, 3.0, math.inf])) == 2.0
    assert median_with_inf(torch.tensor([1.0, 2.0, math.inf, math.inf])) == 2.0
    assert median_with_inf(torch.tensor([1.0, math.inf, math.inf, math.inf])) == math.inf
    assert median_with_inf(torch.tensor([0.0, math.inf, math.inf])) == math.inf
    values = torch.tensor([4.0, 0.5, math.inf, 2.0, 7.0, 1.0])
    assert median_with_inf(values) == float(torch.median(values))
    assert math.isnan(median_with_inf(torch.zeros(0)))


class DistanceBand(nn.Module):
    """Class 1 unless the input lies between l2 distances ``near`` and ``far`` from ``x0``:
    along any ray from ``x0`` the prediction flips at ``near`` and is correct again beyond
    ``far``, the fully saturated image included."""

    def __init__(self, x0: torch.Tensor, near: float, far: float) -> None:
        super().__init__()
        self.register_buffer("x0", x0.clone())
        self.near, self.far = near, far
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = (x - self.x0).flatten(1).norm(dim=1)
        wrong = (dist >= self.near) & (dist <= self.far)
        return torch.stack([wrong.float(), (~wrong).float()], dim=1)


def test_flip_mid_ray_correct_again_at_saturation_is_found() -> None:
    """The prediction flips in the middle of the ray: eps is where it first flips, not +inf
    because the saturated image happens to be classified correctly."""
    x0 = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(0))
    x = x0.expand(16, *SHAPE).clone()
    y = torch.ones(16, dtype=torch.int64)
    e_max = clipping_aware_rescale(x, draw_directions(x, "gaussian", seed=1), epsilon=1e9) - x
    e_max = e_max.flatten(1).norm(dim=1)
    near, far = 1.0, 2.5  # a band wider than the coarse factor: some probe falls inside it
    assert float(e_max.min()) > far  # saturation lies beyond the band: correct again there
    model = DistanceBand(x0[0], near, far)
    result = eps_star(model, x, y, direction="gaussian", seed=1)
    assert result.never_flipped == 0
    assert torch.isfinite(result.per_image).all()
    torch.testing.assert_close(
        result.per_image, torch.full((16,), near, dtype=torch.float64), rtol=5e-3, atol=0
    )
    assert (result.per_image >= near).all()  # the upper bracket end flips
    assert result.median == pytest.approx(near, rel=5e-3)
    assert result.max_forwards_per_image <= 20
    ref = reference_search(model, x, y, draw_directions(x, "gaussian", seed=1))
    torch.testing.assert_close(ref.per_image, result.per_image, rtol=5e-3, atol=0)


def test_precision_and_forward_budget_are_reported() -> None:
    torch.manual_seed(4)
    w = torch.randn(SHAPE)
    x = torch.rand(32, *SHAPE) * 0.5 + 0.25
    b = 3.0 - float(linear_score(w, 0.0, x).mean())
    model = TwoClassLinear(w, b)
    y = (linear_score(w, b, x) > 0).long()
    direction = monotone_direction(w)
    default = eps_star(model, x, y, direction=direction, seed=0)
    assert 0 < default.rel_precision <= 5e-3
    assert default.max_forwards_per_image <= 20 and default.forwards_per_image <= 20
    searched = torch.isfinite(default.per_image) & (default.per_image > 0)
    assert (default.lower[searched] < default.per_image[searched]).all()
    # A tolerance the budget cannot reach: every image stops at the budget, and the
    # reported precision says how wide its bracket still is.
    tight = eps_star(model, x, y, direction=direction, seed=0, plan=SearchPlan(rel_tol=1e-12))
    assert tight.max_forwards_per_image == 20
    assert 0 < tight.rel_precision < default.rel_precision
    with pytest.raises(ValueError, match="max_forwards"):
        SearchPlan(levels=20)


def small_conv_net(seed: int) -> nn.Module:
    """Random conv net without non-linearities: along a noise direction the prediction
    changes (nearly) once, so any correct line search finds the same crossing."""
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2), nn.Flatten()
            )
            self.head = nn.Linear(8 * 7 * 7, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features((x - 0.5) * 4))

    return Net().eval()


def conv_data(net: nn.Module, n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    x = 0.25 + 0.5 * torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    y[:3] = (y[:3] + 1) % 10  # a few misclassified clean
    return x, y


@pytest.mark.parametrize("direction", ["gaussian", "uniform"])
def test_median_agrees_with_reference_search(direction: str) -> None:
    net = small_conv_net(0)
    x, y = conv_data(net)
    result = eps_star(net, x, y, direction=direction, seed=0)
    ref = reference_search(net, x, y, draw_directions(x, direction, seed=0))
    assert math.isfinite(ref.median) and ref.median > 0
    assert result.median == pytest.approx(ref.median, rel=0.01)
    assert result.max_forwards_per_image <= 20
    assert result.forwards_per_image < 17
    assert ref.max_forwards_per_image > 40  # the reference's 40 fixed bisection steps
    agree = (result.per_image - ref.per_image).abs() <= 0.01 * ref.per_image
    agree |= result.per_image == ref.per_image  # 0 and inf
    assert agree.float().mean() >= 0.9
    # Every reported size really flips the prediction (an upper bracket end).
    searched = torch.isfinite(result.per_image) & (result.per_image > 0)
    dirs = draw_directions(x, direction, seed=0)
    at_eps = clipping_aware_rescale(x[searched], dirs[searched], epsilon=result.per_image[searched])
    with torch.no_grad():
        assert (net(at_eps).argmax(dim=1) != y[searched]).all()


def test_deterministic_and_independent_of_batching() -> None:
    net = small_conv_net(1)
    x, y = conv_data(net, n=20)
    a = eps_star(net, x, y, seed=11)
    b = eps_star(net, x, y, seed=11, batch_size=7)
    c = eps_star(net, x, y, seed=12)
    assert isinstance(a, EpsStarResult)
    assert torch.equal(a.per_image, b.per_image)
    assert torch.equal(a.forwards, b.forwards)
    assert not torch.equal(a.per_image, c.per_image)
    d1 = draw_directions(x, "gaussian", seed=11)
    assert torch.equal(d1, draw_directions(x, "gaussian", seed=11))
    u = draw_directions(x, "uniform", seed=11)
    assert u.min() >= -1 and u.max() <= 1


def test_noise_generator_direction() -> None:
    net = small_conv_net(2)
    x, y = conv_data(net, n=24)
    torch.manual_seed(0)
    gen = create_generator("3x3", channels=3).eval()
    result = eps_star(net, x, y, direction=gen, seed=4)
    again = eps_star(net, x, y, direction=gen, seed=4)
    assert torch.equal(result.per_image, again.per_image)
    dirs = draw_directions(x, gen, seed=4)
    assert dirs.shape == x.shape
    ref = reference_search(net, x, y, dirs)
    assert result.median == pytest.approx(ref.median, rel=0.01)
    assert result.max_forwards_per_image <= 20


def test_train_mode_warns_and_is_restored() -> None:
    net = small_conv_net(3).train()
    x, y = conv_data(net, n=4)
    with pytest.warns(UserWarning, match="train mode"):
        eps_star(net, x, y, seed=0)
    assert net.training


def test_adversarial_eps_star_runs_per_seed() -> None:
    net = small_conv_net(4)
    x, y = conv_data(net, n=8)
    out = adversarial_eps_star(
        net, [(x, y)], x, y, kind="1x1", epsilon=3.0, seeds=[0, 1], iterations=2
    )
    assert {"mean", "std", "per_seed", "never_flipped", "rel_precision"} <= set(out)
    assert len(out["per_seed"]) == 2 and len(out["never_flipped"]) == 2
    assert out["max_forwards_per_image"] <= 20
    if all(math.isfinite(v) for v in out["per_seed"]):
        assert out["mean"] == pytest.approx(sum(out["per_seed"]) / 2)
        assert out["std"] >= 0
    assert not net.training
