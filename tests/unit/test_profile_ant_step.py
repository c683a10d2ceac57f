"""benchmarks/profile_ant_step.py counts a part's arithmetic as the model's layer shapes say."""

import pytest
import torch

from benchmarks.profile_ant_step import gflop
from trainers.models import create_model

# Madry CNN multiply-adds per 28x28 digit: conv 5x5 1->32 at 28x28, conv 5x5 32->64 at
# 14x14, fc 7*7*64 -> 1024, fc 1024 -> 10.
MADRY_MACS = 28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 7 * 7 * 64 * 1024 + 1024 * 10


def test_gflop_counts_the_classifier_forward_and_its_input_gradient():
    model = create_model("madry_cnn").eval()
    x = torch.rand(4, 1, 28, 28)
    assert gflop(lambda: model(x)) * 1e9 == pytest.approx(2 * MADRY_MACS * 4, rel=1e-12)
    for p in model.parameters():
        p.requires_grad_(False)
    xi = x.clone().requires_grad_(True)
    # Backward to the input only: each layer's input gradient costs its forward again.
    assert gflop(lambda: model(xi).sum().backward()) * 1e9 == pytest.approx(
        2 * 2 * MADRY_MACS * 4, rel=1e-12
    )
