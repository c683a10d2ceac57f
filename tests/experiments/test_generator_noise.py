"""experiments/mnist/generator_noise.py on a tiny ANT run (synthetic digits, one process, no
Ray)."""

import pytest

from experiments.mnist import generator_noise as script


def test_reports_every_generator_of_a_run(tmp_path, capsys, train_tiny):
    train_tiny(tmp_path, "optim.epochs=2")
    script.main([str(tmp_path), "--limit", "32", "--threads", "1"])
    out = capsys.readouterr().out
    assert "epsilon 6, 32 validation digits" in out
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    # header, two restarted generators in the history, the current one, untrained noise
    assert [row.split(" | ")[0] for row in table] == [
        "| generator",
        "| replay 0",
        "| replay 1",
        "| current",
        "| untrained (Gaussian)",
    ]
    assert "of the digits at or below epsilon" in out


def test_a_run_without_generator_is_one_line_and_exit_2(tmp_path, capsys, train_tiny):
    train_tiny(tmp_path, "noise.mode=gnt")
    capsys.readouterr()  # the training's own log
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path), "--limit", "8", "--threads", "1"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the inputs were checked
    assert captured.err.count("\n") == 1 and "no noise generator" in captured.err
