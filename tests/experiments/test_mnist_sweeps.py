"""experiments/mnist/mnist_sweeps.py: several tune runs read as one sweep, chosen on validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.mnist import mnist_sweeps as ms


def _tune_dir(root: Path, name: str, values: dict[float, float], split="val") -> Path:
    """A tune run with one trial per value, and a validation report per trial whose
    corruption accuracy is ``values[value]``."""
    tune = root / name
    tune.mkdir()
    lines = ["trial_id,config/value,training_iteration,time_total_s,checkpoint_path"]
    for i, (value, acc) in enumerate(values.items()):
        checkpoint = tune / f"trial-{i}" / "checkpoint_0"
        checkpoint.mkdir(parents=True)
        lines.append(f"{i},{value},8,100.0,{checkpoint}")
        report = root / "eval" / f"{name}-{i}"
        report.mkdir(parents=True)
        results = {
            "clean_accuracy": 0.99,
            "rows": [{"corruption": c, "severity": 1, "top1": acc} for c in ("fog", "stripe")],
            "metadata": {"split": split, "checkpoint": {"run_dir": str(checkpoint)}},
        }
        (report / "results.json").write_text(json.dumps(results))
    (tune / "tune_results.csv").write_text("\n".join(lines) + "\n")
    return tune


def test_sweeps_join_tune_runs_and_choose_on_validation(tmp_path, capsys):
    first = _tune_dir(tmp_path, "first", {0.3: 0.88})
    second = _tune_dir(tmp_path, "second", {0.1: 0.80, 0.5: 0.90})
    _tune_dir(tmp_path, "ignored", {9.0: 0.99}, split="test")  # test reports never count
    rows = ms.sweep([first, second], ms.val_reports(tmp_path / "eval"))
    assert sorted(rows) == [0.1, 0.3, 0.5]
    best, text = ms.table("sigma", rows)
    assert best == 0.5 and "| 0.5 **(chosen)** | 99.00 | 90.00 | 8 | 100 |" in text
    assert ms.main(["--gnt", str(first), str(second), "--eval-root", str(tmp_path / "eval")]) == 0
    assert "chosen sigma: 0.5" in capsys.readouterr().out


def test_a_value_trained_twice_or_without_a_report_is_refused(tmp_path):
    first = _tune_dir(tmp_path, "first", {0.3: 0.88})
    again = _tune_dir(tmp_path, "again", {0.3: 0.90})
    reports = ms.val_reports(tmp_path / "eval")
    with pytest.raises(ms.SweepError, match="value 0.3 is in"):
        ms.sweep([first, again], reports)
    with pytest.raises(ms.SweepError, match="no validation report"):
        ms.sweep([first], {})


def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    first = _tune_dir(tmp_path, "first", {0.3: 0.88})
    again = _tune_dir(tmp_path, "again", {0.3: 0.90})
    argv = ["--eval-root", str(tmp_path / "eval"), "--gnt", str(first), str(again)]
    assert ms.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "value 0.3 is in" in err
    assert ms.main(["--eval-root", str(tmp_path / "eval"), "--gnt", str(tmp_path / "nope")]) == 2
    assert "tune_results.csv not found" in capsys.readouterr().err
    assert ms.main(["--eval-root", str(tmp_path / "missing"), "--gnt", str(first)]) == 2
    assert "--eval-root" in capsys.readouterr().err
