"""EvalRequest: the defaults it owns, and one-line errors for bad input, before any work."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from evaluation.request import DEFAULT_PGD_EPSILONS, EvalInputError, EvalRequest


def test_defaults_per_benchmark() -> None:
    mnist = EvalRequest.build(benchmark="mnist-c")
    assert (mnist.split, mnist.clean_dataset, mnist.val_size, mnist.split_seed) == (
        "test", "mnist", 5000, 0,
    )  # fmt: skip
    # The paper's 135 at 224x224x3, at the same per-coordinate size (docs/METHOD.md).
    assert mnist.eps_star_epsilon == pytest.approx(135 * math.sqrt(784 / 150528))
    assert mnist.eps_star_epsilon == pytest.approx(9.743, abs=1e-3)
    cifar = EvalRequest.build(benchmark="cifar10-c")
    assert cifar.eps_star_epsilon == pytest.approx(135 * math.sqrt(3072 / 150528))
    assert EvalRequest.build(benchmark="imagenet-c").eps_star_epsilon == pytest.approx(135.0)
    assert mnist.pgd_epsilons == {
        "l2": DEFAULT_PGD_EPSILONS["mnist-c"]["l2"],
        "linf": DEFAULT_PGD_EPSILONS["mnist-c"]["linf"],
    }
    assert mnist.device == "cpu" and mnist.generator == "1x1"
    assert len(mnist.splits) == len(set(mnist.splits)) > 0
    explicit = EvalRequest.build(benchmark="mnist-c", eps_star_epsilon=5.0, val_size=None)
    assert explicit.eps_star_epsilon == 5.0 and explicit.val_size == 5000


def test_frozen_and_no_unknown_fields() -> None:
    request = EvalRequest.build(benchmark="mnist-c")
    with pytest.raises(ValidationError):
        request.limit = 3  # type: ignore[misc]
    with pytest.raises(EvalInputError, match="bogus"):
        EvalRequest.build(benchmark="mnist-c", bogus=1)


BAD = [
    ({"benchmark": "svhn-c"}, "--benchmark"),
    ({"split": "val"}, "--split val needs --generated"),
    ({"split": "val", "generated": True, "val_size": 0}, "--val-size"),
    ({"limit": 0}, "--limit must be > 0, got 0"),
    ({"eps_star": ("gaussian", "pink")}, "unknown eps* direction(s) pink"),
    ({"attacks": ("fgsm",)}, "unknown attack(s) fgsm"),
    ({"eps_star_epsilon": -1.0}, "--eps-star-epsilon must be > 0"),
    ({"eps_star_epsilon": 28.0}, "--eps-star-epsilon 28 is at or above 28, the largest l2"),
    ({"generator": "5x5"}, "--generator"),
    ({"corruptions": ("nope",)}, "unknown corruption(s) nope"),
    ({"generated": True, "severities": (9,)}, "severities [9] not available"),
    ({"pgd_l2": (-0.5,)}, "--pgd-l2"),
    ({"loader_workers": -1}, "--loader-workers must be >= 0"),
    ({"device": "cuda:7"}, "cuda"),
    ({"clean_dataset": "cifar10"}, "trained on cifar10"),
]


@pytest.mark.parametrize(("values", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line(values: dict, message: str) -> None:
    import torch

    if values.get("device") == "cuda:7" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(EvalInputError) as info:
        EvalRequest.build(**{"benchmark": "mnist-c", **values})
    text = str(info.value)
    assert message in text and "\n" not in text


def test_val_split_with_generated_is_accepted() -> None:
    request = EvalRequest.build(
        benchmark="mnist-c", split="val", generated=True, val_size=100, split_seed=7
    )
    assert (request.split, request.val_size, request.split_seed) == ("val", 100, 7)


def _args(*extra: str):
    from orchestrator.cli import build_parser

    return build_parser().parse_args(
        ["eval", "--checkpoint", "run", "--benchmark", "mnist-c", "--generated", *extra]
    )


def test_cli_builds_the_request_with_the_checkpoints_split() -> None:
    from evaluation.cli import build_request

    info = {"model": "run", "dataset": "mnist", "val_size": 1000, "split_seed": 3, "epsilon": 8.0}
    request = build_request(_args("--split", "val"), info)
    assert (request.split, request.val_size, request.split_seed) == ("val", 1000, 3)
    # The eps* generators' size is the benchmark's, not the checkpoint's ant.epsilon.
    assert request.eps_star_epsilon == pytest.approx(9.743, abs=1e-3)
    flags = build_request(_args("--val-size", "200", "--split-seed", "9"), info)
    assert (flags.val_size, flags.split_seed) == (200, 9)
    # A model trained on other images (synthetic) carved its split from those: not reused.
    other = build_request(_args(), {**info, "dataset": "synthetic"})
    assert (other.val_size, other.split_seed) == (5000, 0)
    assert build_request(_args("--eps-star-epsilon", "6"), info).eps_star_epsilon == 6.0
