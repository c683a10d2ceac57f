"""Weather corruptions: fog (plasma-fractal haze) and brightness (HSV value shift)."""

from __future__ import annotations

import torch
from torch import Tensor


def plasma_fractal(
    batch: int, mapsize: int, wibble_decay: float, generator: torch.Generator
) -> Tensor:
    """``batch`` independent diamond-square height maps, [batch, mapsize, mapsize] in [0, 1].

    Same recurrence as the reference's plasma_fractal (itself from FLHerne/mapgen): corner value
    0, initial wibble 100, every midpoint is the mean of its 4 neighbours (toroidal wrap) plus
    wibble * U(-wibble, wibble), and wibble is divided by ``wibble_decay`` at each halving of the
    step, so a smaller decay keeps more fine-grained structure. Computed in float64 on the CPU
    from ``generator`` and then min-max normalised per map.
    """
    if mapsize < 1 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    maps = torch.zeros(batch, mapsize, mapsize, dtype=torch.float64)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        jitter = torch.rand(total.shape, generator=generator, dtype=torch.float64)
        return total / 4 + wibble * (jitter * 2.0 - 1.0) * wibble

    while step >= 2:
        half = step // 2
        # squares: centre of each square of corners
        corners = maps[:, ::step, ::step]
        total = corners + corners.roll(-1, dims=1)
        total = total + total.roll(-1, dims=2)
        maps[:, half::step, half::step] = wibbled_mean(total)
        # diamonds: edge midpoints from the two adjacent centres and the two adjacent corners
        centres = maps[:, half::step, half::step]
        corners = maps[:, ::step, ::step]
        total = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, ::step, half::step] = wibbled_mean(total)
        total = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half::step, ::step] = wibbled_mean(total)
        step = half
        wibble /= wibble_decay

    flat = maps.reshape(batch, -1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    top = flat.amax(dim=1, keepdim=True)
    flat = torch.where(top > 0, flat / torch.where(top > 0, top, 1.0), flat)
    return flat.reshape(batch, mapsize, mapsize)


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
