"""experiments/mnist/fused_generator_lr.py on a few real MNIST digits, a handful of steps."""

import pytest

from experiments.mnist import fused_generator_lr as script


def test_prints_one_curve_per_recipe(mnist_root, monkeypatch, capsys):
    monkeypatch.setenv("ANTRAY_DATA_ROOT", str(mnist_root))
    curves = script.main(
        ["--recipes", "alternating:1e-3,fused:1e-3", "--seeds", "0", "--classifier-steps", "2",
         "--steps", "2", "--eval-every", "1", "--eval-images", "16", "--train-images", "512"]
    )  # fmt: skip
    assert list(curves) == ["alternating lr 0.001", "fused lr 0.001"]
    [alternating], [fused] = curves.values()
    assert len(alternating) == len(fused) == 3  # steps 0, 1, 2
    assert alternating[0] == fused[0], "both start from the same generator"
    out = capsys.readouterr().out
    assert "| alternating lr 0.001 |" in out and "| fused lr 0.001 |" in out


def test_a_bad_recipe_is_refused():
    with pytest.raises(SystemExit, match="expected alternating:LR or fused:LR"):
        script.parse_recipes("free:1e-4")
