"""Batch norm folded into convolutions for the generator step: the same eval-mode function."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generators.folding import FoldedConvBatchNorm, _ConvBiasReLU, eval_view, fold_batch_norms
from generators.training import frozen
from trainers.models import create_model


def _randomise_batch_norms(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.4 * torch.rand(m.num_features, generator=g) - 0.2)


def _eval_and_input_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    return out.detach(), grad


def _assert_same_eval_function(model: nn.Module, view: nn.Module, x: torch.Tensor) -> None:
    """Output and input gradient of ``view`` equal the eval-mode classifier's (float64)."""
    with frozen(model):
        ref_out, ref_grad = _eval_and_input_grad(model, x)
        out, grad = _eval_and_input_grad(view, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def _folded_count(view: nn.Module) -> int:
    return sum(isinstance(m, FoldedConvBatchNorm) for m in view.modules())


def test_resnet_view_folds_every_batch_norm_and_computes_the_same_function():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10).double()
    _randomise_batch_norms(model)
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    view = eval_view(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert _folded_count(view) == n_bn == 20
    _assert_same_eval_function(model, view, x)


def test_view_follows_the_classifier_as_it_trains():
    torch.manual_seed(1)
    model = create_model("resnet18", num_classes=10).double()
    view = eval_view(model)
    # Train a step: weights and running statistics move after the view was built.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    assert eval_view(model) is view  # cached, not rebuilt
    _assert_same_eval_function(model, view, x)


def test_view_shares_the_classifier_parameters_and_adds_none():
    model = create_model("resnet18", num_classes=10)
    view = eval_view(model)
    ours = {id(p) for p in model.parameters()}
    assert {id(p) for p in view.parameters()} == ours


def test_model_without_batch_norm_is_used_as_it_is():
    model = create_model("madry_cnn", num_classes=10)
    assert fold_batch_norms(model) is None
    assert eval_view(model) is model


class _ConvBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)


class _Branchy(_ConvBatchNorm):
    """A conv whose output feeds a batch norm and a skip: folding would change the skip."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.bn(h) + h


class _Untraceable(_ConvBatchNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.bn(self.conv(x))
        return x


@pytest.mark.parametrize("cls", [_Branchy, _Untraceable])
def test_what_cannot_be_folded_exactly_is_left_alone(cls):
    model = cls()
    assert fold_batch_norms(model) is None
    assert eval_view(model) is model


def test_cached_view_dies_with_its_classifier():
    model = create_model("resnet18", num_classes=10)
    eval_view(model)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_resnet_blocks_end_in_fused_relu_and_residual_calls():
    view = eval_view(create_model("resnet50", num_classes=10))
    folded = [m for m in view.modules() if isinstance(m, FoldedConvBatchNorm)]
    # Stem + 16 bottlenecks x (two conv-bn-relu, one conv-bn-add-relu); 4 downsample convs.
    assert sum(m.relu and not m.residual for m in folded) == 1 + 2 * 16
    assert sum(m.residual for m in folded) == 16
    assert sum(not m.relu for m in folded) == 4


def _reference_cudnn(monkeypatch):
    """cuDNN's fused ops stood in for by their definitions, so the custom backward is
    checked on CPU (the real ops run on the GPU benchmark)."""

    def conv_relu(x, w, b, stride, padding, dilation, groups):
        return F.relu(F.conv2d(x, w, b, stride, padding, dilation, groups))

    def conv_add_relu(x, w, z, alpha, b, stride, padding, dilation, groups):
        return F.relu(F.conv2d(x, w, b, stride, padding, dilation, groups) + alpha * z)

    monkeypatch.setattr(torch, "cudnn_convolution_relu", conv_relu)
    monkeypatch.setattr(torch, "cudnn_convolution_add_relu", conv_add_relu)


@pytest.mark.parametrize("residual", [False, True])
def test_fused_conv_relu_backward_matches_autograd(monkeypatch, residual):
    _reference_cudnn(monkeypatch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    z = torch.randn(2, 6, 4, 4, dtype=torch.float64, generator=g, requires_grad=True)
    z = z if residual else None
    args = ([2, 2], [1, 1], [1, 1], 1)
    inputs = (x, w, b, z) if residual else (x, w, b)

    def fused(*tensors):
        zz = tensors[3] if residual else None
        return _ConvBiasReLU.apply(*tensors[:3], zz, *args)

    assert torch.autograd.gradcheck(fused, inputs)
