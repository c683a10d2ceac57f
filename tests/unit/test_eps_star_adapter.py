"""Adversarial eps* inputs: an epsilon out of reach is refused (no gradient there), and the
generators train on the train split, disjoint from the images eps* is measured on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from evaluation.corruption_loop import EvalSettings, load_eval_set
from evaluation.eps_star_adapter import check_epsilon_reachable, generator_batches
from evaluation.request import EvalInputError, default_eps_star_epsilon
from generators.rescale import clipping_aware_rescale

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mnist_like(n: int = 64) -> torch.Tensor:
    """Near-binary 28x28 images (about 20 % ink), like MNIST digits."""
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.8).float()


def test_unreachable_epsilon_gives_no_gradient_and_is_refused() -> None:
    x = mnist_like()
    # Why it is refused: beyond the largest reachable size the rescaled noise is the
    # saturated image, which does not depend on the generator's output at all.
    delta = torch.randn(x.shape, requires_grad=True)
    clipping_aware_rescale(x, delta, epsilon=30.0).square().sum().backward()
    assert delta.grad is not None and not delta.grad.any()

    with pytest.raises(EvalInputError) as info:
        check_epsilon_reachable(x, 30.0, seed=0)
    text = str(info.value)
    assert "cannot be reached" in text and "no gradient" in text and "\n" not in text
    assert "100% of 64" in text


def test_paper_equivalent_epsilon_is_reachable_on_mnist_like_images() -> None:
    summary = check_epsilon_reachable(mnist_like(), default_eps_star_epsilon("mnist"), seed=0)
    assert summary["unreachable_share"] == 0.0 and summary["checked_images"] == 64
    assert 18 < summary["median_max_size"] < 21  # about 19.8 on MNIST (docs/METHOD.md)


def test_a_few_unreachable_images_are_reported_not_refused() -> None:
    x = mnist_like(10)
    x[:3] = 0.5  # mid-grey: at most 0.5 per coordinate, 14 over 784 coordinates
    summary = check_epsilon_reachable(x, 15.0, seed=0)
    assert summary["unreachable_share"] == pytest.approx(0.3)


def _settings(root: Path, split: str) -> EvalSettings:
    return EvalSettings(
        benchmark="mnist-c", data_root=str(root), benchmark_root=str(root), generated=True,
        clean_dataset="mnist", limit=None, seed=0, batch_size=64, device="cpu",
        split=split, val_size=1000, split_seed=3,
    )  # fmt: skip


@pytest.mark.parametrize("split", ["val", "test"])
def test_generators_train_on_the_train_split_only(mnist_root: Path, split: str) -> None:
    settings = _settings(mnist_root, split)
    batches = generator_batches(settings, seed=0)
    train = batches.dataset
    assert isinstance(train, Subset) and len(train) == 60000 - 1000
    assert len(train.dataset) == 60000  # type: ignore[arg-type]  # the training file
    measured = load_eval_set(settings)
    if split == "val":  # the validation images eps* is measured on are not trained on
        assert isinstance(measured, Subset) and len(measured) == 1000
        assert len(measured.dataset) == 60000  # type: ignore[arg-type]  # the training file too
        assert not set(train.indices) & set(measured.indices)
    else:  # the test images: the other file
        assert len(measured) == 10000
        assert not isinstance(measured, Subset)
