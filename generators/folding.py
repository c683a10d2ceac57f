"""The frozen classifier of a generator step, with eval-mode batch norm folded into convs.

A generator step runs the classifier in eval mode, where each ``BatchNorm2d`` is a fixed
per-channel affine map: ``bn(conv(x))`` equals one convolution with the weights scaled by
``gamma / sqrt(var + eps)`` and a bias ``beta - mean * gamma / sqrt(var + eps)``. Folding
removes the batch-norm kernels from the step's forward and backward (on an H100 in bf16 +
channels_last they ran as slow broadcasting kernels followed by a layout copy before every
convolution's backward), and it is the same function, so the generator's objective is
unchanged.

The fold is recomputed in every forward from the classifier's current weights and running
statistics (a few small per-channel ops per layer), so the view never goes stale while the
classifier trains. The view is built once per classifier by tracing it with ``torch.fx``;
it shares the classifier's modules, parameters and buffers. A classifier that cannot be
traced, or has no convolution whose only user is a batch norm, is used as it is.
"""

from __future__ import annotations

import operator
import weakref

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

# classifier -> its folded view, or None where nothing folds (a value must not refer to its
# key, or the entry would never be collected).
_VIEWS: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()


class FoldedConvBatchNorm(nn.Module):
    """``bn(conv(x))`` with ``bn`` in eval mode, computed as one convolution; with ``relu``
    also ``relu(bn(conv(x)))``, and with ``residual`` ``relu(bn(conv(x)) + z)``.

    Holds references to the classifier's own ``conv`` and ``bn``: nothing is copied. On
    CUDA the bias, the residual and the ReLU run inside cuDNN's fused convolution
    (``_ConvBiasReLU``), where an unfused view spends one full pass over the activation on
    each of them; elsewhere (or where cuDNN declines the fusion) it is the plain sequence."""

    def __init__(
        self, conv: nn.Conv2d, bn: _BatchNorm, *, relu: bool = False, residual: bool = False
    ) -> None:
        super().__init__()
        if residual and not relu:
            raise ValueError("residual is fused only together with the ReLU after it")
        self.conv = conv
        self.bn = bn
        self.relu = relu
        self.residual = residual
        self.fused = relu and isinstance(conv.padding, tuple)  # cuDNN's op takes int padding

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded ``(weight, bias)`` from the current weights and running statistics."""
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale  # type: ignore[operator]
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return conv.weight * scale.reshape(-1, 1, 1, 1), shift

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        conv = self.conv
        weight, bias = self.folded()
        if self.fused and x.is_cuda and torch.backends.cudnn.enabled:
            try:
                return _fused(x, weight, bias, z, conv)
            except RuntimeError:  # no cuDNN engine for this shape / dtype: unfused from now
                self.fused = False
        y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        if self.residual:
            y = y + z
        return F.relu(y) if self.relu else y


def _fused(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    z: torch.Tensor | None,
    conv: nn.Conv2d,
) -> torch.Tensor:
    if torch.is_autocast_enabled("cuda"):  # a custom Function is not autocast: cast as conv does
        dtype = torch.get_autocast_dtype("cuda")
        x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        z = z.to(dtype) if z is not None else None
    else:
        weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    weight = weight.contiguous(memory_format=memory_format_of(x))
    return _ConvBiasReLU.apply(
        x, weight, bias, z, list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups
    )


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a 4-D tensor laid out that way (and not also plain
    contiguous, as 1x1 images are), else ``contiguous_format``."""
    if (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    ):
        return torch.channels_last
    return torch.contiguous_format


class _ConvBiasReLU(torch.autograd.Function):
    """``relu(conv2d(x, weight, bias) [+ z])`` as one cuDNN call; the backward masks the
    gradient by the output and runs the convolution's backward for what needs a gradient
    (in a generator step: the input only)."""

    @staticmethod
    def forward(ctx, x, weight, bias, z, stride, padding, dilation, groups):  # type: ignore[override]
        if z is None:
            out = torch.cudnn_convolution_relu(x, weight, bias, stride, padding, dilation, groups)
        else:
            out = torch.cudnn_convolution_add_relu(
                x, weight, z, 1.0, bias, stride, padding, dilation, groups
            )
        ctx.save_for_backward(x, weight, out)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.has_z = z is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight, out = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        masked = torch.ops.aten.threshold_backward(grad, out, 0)
        need_x, need_w, need_b, need_z = ctx.needs_input_grad[:4]
        gx = gw = gb = None
        if need_x or need_w or need_b:
            gx, gw, gb = torch.ops.aten.convolution_backward(
                masked.contiguous(memory_format=memory_format_of(out)),
                x,
                weight,
                [weight.shape[0]] if need_b else None,
                stride,
                padding,
                dilation,
                False,
                [0] * len(stride),
                groups,
                [need_x, need_w, need_b],
            )
        gz = masked if ctx.has_z and need_z else None
        return gx, gw, gb, gz, None, None, None, None


