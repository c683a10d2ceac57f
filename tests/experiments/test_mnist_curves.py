"""experiments/mnist/mnist_curves.py: per-epoch validation curves of tune runs, best epoch named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.mnist import mnist_curves as mc


def _tune_dir(root: Path, curves: dict[float, list[float]]) -> Path:
    out = root / "grid"
    (out / "tune").mkdir(parents=True)
    (out / "best.json").write_text(json.dumps({"key": "ant.epsilon"}))
    for i, (value, accs) in enumerate(curves.items()):
        trial = out / "tune" / f"trial_{i}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"value": value}))
        rows = ["epoch,val_corruption_acc,restarts_adopted"]
        rows += [f"{e + 1},{a},{e // 2}" for e, a in enumerate(accs)]
        (trial / "progress.csv").write_text("\n".join(rows) + "\n")
    return out


def _progress(tune: Path, *lines: str) -> None:
    """Replace the first trial's progress.csv with these lines (header first)."""
    (tune / "tune" / "trial_0" / "progress.csv").write_text("\n".join(lines) + "\n")


def test_table_names_each_trials_best_epoch_and_restarts(tmp_path, capsys):
    tune = _tune_dir(tmp_path, {8.0: [0.87, 0.905, 0.88], 10.0: [0.866]})
    png = tmp_path / "curves.png"
    assert mc.main([str(tune), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| grid ant.epsilon=8 | 87.00 | 90.50 | 88.00 | 90.50 (2) |" in out
    assert "| grid ant.epsilon=10 | 86.60 |  |  | 86.60 (1) |" in out
    assert "- grid ant.epsilon=8: 0, 0, 1" in out
    assert png.stat().st_size > 0


def test_mid_epoch_and_interrupted_reports_are_left_out(tmp_path, capsys):
    tune = _tune_dir(tmp_path, {8.0: [0.87, 0.9]})
    _progress(
        tune,
        "epoch,val_corruption_acc,restarts_adopted,mid_epoch",
        "1,0.87,0,",
        "2,,1,1",  # a mid-epoch checkpoint: no validation
        "2,0.9,1,",
    )
    assert mc.main([str(tune)]) == 0
    out = capsys.readouterr().out
    assert "| grid ant.epsilon=8 | 87.00 | 90.00 | 90.00 (2) |" in out
    assert "- grid ant.epsilon=8: 0, 1" in out


def test_a_missing_metric_is_named(tmp_path):
    tune = _tune_dir(tmp_path, {8.0: [0.9]})
    with pytest.raises(SystemExit, match="no column val_gaussian_acc"):
        mc.main([str(tune), "--metric", "val_gaussian_acc"])


def test_a_second_metric_gets_its_own_table_where_reported(tmp_path, capsys):
    tune = _tune_dir(tmp_path, {10.0: [0.87, 0.9]})
    _progress(
        tune,
        "epoch,val_corruption_acc,live_val_corruption_acc,restarts_adopted",
        "1,0.87,0.86,0",
        "2,0.9,0.88,1",
    )
    other = _tune_dir(tmp_path / "old", {8.0: [0.85]})  # no live_ column: left out there
    png = tmp_path / "curves.png"
    argv = [str(tune), str(other), "--metric", "val_corruption_acc"]
    assert mc.main([*argv, "--metric", "live_val_corruption_acc", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    first, second = out.split("live_val_corruption_acc:")
    assert "| grid ant.epsilon=10 | 87.00 | 90.00 | 90.00 (2) |" in first
    assert "| grid ant.epsilon=8 | 85.00 |  | 85.00 (1) |" in first
    assert "| grid ant.epsilon=10 | 86.00 | 88.00 | 88.00 (2) |" in second
    assert "ant.epsilon=8" not in second.split("restarts")[0]
    assert png.stat().st_size > 0


def test_a_later_metric_no_trial_reports_is_an_error(tmp_path):
    tune = _tune_dir(tmp_path, {8.0: [0.9]})
    with pytest.raises(SystemExit, match="no trial reports live_val_corruption_accc"):
        mc.main(
            [str(tune), "--metric", "val_corruption_acc", "--metric", "live_val_corruption_accc"]
        )
