"""A convolution over few input channels computed as one GEMM over image patches (CPU).

On CPU, oneDNN runs the Madry CNN's first convolution (1 input channel, 5x5, 32 outputs)
and its input gradient far below the speed of the rest of the net: ~10 ms each for a
batch of 128 MNIST digits on 2 threads, against ~3 ms for the same arithmetic as a
``[N*H*W, C*k*k] @ [C*k*k, out]`` matrix product. The generator step of ANT needs that
input gradient on every batch, so this layer is on ANT's critical path twice.

``PatchConv2d`` is an ``nn.Conv2d`` (same parameters, same state dict, same function);
on CPU, for stride 1, no dilation and one group, it computes

    patches = the k x k neighbourhood of every pixel, zero-padded   [N*H*W, C*k*k]
    out     = patches @ weight.T + bias                            [N, out, H, W]

and returns the output in channels-last order (the GEMM writes it that way; max-pooling
and the next convolution are faster on it). The backward is written out: the weight
gradient is ``grad.T @ patches``; the input gradient is ``weight.T @ grad.T`` (one GEMM),
scattered back with one shifted add per kernel tap instead of an autograd scatter through
the patch view. Elsewhere (CUDA, strides, groups) it is ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair


class _PatchConv(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        out_ch, _, kh, kw = weight.shape
        ph, pw = padding
        h_out, w_out = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
        xp = F.pad(x, (pw, pw, ph, ph))
        s = xp.stride()
        windows = xp.as_strided((n, h_out, w_out, c, kh, kw), (s[0], s[2], s[3], s[1], s[2], s[3]))
        patches = windows.reshape(n * h_out * w_out, c * kh * kw)  # the one copy
        flat = weight.reshape(out_ch, -1)
        out = patches @ flat.t() if bias is None else torch.addmm(bias, patches, flat.t())
        ctx.save_for_backward(patches if ctx.needs_input_grad[1] else None, weight)
        ctx.geometry = (h, w, ph, pw)  # the rest is in the shapes of grad and weight
        return out.view(n, h_out, w_out, out_ch).permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable  # the saved patches carry no graph: a second derivative must raise
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        patches, weight = ctx.saved_tensors
        h, w, ph, pw = ctx.geometry
        n, _, h_out, w_out = grad.shape
        out_ch, c, kh, kw = weight.shape
        g = grad.permute(0, 2, 3, 1).reshape(n * h_out * w_out, out_ch)  # free if channels-last
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            # [C*k*k, N*H*W]: per tap a contiguous plane, added at the tap's offset.
            taps = (weight.reshape(out_ch, -1).t() @ g.t()).view(c, kh, kw, n, h_out, w_out)
            gxp = grad.new_zeros(n, c, h + 2 * ph, w + 2 * pw)
            for i in range(kh):
                for j in range(kw):
                    gxp[:, :, i : i + h_out, j : j + w_out] += taps[:, i, j].transpose(0, 1)
            gx = gxp[:, :, ph : ph + h, pw : pw + w]
        if ctx.needs_input_grad[1]:
            gw = (g.t() @ patches).view_as(weight)
        if ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb, None


@fx.wrap  # one node in a torch.fx trace (generators.folding traces classifiers)
def patch_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1) for a batch ``[N, C, H, W]``:
    a patch GEMM on CPU, the plain convolution elsewhere and under CPU autocast (whose
    low-precision GEMM the written-out backward does not mirror)."""
    if x.device.type != "cpu" or x.dim() != 4 or torch.is_autocast_enabled("cpu"):
        return F.conv2d(x, weight, bias, padding=padding)
    return _PatchConv.apply(x, weight, bias, _pair(padding))


class PatchConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as a patch GEMM on CPU where the geometry allows it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patchable = (
            self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)  # not "same" / "valid"
        )
        if not patchable:
            return super().forward(x)
        return patch_conv2d(x, self.weight, self.bias, self.padding)  # type: ignore[arg-type]
