"""The patch-GEMM convolution and the Madry CNN built on it: the same function, gradients
and state dict as the plain layers, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from trainers.models import create_model
from trainers.patch_conv import PatchConv2d, patch_conv2d

GEOMETRIES = [  # (in channels, kernel, padding, bias)
    (1, (5, 5), (2, 2), True),  # the Madry CNN's first layer
    (2, (3, 3), (1, 1), True),
    (3, (3, 5), (1, 2), False),  # non-square kernel, no bias
    (1, (3, 3), (0, 0), True),  # no padding: the output shrinks
]


def _double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("channels,kernel,padding,bias", GEOMETRIES)
def test_patch_conv_is_conv2d_with_its_gradients(channels, kernel, padding, bias):
    torch.manual_seed(0)
    x, w = _double(3, channels, 7, 6), _double(4, channels, *kernel)
    b = _double(4) if bias else None
    out = patch_conv2d(x, w, b, padding)
    ref = F.conv2d(x, w, b, padding=padding)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(ref)
    inputs = [t for t in (x, w, b) if t is not None]
    got = torch.autograd.grad(out, inputs, upstream)
    want = torch.autograd.grad(ref, inputs, upstream)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: patch_conv2d(*a, padding), (x, w, b))


def test_patch_conv_keeps_no_patches_for_a_frozen_weight():
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64)  # frozen: only the input gradient
    out = patch_conv2d(x, w, None, (1, 1))
    patches, _ = out.grad_fn.saved_tensors
    assert patches is None  # the generator step's frozen classifier stores no patches
    (gx,) = torch.autograd.grad(out.sum(), [x])
    (ref,) = torch.autograd.grad(F.conv2d(x, w, None, padding=1).sum(), [x])
    torch.testing.assert_close(gx, ref, rtol=1e-12, atol=1e-12)


def test_patch_conv2d_module_is_a_conv2d_and_falls_back_where_it_cannot_patch():
    torch.manual_seed(0)
    plain = nn.Conv2d(2, 4, 3, padding=1).double()
    patched = PatchConv2d(2, 4, 3, padding=1).double()
    patched.load_state_dict(plain.state_dict())  # same parameters, same keys
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(patched(x), plain(x), rtol=1e-12, atol=1e-12)
    assert patched(x).is_contiguous(memory_format=torch.channels_last)  # the GEMM's layout
    strided = PatchConv2d(2, 4, 3, stride=2, padding=1).double()
    strided.load_state_dict(plain.state_dict())
    torch.testing.assert_close(strided(x), F.conv2d(x, plain.weight, plain.bias, 2, 1))
    torch.testing.assert_close(patched(x[0]), plain(x[0]))  # an unbatched image: plain conv


def test_patch_conv_refuses_a_second_derivative_and_defers_to_cpu_autocast():
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    (gw,) = torch.autograd.grad(patch_conv2d(x, w, None, 1).sum(), [w], create_graph=True)
    with pytest.raises(RuntimeError):
        gw.sum().backward()  # once_differentiable: an error, not a wrong second derivative
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = patch_conv2d(x.float(), w.float(), None, 1)
    assert out.dtype == torch.bfloat16  # autocast's own convolution
    out.float().sum().backward()


def _reference_madry(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Madry et al.'s order (conv, ReLU, pool) with plain convolutions."""
    net = model.net
    conv1, conv2 = net.features[0], net.features[3]
    h = (x - model.mean) / model.std
    h = F.max_pool2d(F.relu(F.conv2d(h, conv1.weight, conv1.bias, padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, conv2.weight, conv2.bias, padding=2)), 2)
    return net.classifier(h)


def test_madry_cnn_is_the_reference_net_with_its_gradients():
    torch.manual_seed(0)
    model = create_model("madry_cnn").double()
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 7, 9])
    params = list(model.parameters())
    got = torch.autograd.grad(F.cross_entropy(model(x), y), [x, *params])
    want = torch.autograd.grad(F.cross_entropy(_reference_madry(model, x), y), [x, *params])
    torch.testing.assert_close(model(x), _reference_madry(model, x), rtol=1e-10, atol=1e-12)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_madry_cnn_keeps_its_state_dict_keys_and_traces():
    model = create_model("madry_cnn")
    assert sorted(k for k in model.state_dict() if k.startswith("net.features")) == [
        "net.features.0.bias",
        "net.features.0.weight",
        "net.features.3.bias",
        "net.features.3.weight",
    ]
    traced = fx.symbolic_trace(model)  # generators.folding traces classifiers
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(traced(x), model(x))
