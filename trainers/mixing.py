"""Batch composition: how many images of each batch are clean, noised by the current
generator, noised by replayed generators, or stylized (docs/METHOD.md), and the batch cut
into those parts (``MixedBatch``).

Counts are exact integers for any batch size (largest-remainder rounding), so the
mix of a batch of 7 is as close to 50/30/20 as integers allow and always sums to 7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from generators.networks import NoiseGenerator
from trainers.device import Precision

Parts = list[tuple[str, torch.Tensor, torch.Tensor]]  # (name, images, labels), in batch order

PARTS = ("clean", "current", "replay", "stylized")


@dataclass(frozen=True)
class Shares:
    clean: float = 0.5
    current: float = 0.3
    replay: float = 0.2
    stylized: float = 0.0

    def __post_init__(self) -> None:
        values = [getattr(self, p) for p in PARTS]
        if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"shares must be >= 0 and sum to 1, got {values}")

    def without_history(self) -> Shares:
        """Before any replay history exists, the replay share goes to the current generator."""
        return Shares(self.clean, self.current + self.replay, 0.0, self.stylized)


def largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total``; each within 1 of exact.

    Ties in the remainder go to the earlier weight, so results are deterministic.
    """
    wsum = float(sum(weights))
    if total < 0 or wsum <= 0:
        raise ValueError(f"need total >= 0 and positive weights, got {total}, {weights}")
    exact = [total * w / wsum for w in weights]
    counts = [math.floor(e + 1e-9) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def split_batch(batch_size: int, shares: Shares, *, has_history: bool) -> dict[str, int]:
    """Images per part for one batch, e.g. ``{"clean": 64, "current": 38, ...}``."""
    effective = shares if has_history else shares.without_history()
    counts = largest_remainder(batch_size, [getattr(effective, p) for p in PARTS])
    return dict(zip(PARTS, counts, strict=True))


def split_replay(count: int, generators: int) -> list[int]:
    """Replay images per sampled old generator (the reference: 0.1 of the batch each)."""
    if generators <= 0:
        return []
    return largest_remainder(count, [1.0] * generators)


@dataclass(frozen=True)
class MixedBatch:
    """One ANT batch cut into its parts, in order: clean, current generator, each replayed
    generator; and the stylized images, which come from their own stream (ANT+SIN)."""

    clean: tuple[torch.Tensor, torch.Tensor]
    current: tuple[torch.Tensor, torch.Tensor]
    replay: list[tuple[NoiseGenerator, torch.Tensor, torch.Tensor]]
    stylized: tuple[torch.Tensor, torch.Tensor] | None

    @classmethod
    def split(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        shares: Shares,
        replay: Sequence[NoiseGenerator],
        stylized: tuple[torch.Tensor, torch.Tensor] | None,
        precision: Precision,
    ) -> MixedBatch:
        """``replay``: the old generators sampled for this batch (empty: no history yet,
        and the replay share goes to the current generator)."""
        counts = split_batch(x.shape[0], shares, has_history=bool(replay))
        if stylized is None and counts["stylized"]:
            raise ValueError("shares.stylized > 0 needs a stylized batch (data.stylized_root)")
        start = 0

        def take(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal start
            chunk = x[start : start + n], y[start : start + n]
            start += n
            return chunk

        clean, current = take(counts["clean"]), take(counts["current"])
        old = [
            (g, *take(n))
            for g, n in zip(replay, split_replay(counts["replay"], len(replay)), strict=True)
        ]
        styled = None
        if counts["stylized"]:
            sx, sy = stylized  # type: ignore[misc]
            n = counts["stylized"]
            styled = precision.images(sx[:n]), sy[:n].to(x.device)
        return cls(clean, current, old, styled)

    def parts(self, current: torch.Tensor, replayed: Sequence[torch.Tensor]) -> Parts:
        """The classifier's parts, given the noised images of the current and replay parts."""
        parts: Parts = [("clean", *self.clean), ("current", current, self.current[1])]
        parts += [("replay", px, oy) for px, (_, _, oy) in zip(replayed, self.replay, strict=True)]
        if self.stylized is not None:
            parts.append(("stylized", *self.stylized))
        return parts
