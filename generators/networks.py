"""Noise generators g_phi: z ~ N(0, I) -> delta, image-content independent (docs/METHOD.md).

1x1: four 1x1 convolutions C -> 20 -> 20 -> 20 -> C, ReLU after the first three, plus
a residual from z, so the noise is i.i.d. per pixel but its distribution is learned.
3x3: the second convolution has a 3x3 kernel without padding (correlation length
3x3 pixels); z is drawn 2 pixels larger per spatial dimension and the residual is
its centre crop. Weights ~ N(0, 0.01^2), biases 0, so at init the output is ~z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generators.rescale import clipping_aware_rescale

HIDDEN_CHANNELS = 20
INIT_STD = 0.01


class NoiseGenerator(nn.Module):
    """Learned noise distribution. ``kernel`` is the second layer's kernel size (1 or 3)."""

    def __init__(self, channels: int, *, kernel: int = 1, hidden: int = HIDDEN_CHANNELS) -> None:
        super().__init__()
        if kernel not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {kernel}")
        self.channels = channels
        self.kernel = kernel
        self.margin = kernel // 2  # pixels z is drawn larger on each side
        # The channels-last path (GPU; 3x3 on CPU): channel widths padded to a multiple of
        # this (None: 8 on CUDA, 1 elsewhere; 1: no padding).
        self.channel_align: int | None = None
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )
        for module in self.net:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        m = self.margin
        residual = z[:, :, m : z.shape[2] - m, m : z.shape[3] - m] if m else z
        if z.is_cuda or self.kernel != 1:
            return residual + self._pixels_last(z)
        return residual + self._channels_first(z)

    def _pixels_last(self, z: torch.Tensor) -> torch.Tensor:
        """GPU, and the 3x3 generator on CPU: the net in channels-last order, where a 1x1
        convolution is a per-pixel linear map, one GEMM ``[pixels, C] @ [C, C']`` per layer
        (and the 3x3 convolution gets a channels-last input, which oneDNN runs fastest).
        On a GPU the channel widths are zero-padded to a multiple of 8 (16 bytes in bf16):
        GEMMs over 20 or 3 channels are misaligned for the tensor cores. The padded
        channels stay exactly 0 (zero weights and bias, ReLU(0) = 0) and padding is part
        of the graph, so the function and the gradients of the real weights are unchanged."""
        align = getattr(self, "channel_align", None) or (GPU_CHANNEL_ALIGN if z.is_cuda else 1)
        h = z.permute(0, 2, 3, 1)
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                weight, bias = _padded(layer.weight, layer.bias, h.shape[-1], align)
                if layer.kernel_size == (1, 1):
                    h = F.linear(h, weight.flatten(1), bias)
                else:
                    h = F.conv2d(h.permute(0, 3, 1, 2), weight, bias).permute(0, 2, 3, 1)
            else:
                h = layer(h)
        return h[..., : self.channels].permute(0, 3, 1, 2)

    def _channels_first(self, z: torch.Tensor) -> torch.Tensor:
        """The 1x1 generator on CPU: the net on ``[C, pixels]`` matrices, each layer being
        ``W @ h + b``. With the pixels as the long, contiguous axis the GEMMs stream, the
        bias gradients are row sums and every elementwise pass runs over contiguous memory:
        on 2 threads the forward + backward for 128 MNIST digits takes ~12 ms against ~22
        in channels-last order. For one input channel z is already this matrix (a view)."""
        h = z.transpose(0, 1).reshape(z.shape[1], -1)
        for layer in self.net:
            if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1):
                weight, bias = layer.weight.flatten(1), layer.bias  # weight: [out, in]
                h = weight @ h if bias is None else torch.addmm(bias[:, None], weight, h)
            elif isinstance(layer, nn.ReLU):
                h = torch.relu_(h)  # on a fresh GEMM output, which no backward reads
            else:
                raise TypeError(f"the channels-first path has no rule for {layer}")
        return h.view(h.shape[0], z.shape[0], z.shape[2], z.shape[3]).transpose(0, 1)

    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        m = 2 * self.margin
        return (batch, self.channels, height + m, width + m)

    def sample(self, like: torch.Tensor, *, rng: torch.Generator | None = None) -> torch.Tensor:
        """Raw (un-rescaled) noise with the shape of the image batch ``like``."""
        b, _, h, w = like.shape
        z = torch.randn(
            self.latent_shape(b, h, w), device=like.device, dtype=like.dtype, generator=rng
        )
        return self(z)

    def perturb(
        self, x: torch.Tensor, *, epsilon: float, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        """``clip(x + delta)`` with ``||delta||_2 = epsilon`` exactly, per image."""
        return clipping_aware_rescale(x, self.sample(x, rng=rng), epsilon=epsilon)


GPU_CHANNEL_ALIGN = 8


def _padded(
    weight: torch.Tensor, bias: torch.Tensor | None, in_width: int, align: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``weight`` ([out, in, k, k]) zero-padded to ``in_width`` inputs and to a multiple of
    ``align`` outputs, and ``bias`` to match; unchanged when nothing needs padding."""
    out_ch, in_ch = weight.shape[:2]
    out_pad, in_pad = -out_ch % align, in_width - in_ch
    if not out_pad and not in_pad:
        return weight, bias
    weight = F.pad(weight, (0, 0, 0, 0, 0, in_pad, 0, out_pad))
    return weight, (F.pad(bias, (0, out_pad)) if bias is not None else None)


GENERATOR_KERNELS: dict[str, int] = {"1x1": 1, "3x3": 3}


def create_generator(kind: str, *, channels: int) -> NoiseGenerator:
    """Factory by name: ``"1x1"`` or ``"3x3"``."""
    if kind not in GENERATOR_KERNELS:
        raise KeyError(f"unknown generator {kind!r}; known: {sorted(GENERATOR_KERNELS)}")
    return NoiseGenerator(channels, kernel=GENERATOR_KERNELS[kind])
