"""Digital corruptions: contrast reduction, pixelation and JPEG compression."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg


def contrast(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    """Shrinks every pixel's deviation from its image's per-channel mean by ``factor``.

    The reference averages over the two spatial axes of an HxWxC array, i.e. one mean per image
    and channel, so colour balance is kept and only the contrast drops.
    """
    del generator
    means = x.mean(dim=(2, 3), keepdim=True)
    return ((x - means) * factor + means).clamp(0.0, 1.0)


def pil_box_matrix(size_in: int, size_out: int) -> Tensor:
    """[size_out, size_in] float64 matrix of PIL's BOX resampling along one axis.

    PIL weighs input pixel i into output pixel o iff its centre i + 0.5 lies in the output
    pixel's footprint (c - s/2, c + s/2] with c = (o + 0.5) * scale and s = max(scale, 1),
    scale = size_in / size_out. Downscaling therefore averages whole pixels (not fractional
    areas, unlike torch's 'area' mode), and upscaling picks the pixel under the output centre.
    """
    scale = size_in / size_out
    support = max(scale, 1.0) / 2.0
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
    pixels = torch.arange(size_in, dtype=torch.float64) + 0.5
    inside = (pixels[None, :] > centres[:, None] - support) & (
        pixels[None, :] <= centres[:, None] + support
    )
    weights = inside.to(torch.float64)
    return weights / weights.sum(dim=1, keepdim=True)


def pixelate(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    """Downscales to int(side * factor) with PIL BOX and back up to the original size.

    The reference does both resizes with PIL's BOX filter; going up BOX is a nearest-centre pick,
    so the result is blocky. Each axis becomes one matrix product (down then up composed), which
    batches over images and channels; PIL's 8-bit rounding between the passes is not applied.
    """
    del generator
    _, _, h, w = x.shape
    small_h, small_w = max(1, int(h * factor)), max(1, int(w * factor))
    rows = pil_box_matrix(small_h, h) @ pil_box_matrix(h, small_h)  # [H, H]
    cols = pil_box_matrix(small_w, w) @ pil_box_matrix(w, small_w)  # [W, W]
    rows = rows.to(device=x.device, dtype=x.dtype)
    cols = cols.to(device=x.device, dtype=x.dtype)
    return (rows @ x @ cols.T).clamp(0.0, 1.0)


def jpeg_compression(x: Tensor, quality: int, generator: torch.Generator) -> Tensor:
    """JPEG encode/decode at ``quality`` with libjpeg via torchvision, image by image on the CPU.

    Like the reference (PIL save as JPEG) the image is first quantised to 8 bits and libjpeg's
    default 4:2:0 chroma subsampling applies to colour images; the result is moved back to the
    input's device and dtype.
    """
    del generator
    images = (x.detach().clamp(0.0, 1.0) * 255.0).round().to(device="cpu", dtype=torch.uint8)
    encoded = encode_jpeg([img.contiguous() for img in images], quality=int(quality))
    decoded = decode_jpeg(encoded, mode=ImageReadMode.UNCHANGED)
    out = torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255.0
    return out.clamp(0.0, 1.0)
