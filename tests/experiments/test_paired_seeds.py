"""experiments/mnist/paired_seeds.py on result files written here (no model, no data)."""

import json
import math
from pathlib import Path

import pytest

from experiments.mnist import paired_seeds as script


def write_result(out: Path, mean: float, clean: float, adversarial: float | None = None) -> Path:
    out.mkdir(parents=True)
    result = {"mean_accuracy": mean, "clean_accuracy": clean, "eps_star": {}}
    if adversarial is not None:
        result["eps_star"]["adversarial"] = {"mean": adversarial, "per_seed": [adversarial]}
    (out / "results.json").write_text(json.dumps(result))
    return out


def test_sign_flip_p_is_exact():
    # All four differences positive: only the all-plus and all-minus assignments reach |sum| 10.
    assert script.sign_flip_p([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 / 16)
    # 1, -1: sums 0, +-2 -> |sum| >= 0 always.
    assert script.sign_flip_p([1.0, -1.0]) == 1.0
    # 3, 1, -1: |sum| = 3; with +3 the sums are 5, 3, 3, 1, so three of four reach 3, and
    # their mirrors with -3 -> 6 of 8.
    assert script.sign_flip_p([3.0, 1.0, -1.0]) == pytest.approx(6 / 8)


def test_paired_summary_matches_the_t_interval():
    s = script.paired_summary([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2) = 4.302653: half-width 4.302653 / sqrt(3) = 2.484138
    assert s["mean"] == pytest.approx(2.0) and s["sd"] == pytest.approx(1.0)
    assert s["high"] - s["mean"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert s["wins"] == 3 and s["n"] == 3


def test_table_pairs_by_position_and_leaves_out_missing_metrics(tmp_path, capsys):
    a = [
        write_result(tmp_path / f"a{i}", m, 0.99, eps)
        for i, (m, eps) in enumerate([(0.92, 15.0), (0.90, 14.0)])
    ]
    b = [write_result(tmp_path / f"b{i}", m, 0.995, None) for i, m in enumerate([0.91, 0.91])]
    rc = script.main(
        ["--model", "A=" + ",".join(map(str, a)), "--model", "B=" + ",".join(map(str, b))]
    )
    out = capsys.readouterr().out
    assert rc == 0
    # corruption mean: +1.00 and -1.00 per seed, mean 0, one win of two
    assert "| 92.00 / 90.00 | 91.00 / 91.00 | +1.00 / -1.00 | **+0.00** |" in out
    assert "| 1 of 2 | 1.000 |" in out
    assert "| clean (top-1) (%) | 99.00 / 99.00 | 99.50 / 99.50 | -0.50 / -0.50 |" in out
    # B's files have no adversarial eps*: the row is left out rather than half-filled
    assert "eps* adversarial" not in out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    one = write_result(tmp_path / "one", 0.9, 0.99)
    two = write_result(tmp_path / "two", 0.9, 0.99)
    assert script.main(["--model", f"A={one},{two}"]) == 2  # only one model
    assert script.main(["--model", f"A={one},{two}", "--model", f"B={one}"]) == 2  # unpaired
    assert script.main(["--model", "A=x", "--model", "no-equals-sign"]) == 2
    assert script.main(["--model", f"A={tmp_path / 'missing'}", "--model", f"B={one}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("paired_seeds: ") for line in err)
    assert "exactly twice" in err[0] and "same number" in err[1]
    assert "LABEL=DIR" in err[2] and "results.json" in err[3]
