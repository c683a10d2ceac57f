"""evaluation/noise_anatomy.py: which pixels a generator's clipped, rescaled noise moves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluation.noise_anatomy import (
    anatomy,
    checkpoint_generators,
    generator_anatomy,
    skewness,
)
from generators.networks import create_generator
from generators.rescale import clipping_aware_rescale


def digits(n: int = 8) -> torch.Tensor:
    """Toy digits: a 10x4 stroke of ones on a black 28x28 background (l2 norm ~6.3)."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 9:19, 12:16] = 1.0
    return x


class SignedNoise(nn.Module):
    """A stand-in generator: |z| or -|z| (all positive or all negative noise)."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def sample(self, like: torch.Tensor, *, rng: torch.Generator | None = None) -> torch.Tensor:
        return self.sign * torch.randn(like.shape, generator=rng).abs()


def test_skewness_of_symmetric_and_one_sided_samples() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, generator=g)
    assert abs(skewness(z)) < 0.02
    # |z| is a half-normal: skew sqrt(2)(4 - pi) / (pi - 2)^1.5 = 0.995
    assert skewness(z.abs()) == pytest.approx(0.995, abs=0.02)
    assert skewness(-z.abs()) == pytest.approx(-0.995, abs=0.02)
    assert skewness(torch.ones(10)) == 0.0


def test_negative_noise_at_the_digits_norm_erases_the_strokes() -> None:
    x = digits()
    norm = float(x[0].norm())
    eraser = SignedNoise(-1.0)
    figures = generator_anatomy(eraser, x, epsilon=norm + 1.0)  # beyond reach: saturated
    assert figures.strokes_dimmed == 1.0  # every stroke pixel clipped to 0
    assert figures.background_lit == 0.0  # negative noise on black stays black
    assert figures.skew < -0.9
    # at half the norm the same direction only dims: a minority of stroke pixels cross 0.5
    half = generator_anatomy(eraser, x, epsilon=0.5 * norm)
    assert half.strokes_dimmed < 0.5
    assert figures.negative_share == 1.0


def test_positive_noise_lights_the_background_and_leaves_strokes() -> None:
    x = digits()
    figures = generator_anatomy(SignedNoise(1.0), x, epsilon=10.0)
    assert figures.strokes_dimmed == 0.0  # positive noise on ones is clipped away
    assert 0.0 < figures.background_lit < 1.0
    assert figures.skew > 0.9
    assert figures.negative_share == 0.0


def test_anatomy_counts_pixels_exactly() -> None:
    x = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    noisy = torch.tensor([[[[0.2, 0.9, 0.7, 0.05]]]])
    figures = anatomy(x, noisy - x, noisy)
    assert figures.negative_share == 0.5  # raw changes -0.8, -0.1, +0.7, +0.05
    assert figures.strokes_dimmed == 0.5  # one of two strokes below 0.5
    assert figures.background_lit == 0.5  # one of two background pixels at >= 0.5
    assert figures.accuracy is None


def test_accuracy_is_measured_on_the_rescaled_noisy_images() -> None:
    x = digits(4)
    y = torch.tensor([0, 1, 2, 3])
    seen: list[torch.Tensor] = []

    class Recorder(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(images)
            return nn.functional.one_hot(torch.tensor([0, 1, 0, 0]), 10).float()

    generator = create_generator("1x1", channels=1)
    figures = generator_anatomy(generator, x, epsilon=3.0, classifier=Recorder(), y=y, seed=5)
    assert figures.accuracy == 0.5
    rng = torch.Generator().manual_seed(5)
    expected = clipping_aware_rescale(x, generator.sample(x, rng=rng), epsilon=3.0)
    torch.testing.assert_close(seen[0], expected)
    distances = (seen[0] - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(distances, torch.full((4,), 3.0), atol=1e-4, rtol=0)


def test_checkpoint_generators_in_history_order_then_current() -> None:
    made = [create_generator("3x3", channels=1) for _ in range(3)]
    for i, g in enumerate(made):
        for p in g.parameters():
            nn.init.constant_(p, 0.01 * (i + 1))
    state = {
        "config": {"ant": {"generator": "3x3"}},
        "generator": made[2].state_dict(),
        "service": {"replay": {"items": [(4, made[0].state_dict()), (7, made[1].state_dict())]}},
    }
    out = checkpoint_generators(state)
    assert [label for label, _ in out] == ["replay 4", "replay 7", "current"]
    for (_, loaded), original in zip(out, made, strict=True):
        assert loaded.kernel == 3 and not loaded.training
        for a, b in zip(loaded.parameters(), original.parameters(), strict=True):
            torch.testing.assert_close(a, b)


def test_checkpoint_generators_reads_the_channel_count_from_the_weights() -> None:
    rgb = create_generator("1x1", channels=3)
    state = {"config": {"ant": {"generator": "1x1"}}, "generator": rgb.state_dict()}
    [(label, loaded)] = checkpoint_generators(state)
    assert label == "current" and loaded.channels == 3
    assert loaded.sample(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)


def test_checkpoint_generators_rejects_a_run_without_generator() -> None:
    with pytest.raises(ValueError, match="no noise generator"):
        checkpoint_generators({"config": {"noise": {"mode": "gnt"}}, "model": {}})
    with pytest.raises(ValueError, match="no noise generator"):
        checkpoint_generators({"config": {}, "generator": {"other.weight": torch.zeros(1)}})
