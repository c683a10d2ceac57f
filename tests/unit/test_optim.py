"""Fused optimiser steps: the same updates as torch's default loop, kept across a resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from generators.optim import adam, fused_options, load_optimizer_state, sgd
from trainers.models import create_model


def _train(make, steps=5, seed=0):
    torch.manual_seed(seed)
    model = create_model("madry_cnn")
    opt = make(model.parameters())
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize(
    "fused,plain",
    [
        (
            lambda p: adam(p, lr=1e-3, weight_decay=1e-4),
            lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4),
        ),
        (
            lambda p: sgd(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
        ),
    ],
    ids=["adam", "sgd"],
)  # fmt: skip
def test_fused_steps_update_as_the_default_loop(fused, plain):
    a, opt = _train(fused)
    b, _ = _train(plain)
    assert opt.param_groups[0]["fused"] is True
    # Adam divides by sqrt(v): where a gradient is tiny, the two kernels' float rounding
    # (vector widths differ between machines) can reach ~1e-6 on a weight, a thousandth of
    # one step's size (lr 1e-3). A wrong update would be off by a step, not by that.
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-5)


def test_fused_only_where_torch_has_it():
    assert fused_options([torch.zeros(2, requires_grad=True)]) == {"fused": True}
    assert fused_options([torch.zeros(2, dtype=torch.int64)]) == {}  # not floating
    assert fused_options([torch.zeros(2, device="meta")]) == {}  # no fused kernel there
    assert fused_options([]) == {}


def test_a_resumed_run_keeps_its_fused_step_and_continues_the_same_updates():
    model, old = _train(lambda p: torch.optim.Adam(p, lr=1e-3), steps=3)  # an older run
    resumed = adam(model.parameters(), lr=1e-3)
    load_optimizer_state(resumed, copy.deepcopy(old.state_dict()))
    assert resumed.param_groups[0]["fused"] is True  # torch alone would copy fused=None
    steps = [s["step"] for s in resumed.state.values()]
    assert all(s.dtype == torch.float32 and float(s) == 3.0 for s in steps)
    twin = torch.optim.Adam(model.parameters(), lr=1e-3)
    twin.load_state_dict(copy.deepcopy(old.state_dict()))  # torch shares loaded tensors
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    resumed.step()
    after_fused = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, b in zip(model.parameters(), before, strict=True):
            p.copy_(b)
    twin.step()
    for p, f in zip(model.parameters(), after_fused, strict=True):
        torch.testing.assert_close(p, f, rtol=1e-5, atol=1e-6)
