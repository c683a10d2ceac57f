"""What a noise generator's clipped, rescaled noise does to an image's pixels.

On MNIST the strokes sit near 1 and the background at 0, so clipping removes every negative
change on the background and every positive one on the strokes. A generator whose output is
mostly negative therefore spends its whole l2 budget dimming the strokes, and where
epsilon reaches the digit's own l2 norm (median ~9.2 on MNIST) the exact rescaling erases
the digit: an image whose label is gone. The figures here tell such a generator from one
that lights up background pixels (salt-like noise) or from Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from generators.networks import NoiseGenerator, create_generator
from generators.rescale import clipping_aware_rescale

STROKE = 0.5  # a pixel at or above this is stroke (ink); below it counts as dark
BACKGROUND = 0.1  # a pixel below this is background


@dataclass(frozen=True)
class NoiseAnatomy:
    """``negative_share``: share of the raw generator output (before rescaling) below 0
    (0.5 for Gaussian noise). ``skew``: of the raw output (0 for Gaussian noise).
    ``strokes_dimmed``: share of stroke pixels (>= 0.5) the noisy image puts below 0.5.
    ``background_lit``: share of background pixels (< 0.1) the noisy image puts at >= 0.5.
    ``accuracy``: the classifier's top-1 accuracy on the noisy images (None: not measured).
    """

    negative_share: float
    skew: float
    strokes_dimmed: float
    background_lit: float
    accuracy: float | None = None


def skewness(values: torch.Tensor) -> float:
    """Sample skewness of all entries (0 for a symmetric distribution)."""
    v = values.double().flatten()
    centred = v - v.mean()
    std = centred.pow(2).mean().sqrt()
    return float(centred.pow(3).mean() / std.pow(3)) if std > 0 else 0.0


def anatomy(x: torch.Tensor, raw: torch.Tensor, noisy: torch.Tensor) -> NoiseAnatomy:
    """Figures for images ``x``, the raw noise ``raw`` and the noisy images ``noisy``."""
    strokes, background = x >= STROKE, x < BACKGROUND
    dimmed = (noisy < STROKE) & strokes
    lit = (noisy >= STROKE) & background
    return NoiseAnatomy(
        negative_share=float((raw < 0).float().mean()),
        skew=skewness(raw),
        strokes_dimmed=float(dimmed.sum() / strokes.sum().clamp(min=1)),
        background_lit=float(lit.sum() / background.sum().clamp(min=1)),
    )


@torch.no_grad()
def generator_anatomy(
    generator: NoiseGenerator,
    x: torch.Tensor,
    *,
    epsilon: float,
    classifier: nn.Module | None = None,
    y: torch.Tensor | None = None,
    seed: int = 0,
) -> NoiseAnatomy:
    """``anatomy`` of ``generator``'s noise at l2 size ``epsilon`` on ``x`` (seeded draw),
    with the classifier's accuracy on it when ``classifier`` and labels ``y`` are given.
    Leaves ``generator`` and ``classifier`` in eval mode."""
    rng = torch.Generator(device=x.device).manual_seed(seed)
    raw = generator.eval().sample(x, rng=rng)
    noisy = clipping_aware_rescale(x, raw, epsilon=epsilon)
    figures = anatomy(x, raw, noisy)
    if classifier is None or y is None:
        return figures
    accuracy = float((classifier.eval()(noisy).argmax(1) == y).float().mean())
    return replace(figures, accuracy=accuracy)


def checkpoint_generators(state: dict[str, Any]) -> list[tuple[str, NoiseGenerator]]:
    """The generators an ANT checkpoint holds, oldest first: the replay history
    (``replay <id>``, ids in the order they entered it) and the ``current`` generator.

    Raises:
        ValueError: the checkpoint holds no ANT generator (another mode, or not antray's).
    """
    config = state.get("config") or {}
    kind = (config.get("ant") or {}).get("generator")
    current = state.get("generator")
    if not isinstance(current, dict) or "net.0.weight" not in current or kind is None:
        raise ValueError("the checkpoint holds no noise generator (not an ANT run)")
    channels = int(current["net.0.weight"].shape[1])  # first layer: [hidden, channels, 1, 1]
    replay = ((state.get("service") or {}).get("replay") or {}).get("items", [])
    out = []
    for label, weights in [*((f"replay {i}", w) for i, w in replay), ("current", current)]:
        generator = create_generator(str(kind), channels=channels)
        generator.load_state_dict(weights)
        out.append((label, generator.eval()))
    return out
