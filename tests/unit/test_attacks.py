"""PGD accuracy and DDN median l2 (foolbox) against a linear two-class model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evaluation.attacks import ddn_median_l2, pgd_accuracy

SHAPE = (1, 4, 4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoClassLinear(nn.Module):
    """Logits ``[-s/2, s/2]`` with ``s = w.x + b``: class 1 iff ``s > 0``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.linear = nn.Linear(w.numel(), 1)
        with torch.no_grad():
            self.linear.weight.copy_(w.reshape(1, -1))
            self.linear.bias.fill_(b)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.linear(x.flatten(1))
        return torch.cat([-s / 2, s / 2], dim=1)


def linear_problem(n: int = 32, seed: int = 0):
    """Points at signed distance ``t`` (|t| in [0.05, 0.2]) from the hyperplane, inside
    the box together with their closest hyperplane point (so clipping never matters)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(SHAPE, generator=g)
    w_hat = w / w.norm()
    b = -float((w * 0.5).sum())
    p = 0.35 + 0.3 * torch.rand(n, *SHAPE, generator=g)
    p = p - ((p - 0.5) * w_hat).flatten(1).sum(1).view(-1, 1, 1, 1) * w_hat  # on the plane
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    t = sign * (0.05 + 0.15 * torch.rand(n, generator=g))
    x = p + t.view(-1, 1, 1, 1) * w_hat
    assert p.min() > 0 and p.max() < 1 and x.min() > 0 and x.max() < 1
    y = (t > 0).long()
    return TwoClassLinear(w, b), x, y, t


def test_pgd_l2_accuracy_decreases_and_starts_at_clean() -> None:
    model, x, y, t = linear_problem()
    y = y.clone()
    y[:4] = 1 - y[:4]  # four misclassified clean
    clean = float((model(x).argmax(1) == y).float().mean())
    eps = [0.0, 0.03, 0.08, 0.12, 0.16, 0.25, 1.0]
    acc = pgd_accuracy(model, x, y, norm="l2", epsilons=eps, steps=50)
    assert list(acc) == eps
    values = [acc[e] for e in eps]
    assert values[0] == pytest.approx(clean)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == 0.0
    # Linear model: robust exactly when correct and farther than eps from the plane.
    # PGD only finds existing adversarials; without a random start it finds all of them.
    correct = model(x).argmax(1) == y
    exact = pgd_accuracy(model, x, y, norm="l2", epsilons=eps, steps=50, random_start=False)
    for e in eps:
        expected = float((correct & (t.abs() > e)).float().mean())
        assert acc[e] >= expected - 1e-9
        assert exact[e] == pytest.approx(expected, abs=1.5 / len(y))


def test_pgd_linf_runs_and_is_monotone() -> None:
    model, x, y, _ = linear_problem(n=16, seed=1)
    acc = pgd_accuracy(model, x, y, norm="linf", epsilons=[0.05, 0.0, 0.01], steps=10)
    assert acc[0.0] == 1.0
    assert acc[0.0] >= acc[0.01] >= acc[0.05]
    with pytest.raises(ValueError):
        pgd_accuracy(model, x, y, norm="l1", epsilons=[0.1])


def test_ddn_median_close_to_hyperplane_distance() -> None:
    model, x, y, t = linear_problem()
    out = ddn_median_l2(model, x, y, steps=100, batch_size=16)
    per_image = out["per_image"]
    assert per_image.shape == (len(y),)
    analytic = t.abs().double()
    assert torch.isfinite(per_image).all()
    assert ((per_image - analytic).abs() <= 0.1 * analytic).all()
    assert out["median"] == pytest.approx(float(analytic.median()), rel=0.1)
    # DDN's adversarials are real: never closer than the hyperplane.
    assert (per_image >= analytic * (1 - 1e-4)).all()


def test_ddn_misclassified_is_zero_and_unreachable_is_inf() -> None:
    model, x, y, _ = linear_problem(n=8, seed=2)
    y = y.clone()
    y[0] = 1 - y[0]
    out = ddn_median_l2(model, x, y, steps=20)
    assert out["per_image"][0] == 0.0
    # A constant model can never be fooled.
    const = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():
        const[1].weight.zero_()
        const[1].bias.copy_(torch.tensor([1.0, 0.0]))
    out = ddn_median_l2(const, x, torch.zeros(8, dtype=torch.int64), steps=5)
    assert torch.isinf(out["per_image"]).all()
    assert out["median"] == math.inf