def _foldable(conv: object, bn: object) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.padding_mode == "zeros"
        and isinstance(bn, _BatchNorm)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )


def fold_batch_norms(classifier: nn.Module) -> nn.Module | None:
    """A ``torch.fx`` view of ``classifier`` in which every ``bn(conv(x))`` (the conv's
    output used by the batch norm alone) is a ``FoldedConvBatchNorm``; valid in eval mode
    only. ``None`` when the classifier cannot be traced or has nothing to fold."""
    try:
        gm = fx.symbolic_trace(classifier)
    except Exception:  # data-dependent control flow, untraceable custom ops: keep as is
        return None
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and len(source.users) == 1
            and len(source.args) == 1
            and not source.kwargs
        ):
            continue
        # .get: a node may read an earlier fold's output (not in the snapshot of modules)
        conv, bn = modules.get(source.target), modules.get(node.target)
        if not _foldable(conv, bn):
            continue
        name = f"folded_{folded}"
        gm.add_submodule(name, FoldedConvBatchNorm(conv, bn))  # type: ignore[arg-type]
        with gm.graph.inserting_before(node):
            replacement = gm.graph.call_module(name, source.args)
        node.replace_all_uses_with(replacement)
        gm.graph.erase_node(node)
        gm.graph.erase_node(source)
        folded += 1
    if not folded:
        return None
    _fuse_activations(gm)
    gm.graph.lint()
    gm.recompile()
    return gm


_RELUS = (F.relu, torch.relu)
_ADDS = (operator.add, operator.iadd, torch.add)


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), nn.ReLU)
    return node.op == "call_function" and node.target in _RELUS and len(node.args) == 1


def _sole_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _fuse_activations(gm: fx.GraphModule) -> None:
    """Folded convolutions followed by a ReLU (``relu(f(x))``) or by a residual sum and a
    ReLU (``relu(f(x) + z)``, a ResNet block's end) become one fused call."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not str(node.target).startswith("folded_"):
            continue
        folded = gm.get_submodule(str(node.target))
        user = _sole_user(node)
        if user is None:
            continue
        if _is_relu(gm, user):
            relu, extra = user, ()
        elif (
            user.op == "call_function"
            and user.target in _ADDS
            and len(user.args) == 2
            and not user.kwargs
            and all(isinstance(a, fx.Node) for a in user.args)
            and user.args[0] is not user.args[1]
            and (relu := _sole_user(user)) is not None
            and _is_relu(gm, relu)
        ):
            other = user.args[1] if user.args[0] is node else user.args[0]
            extra = (other,)
        else:
            continue
        name = f"{node.target}_relu"
        gm.add_submodule(
            name,
            FoldedConvBatchNorm(folded.conv, folded.bn, relu=True, residual=bool(extra)),
        )
        # Inserted where the ReLU was: the residual branch is computed by then.
        with gm.graph.inserting_before(relu):
            fused = gm.graph.call_module(name, (*node.args, *extra))
        relu.replace_all_uses_with(fused)
        for dead in [relu, user, node] if extra else [relu, node]:
            gm.graph.erase_node(dead)
        gm.delete_submodule(str(node.target))


def eval_view(classifier: nn.Module) -> nn.Module:
    """``classifier``'s eval-mode function with batch norms folded (``fold_batch_norms``),
    built once per classifier and cached; the classifier itself when nothing folds. Call it
    only while the classifier is in eval mode (``generators.training.frozen``). The view
    holds the submodules it traced: weights and statistics may change, but a submodule
    replaced after the first call (e.g. a batch norm swapped for another class) is not seen."""
    if classifier not in _VIEWS:
        _VIEWS[classifier] = fold_batch_norms(classifier)
    view = _VIEWS[classifier]
    return classifier if view is None else view
