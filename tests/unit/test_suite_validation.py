"""The generated corruption suite on the validation split, measured after every epoch
(``data.val_suite``), is what ``antray tune`` ranks by by default, and tune refuses a metric
the config does not report before anything starts. (That it is the figure ``antray eval
--generated --split val`` gives the checkpoint: tests/integration/test_training_runs.py.)"""

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.suite_validation import MEAN_KEY
from orchestrator.tune_runner import default_metric

REPO = Path(__file__).resolve().parents[2]


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_tune_ranks_by_the_suite_when_the_config_measures_it():
    last = load_config(REPO / "configs/mnist_ant1x1.yaml", ["optim.select_epoch=last"])
    assert default_metric(last) == MEAN_KEY
    off = load_config(
        REPO / "configs/mnist_ant1x1.yaml", ["data.val_suite=none", "optim.select_epoch=last"]
    )
    assert default_metric(off) == "val_gaussian_acc"


TUNE_REFUSALS = [
    (
        "configs/mnist_gnt.yaml",
        ["--space", "gnt_sigma", "--metric", MEAN_KEY, *sets("data.val_suite=none")],
        "is measured only with data.val_suite set",
    ),
    (
        "configs/mnist_ant1x1.yaml",
        ["--space", "ant_epsilon", "--metric", "val_corruption_fogg_acc"],
        "--metric val_corruption_fogg_acc: data.val_suite=mnist-c reports val_corruption_acc",
    ),
    (
        "configs/mnist_ant1x1.yaml",
        ["--space", "ant_restart_iterations", "--grid", "100,0.4"],
        "--grid 0.4: ant.restart_iterations takes whole numbers",
    ),
    (
        "configs/mnist_ant1x1.yaml",
        ["--space", "ant_epsilon", "--grid", "8,-1"],
        "--grid ant.epsilon=-1: ant.epsilon",
    ),
]


@pytest.mark.parametrize("config,args,expected", TUNE_REFUSALS)
def test_tune_refuses_bad_metric_or_grid_before_anything_starts(
    config, args, expected, tmp_path, capsys
):
    out = tmp_path / "tune"
    assert main(["tune", "--config", str(REPO / config), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["tune", "--space", "gnt_sigma", "--scheduler", "bogus"], "--scheduler: invalid choice"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
