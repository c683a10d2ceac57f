"""The campaign driver's pure helpers: choosing on validation, reading reports, the verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.mnist import mnist_results as mr


def _rows(**acc: list[float]) -> dict:
    return {
        "rows": [
            {"corruption": name, "severity": i + 1, "top1": a}
            for name, values in acc.items()
            for i, a in enumerate(values)
        ]
    }


def test_suite_mean_weights_each_corruption_once() -> None:
    results = _rows(fog=[0.5, 0.7], stripe=[0.9])
    assert mr.corruption_accuracies(results) == pytest.approx({"fog": 0.6, "stripe": 0.9})
    assert mr.suite_mean(results) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        mr.suite_mean({"rows": []})


def test_pick_best_takes_the_highest_score_and_breaks_ties_toward_less_noise() -> None:
    assert mr.pick_best({0.1: 0.90, 0.3: 0.93, 0.5: 0.92}) == 0.3
    assert mr.pick_best({0.5: 0.93, 0.3: 0.93, 1.0: 0.80}) == 0.3
    with pytest.raises(ValueError):
        mr.pick_best({})


def test_verdicts_report_met_missed_and_unmeasured_targets() -> None:
    test = {
        "vanilla": {"mnist_c": 0.80, "clean": 0.99, "adv_eps": 5.0},
        "gnt": {"mnist_c": 0.925, "clean": 0.99, "adv_eps": 7.0},
        "ant1x1": {"mnist_c": 0.935, "clean": 0.985, "adv_eps": 6.0},
    }
    got = {target: met for target, met, _ in mr.verdicts(test)}
    assert got["ANT 1x1: MNIST-C mean >= 93.0 % with clean >= 99.0 %"] is False  # clean 98.5
    assert got["gnt: the paper's MNIST-C 92.4 %"] is True
    assert got["ANT 1x1 >= GNT on MNIST-C"] is True
    assert got["adversarial eps*: ANT > GNT > vanilla"] is False  # 6 < 7
    test["gnt"]["adv_eps"] = math.nan
    got = {target: met for target, met, _ in mr.verdicts(test)}
    assert got["adversarial eps*: ANT > GNT > vanilla"] is None


def test_trial_table_reads_tunes_csv(tmp_path: Path) -> None:
    text = (
        "val_clean_acc,checkpoint_path,training_iteration,trial_id,time_total_s,config/value\n"
        "0.9,/x/trial-a_00000/checkpoint_1,3,a_00000,61.5,0.1\n"
        "0.8,,2,a_00001,40.0,0.5\n"
    )
    table = mr.trial_table(text, tmp_path)
    assert table[0.1] == {"checkpoint": Path("/x/trial-a_00000/checkpoint_1"), "epochs": 3,
                          "seconds": 61.5}  # fmt: skip
    assert table[0.5]["checkpoint"] == tmp_path / "trial-a_00001"
    assert table[0.5]["epochs"] == 2


def test_md_table() -> None:
    assert mr.md_table(["a", "b"], [(1, "x")]) == "| a | b |\n|---|---|\n| 1 | x |"


def test_campaign_caveat_says_how_the_campaign_was_reduced() -> None:
    assert "fewer training images or epochs" in mr.campaign_caveat(mr.QUICK)
    full_length = mr.Sizes(sigmas=(0.3,), epsilons=(8.0,))
    caveat = mr.campaign_caveat(full_length)
    assert "fewer training images" not in caveat
    assert "fewer sigma / epsilon candidates" in caveat
