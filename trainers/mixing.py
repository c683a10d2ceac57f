"""Batch composition: how many images of each batch are clean, noised by the current
generator, noised by replayed generators, or stylized (docs/METHOD.md).

Counts are exact integers for any batch size (largest-remainder rounding), so the
mix of a batch of 7 is as close to 50/30/20 as integers allow and always sums to 7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
