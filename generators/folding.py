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

import weakref

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

# classifier -> its folded view, or None where nothing folds (a value must not refer to its
# key, or the entry would never be collected).
_VIEWS: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()


class FoldedConvBatchNorm(nn.Module):
    """``bn(conv(x))`` with ``bn`` in eval mode, computed as one convolution.

    Holds references to the classifier's own ``conv`` and ``bn``: nothing is copied."""

    def __init__(self, conv: nn.Conv2d, bn: _BatchNorm) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale  # type: ignore[operator]
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        return F.conv2d(x, weight, shift, conv.stride, conv.padding, conv.dilation, conv.groups)


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
    gm.graph.lint()
    gm.recompile()
    return gm


def eval_view(classifier: nn.Module) -> nn.Module:
    """``classifier``'s eval-mode function with batch norms folded (``fold_batch_norms``),
    built once per classifier and cached; the classifier itself when nothing folds. Call it
    only while the classifier is in eval mode (``generators.training.frozen``)."""
    if classifier not in _VIEWS:
        _VIEWS[classifier] = fold_batch_norms(classifier)
    view = _VIEWS[classifier]
    return classifier if view is None else view
