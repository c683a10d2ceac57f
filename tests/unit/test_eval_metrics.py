"""topk_correct, CE/mCE and the corruption aggregates (evaluation/metrics.py)."""

from __future__ import annotations

import pytest
import torch

from evaluation.benchmarks import IMAGENET_C_CORRUPTIONS
from evaluation.metrics import (
    ALEXNET_ERRORS,
    aggregate_corruption_results,
    corruption_error,
    mean_corruption_error,
    topk_correct,
)


def test_topk_correct_toy_case() -> None:
    logits = torch.tensor(
        [
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],  # label 0 ranks 1st -> top-1 and top-5
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],  # label 4 ranks 5th -> top-5 only
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],  # label 5 ranks 6th -> neither
        ]
    )
    labels = torch.tensor([0, 4, 5])
    assert topk_correct(logits, labels) == {1: 1, 5: 2}
    assert topk_correct(logits, labels, ks=(1, 2, 6)) == {1: 1, 2: 1, 6: 3}


def test_topk_clamps_to_num_classes() -> None:
    logits = torch.tensor([[0.1, 0.5, 0.2], [3.0, 1.0, 2.0]])
    assert topk_correct(logits, torch.tensor([0, 1])) == {1: 0, 5: 2}


def test_alexnet_table_matches_spec() -> None:
    assert list(ALEXNET_ERRORS) == list(IMAGENET_C_CORRUPTIONS)
    assert ALEXNET_ERRORS["gaussian_noise"] == 0.886428
    assert ALEXNET_ERRORS["jpeg_compression"] == 0.606500


def test_corruption_error_hand_computed() -> None:
    # Model errors on gaussian_noise, severities 1..5: sum = 0.2+0.3+0.4+0.5+0.6 = 2.0.
    # AlexNet sum over the 5 severities = 5 * 0.886428 = 4.43214.
    # CE = 2.0 / 4.43214 = 0.451249...
    errors = {1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5, 5: 0.6}
    assert corruption_error(errors, "gaussian_noise") == pytest.approx(2.0 / 4.43214, rel=1e-12)
    assert corruption_error(errors, "gaussian_noise") == pytest.approx(0.4512488, abs=1e-6)


def test_mean_corruption_error_hand_computed() -> None:
    # CE(fog) with error 0.5 at every severity = 2.5 / (5 * 0.819324) = 0.610259...
    # CE(brightness) with error 0.3 everywhere = 1.5 / (5 * 0.564592) = 0.531357...
    # mCE = 100 * (0.610259 + 0.531357) / 2 = 57.0808 %
    ce = {
        "fog": corruption_error(dict.fromkeys(range(1, 6), 0.5), "fog"),
        "brightness": corruption_error(dict.fromkeys(range(1, 6), 0.3), "brightness"),
    }
    assert ce["fog"] == pytest.approx(0.610259, abs=1e-6)
    assert ce["brightness"] == pytest.approx(0.531357, abs=1e-6)
    assert mean_corruption_error(ce) == pytest.approx(57.0808, abs=1e-3)


def test_ce_undefined_outside_imagenet_c() -> None:
    with pytest.raises(KeyError, match="zigzag"):
        corruption_error({1: 0.1}, "zigzag")
    with pytest.raises(KeyError, match="canny_edges"):
        mean_corruption_error({"canny_edges": 0.5})


def _rows(accuracy: dict[str, float], severities=(1, 2, 3, 4, 5)) -> list[dict]:
    return [
        {"corruption": c, "severity": s, "top1": a, "top5": min(1.0, a + 0.2), "n": 100}
        for c, a in accuracy.items()
        for s in severities
    ]


def test_aggregates_without_noise_and_partial_mce() -> None:
    acc = {"gaussian_noise": 0.2, "shot_noise": 0.3, "fog": 0.6, "contrast": 0.5}
    agg = aggregate_corruption_results(_rows(acc))
    assert agg["mean_accuracy"] == pytest.approx((0.2 + 0.3 + 0.6 + 0.5) / 4)
    assert agg["mean_accuracy_without_noise"] == pytest.approx((0.6 + 0.5) / 2)
    assert agg["mean_top5"] == pytest.approx((0.4 + 0.5 + 0.8 + 0.7) / 4)
    assert agg["per_category"] == pytest.approx({"noise": 0.25, "weather": 0.6, "digital": 0.5})
    assert agg["per_corruption"]["fog"]["n"] == 500
    # mCE over the 4 corruptions present, flagged as incomplete.
    expected = 100 * sum((1 - a) / ALEXNET_ERRORS[c] for c, a in acc.items()) / 4
    assert agg["mce"] == pytest.approx(expected)
    assert agg["mce_corruptions"] == list(acc)
    assert agg["mce_complete"] is False


def test_aggregates_full_imagenet_c_is_complete() -> None:
    agg = aggregate_corruption_results(_rows(dict.fromkeys(IMAGENET_C_CORRUPTIONS, 0.5)))
    assert agg["mce_complete"] is True
    expected = 100 * sum(0.5 / ALEXNET_ERRORS[c] for c in IMAGENET_C_CORRUPTIONS) / 15
    assert agg["mce"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("benchmark", "accuracy", "expect_mce", "expect_without_noise"),
    [
        ("cifar10-c", {"fog": 0.6, "gaussian_noise": 0.2}, False, 0.6),
        ("mnist-c", {"zigzag": 0.9, "shot_noise": 0.95}, False, None),
        (None, {"zigzag": 0.9, "fog": 0.6}, False, 0.6),  # unknown name -> no mCE
    ],
)
def test_aggregates_mce_only_for_imagenet_c(benchmark, accuracy, expect_mce, expect_without_noise):
    severities = (1,) if benchmark == "mnist-c" else (1, 2, 3, 4, 5)
    rows = _rows(accuracy, severities)
    if benchmark == "mnist-c":
        rows = [dict(r, category=None) for r in rows]
    agg = aggregate_corruption_results(rows, benchmark=benchmark)
    assert (agg["mce"] is not None) is expect_mce
    assert agg["mean_accuracy"] == pytest.approx(sum(accuracy.values()) / len(accuracy))
    if expect_without_noise is None:
        assert agg["mean_accuracy_without_noise"] is None
    else:
        assert agg["mean_accuracy_without_noise"] == pytest.approx(expect_without_noise)
