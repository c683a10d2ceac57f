"""experiments/mnist/per_corruption_seeds.py on result files written here (no model, no data)."""

import json
from pathlib import Path

from experiments.mnist import per_corruption_seeds as script


def write_result(out: Path, top1: dict[str, float]) -> Path:
    out.mkdir(parents=True)
    rows = [{"corruption": name, "top1": value, "severity": 1} for name, value in top1.items()]
    (out / "results.json").write_text(json.dumps({"rows": rows}))
    return out


def test_table_means_differences_and_the_per_corruption_best(tmp_path, capsys):
    a0 = write_result(tmp_path / "a0", {"fog": 0.80, "translate": 0.50})
    a1 = write_result(tmp_path / "a1", {"fog": 0.90, "translate": 0.40})
    b0 = write_result(tmp_path / "b0", {"fog": 0.70, "translate": 0.60})
    rc = script.main(["--model", f"A={a0},{a1}", "--model", f"B={b0}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| fog | 80.0 / 90.0 | 85.0 | 70.0 | 70.0 | +15.0 |" in out
    assert "| translate | 50.0 / 40.0 | 45.0 | 60.0 | 60.0 | -15.0 |" in out
    # Run means: A 65 / 65 -> 65; B 65. The best per corruption: fog 90, translate 60 -> 75,
    # above every run's own mean, which is the bound's point.
    assert "| 65.00 / 65.00 | **65.00** | 65.00 | **65.00** | +0.00 |" in out
    assert "best of all 3 runs, averaged over the 2 corruptions: **75.00 %**" in out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert script.main(["--model", "no-equals-sign"]) == 2
    assert script.main(["--model", f"A={tmp_path / 'missing'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "LABEL=DIR" in err[0] and "results.json" in err[1]
    one = write_result(tmp_path / "one", {"fog": 0.5})
    two = write_result(tmp_path / "two", {"fog": 0.5, "stripe": 0.5})
    assert script.main(["--model", f"A={one},{two}"]) == 2
    assert "other corruptions" in capsys.readouterr().err
