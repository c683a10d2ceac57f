"""MNIST-C's line corruptions: a dotted line across the image and a zigzag.

Both draw with the reference's ``line_from_points``: a pixel at row r, column c gets
1 + log(1 - d / 2.3), clipped to [0, 1], where d = |r - f(c)| is the *vertical* distance to the
line f through the two end points, and columns left of floor(c0) or from ceil(c1) on are blank.
The drawing is added to the digit and clipped. All segments of a batch are drawn at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from evaluation.corruptions.mnist_c.params import LINE_WIDTH, SIDE, ZIGZAG


def draw_segments(c0: Tensor, r0: Tensor, c1: Tensor, r1: Tensor, side: int = SIDE) -> Tensor:
    """Intensity maps [..., side, side] of segments given by float64 end points of shape [...].

    A vertical segment (c1 == c0) draws nothing, as in the reference.
    """
    c0, r0, c1, r1 = (t.to(torch.float64)[..., None, None] for t in (c0, r0, c1, r1))
    grid = torch.arange(side, dtype=torch.float64)
    cols, rows = grid.view(1, side), grid.view(side, 1)
    run = c1 - c0
    slope = (r1 - r0) / torch.where(run == 0, torch.ones_like(run), run)
    dist = (rows - (slope * (cols - c0) + r0)).abs().clamp(max=LINE_WIDTH - 1e-10)
    ink = (torch.log(1.0 - dist / LINE_WIDTH) + 1.0).clamp(0.0, 1.0)
    # numpy's corruption[:, :l] = 0 and corruption[:, r:] = 0 with l = floor(c0), r = ceil(c1)
    inside = (cols >= torch.floor(c0)) & (cols < torch.ceil(c1)) & (run != 0)
    return torch.where(inside, ink, torch.zeros_like(ink))


def dotted_line_map(r0: Tensor, r1: Tensor, side: int = SIDE) -> Tensor:
    """[B, side, side] dashes of the line from (col 0, row r0) to (col side - 1, row r1).

    The reference blanks every other pair of columns starting with columns 0-1 (pairs
    [0, 2), [4, 6), ...) and, through ceil(27) = 27, the last column too.
    """
    zeros = torch.zeros_like(r0, dtype=torch.float64)
    line = draw_segments(zeros, r0, zeros + (side - 1), r1, side)
    dashes = (torch.arange(side) // 2) % 2 == 1
    return line * dashes.to(torch.float64)


def dotted_line(x: Tensor, generator: torch.Generator) -> Tensor:
    """Adds a dashed line between random rows (0..26) of the left and right edges."""
    ends = torch.randint(0, SIDE - 1, (x.shape[0], 2), generator=generator)
    ink = dotted_line_map(ends[:, 0], ends[:, 1], x.shape[-1])
    return (x + ink[:, None].to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


def zigzag_points(r0: Tensor, r1: Tensor) -> tuple[Tensor, Tensor]:
    """Columns and rows [B, K] of the zigzag's corners for start rows r0 and end rows r1.

    Same construction as the reference: along a baseline of length d = 23 / cos(theta) from
    (col 2, row r0) towards (col 25, row r1), corners (0, 0), then ((2i + 1) a, (-1)^i b) for
    i = 0 .. (d - a) // 2a, then, when d is not a multiple of 2a, an end point
    (d, r_last / (2 (d - 2a floor(d / 2a)))) (the reference's formula, kept as is), all rotated
    by theta. With |r1 - r0| <= 5, d lies in [23, 23.6], so every image has the same 8 corners.
    """
    a, b, c_start, c_end = ZIGZAG
    theta = torch.atan((r1 - r0).to(torch.float64) / (c_end - c_start))
    d = (c_end - c_start) / torch.cos(theta)
    counts = ((d - a) // (2 * a)).unique()
    if counts.numel() != 1:  # impossible for the published ranges; guards edits to them
        raise AssertionError(f"zigzag tooth counts differ across the batch: {counts.tolist()}")
    teeth = int(counts.item()) + 1
    i = torch.arange(teeth, dtype=torch.float64)
    along = torch.cat([torch.zeros(1, dtype=torch.float64), (2 * i + 1) * a])
    across = torch.cat([torch.zeros(1, dtype=torch.float64), (-1.0) ** i * b])
    along, across = along.expand(d.shape[0], -1), across.expand(d.shape[0], -1)
    whole = (2 * a) * torch.floor(d / (2 * a))
    if bool((d != whole).any()):
        if not bool((d != whole).all()):
            raise AssertionError("zigzag end points differ in number across the batch")
        last = across[:, -1:] / (2 * (d[:, None] - whole[:, None]))
        along = torch.cat([along, d[:, None]], dim=1)
        across = torch.cat([across, last], dim=1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    cols = cos * along - sin * across + c_start
    rows = sin * along + cos * across + r0.to(torch.float64)[:, None]
    return cols, rows


def zigzag_map(r0: Tensor, r1: Tensor, side: int = SIDE) -> Tensor:
    """[B, side, side] ink of the zigzag (segments summed; the caller clips)."""
    cols, rows = zigzag_points(r0, r1)
    segments = draw_segments(cols[:, :-1], rows[:, :-1], cols[:, 1:], rows[:, 1:], side)
    return segments.sum(dim=1)


def zigzag(x: Tensor, generator: torch.Generator) -> Tensor:
    """Adds a zigzag line starting at a random row (0..26) of column 2, drifting by -5..4 rows.

    Adding the segments one by one with a clip after each, as the reference does, equals
    clipping the sum once, since every segment is non-negative.
    """
    r0 = torch.randint(0, SIDE - 1, (x.shape[0],), generator=generator)
    r1 = r0 + torch.randint(-5, 5, (x.shape[0],), generator=generator)
    ink = zigzag_map(r0, r1, x.shape[-1])
    return (x + ink[:, None].to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


__all__ = ["dotted_line", "draw_segments", "zigzag"]
