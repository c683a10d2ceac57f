"""Weather corruptions: fog (plasma-fractal haze) and brightness (HSV value shift)."""

from __future__ import annotations

import torch
from torch import Tensor


def plasma_fractal(
    batch: int,
    mapsize: int,
    wibble_decay: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``batch`` independent diamond-square height maps, [batch, mapsize, mapsize] in [0, 1].

    Same recurrence as the reference's plasma_fractal (itself from FLHerne/mapgen): corner value
    0, initial wibble 100, every midpoint is the mean of its 4 neighbours (toroidal wrap) plus
    wibble * U(-wibble, wibble), and wibble is divided by ``wibble_decay`` at each halving of the
    step, so a smaller decay keeps more fine-grained structure. Computed in ``dtype`` (float64
    as the reference; float32 halves the cost of many large maps at ~1e-7 relative precision)
    on the CPU from ``generator`` and then min-max normalised per map.

    Rather than writing each level into strided views of the full map (slow for many 256x256
    maps), each level keeps the known points as a dense n x n grid of corners and builds the
    2n x 2n grid of the next level by interleaving corners, edge midpoints and square centres.
    """
    if mapsize < 1 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    corners = torch.zeros(batch, 1, 1, dtype=dtype)
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        # total / 4 + wibble * U(-wibble, wibble), in place on the fresh uniform draws
        jitter = torch.rand(total.shape, generator=generator, dtype=dtype)
        return jitter.mul_(2.0 * wibble * wibble).sub_(wibble * wibble).add_(total, alpha=0.25)

    while corners.shape[-1] < mapsize:
        n = corners.shape[-1]
        # squares: centre of each square of corners
        total = corners + corners.roll(-1, dims=1)
        centres = wibbled_mean(total + total.roll(-1, dims=2))
        # diamonds: edge midpoints from the two adjacent centres and the two adjacent corners
        top = wibbled_mean(centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2))
        left = wibbled_mean(centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1))
        # next level: corners / top midpoints on even rows, left midpoints / centres on odd rows
        even = torch.stack([corners, top], dim=-1).reshape(batch, n, 2 * n)
        odd = torch.stack([left, centres], dim=-1).reshape(batch, n, 2 * n)
        corners = torch.stack([even, odd], dim=2).reshape(batch, 2 * n, 2 * n)
        wibble /= wibble_decay

    flat = corners.reshape(batch, -1)
    flat.sub_(flat.amin(dim=1, keepdim=True))
    top = flat.amax(dim=1, keepdim=True)
    return flat.div_(torch.where(top > 0, top, 1.0)).reshape(batch, mapsize, mapsize)


def fog(x: Tensor, param: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Adds ``strength`` * a plasma fractal (one per image, shared by its channels) and rescales
    by max / (max + strength) so the image keeps its peak brightness, as the reference does.

    ``param`` is (strength, wibble_decay). The fractal is generated at the next power of two
    >= max(H, W) and cropped to HxW (the reference: 256 cropped to 224, and 32 for CIFAR).
    """
    strength, wibble_decay = param
    b, _, h, w = x.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()
    fractal = plasma_fractal(b, mapsize, wibble_decay, generator)[:, None, :h, :w]
    fractal = fractal.to(device=x.device, dtype=x.dtype)
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + strength * fractal) * max_val / (max_val + strength)).clamp(0.0, 1.0)


def brightness(x: Tensor, offset: float, generator: torch.Generator) -> Tensor:
    """Raises the HSV value channel by ``offset`` (clipped to 1), keeping hue and saturation.

    With hue and saturation fixed every RGB channel is proportional to V = max(R, G, B), so
    rgb -> hsv -> (V + offset, clipped) -> rgb equals scaling the pixel by V' / V; black pixels
    (V = 0, saturation 0 in skimage) become grey V'. This closed form avoids the HSV round trip.
    For gray images (C = 1) V is the pixel itself, so this is clip(x + offset).
    """
    del generator
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + offset).clamp(0.0, 1.0)
    safe = torch.where(value > 0, value, torch.ones_like(value))
    scaled = torch.where(value > 0, x * (new_value / safe), new_value.expand_as(x))
    return scaled.clamp(0.0, 1.0)
