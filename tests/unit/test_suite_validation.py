"""The generated corruption suite on the validation split, measured after every epoch
(``data.val_suite``): the same figure ``antray eval --generated --split val`` gives the
checkpoint, reported for Tune and MLflow; ``antray tune`` ranks by it by default."""

import json
from pathlib import Path

import pytest

from evaluation.corruptions.suites import generated_suite
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.suite_validation import MEAN_KEY, corruption_key
from orchestrator.tune_runner import default_metric

REPO = Path(__file__).resolve().parents[2]
IMAGES = 300


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _train(run: Path, mnist_root: Path, tmp_path: Path, *suite: str) -> dict:
    common = sets(
        "data.limit_train=512",
        "data.limit_val=100",
        "data.batch_size=64",
        "optim.epochs=2",
        "runtime.torch_threads=1",
        "tracking.mlflow_uri=sqlite:///" + str(tmp_path / "ml.db"),
        *suite,
    )
    argv = ["train", "--backend", "local", "--config", str(REPO / "configs/mnist_gnt.yaml")]
    assert main([*argv, "--run-dir", str(run), "--data-root", str(mnist_root), *common]) == 0
    return json.loads((run / "metrics.json").read_text())


def eval_val_suite(run: Path, mnist_root: Path, out: Path) -> dict:
    """``antray eval --generated --split val`` of the run's checkpoint on the first IMAGES
    validation digits, as the loop measures them; the report (results.json)."""
    evaluate = ["eval", "--checkpoint", str(run), "--benchmark", "mnist-c"]
    evaluate += ["--generated", "--split", "val", "--limit", str(IMAGES), "--no-progress"]
    assert main([*evaluate, "--out", str(out), "--data-root", str(mnist_root)]) == 0
    return json.loads((out / "results.json").read_text())


def test_training_reports_the_suite_and_eval_of_the_checkpoint_agrees(mnist_root, tmp_path):
    on = ("data.val_suite=mnist-c", f"data.val_suite_images={IMAGES}")
    metrics = _train(tmp_path / "run", mnist_root, tmp_path, *on)
    suite = generated_suite("mnist-c")
    per = [metrics[corruption_key(c)] for c in suite.corruptions]
    assert len(per) == 15 and all(0.0 <= a <= 1.0 for a in per)
    assert metrics[MEAN_KEY] == pytest.approx(sum(per) / 15, abs=1e-12)
    # A trained-for-two-epochs model is far from chance on most corruptions.
    assert metrics[MEAN_KEY] > 0.3, metrics[MEAN_KEY]

    report = eval_val_suite(tmp_path / "run", mnist_root, tmp_path / "eval")
    assert report["mean_accuracy"] == pytest.approx(metrics[MEAN_KEY], abs=1e-12)

    # Measuring the suite does not change the training: the GNT noise of epoch 2 comes from
    # the same random stream with the suite off.
    off = _train(tmp_path / "off", mnist_root, tmp_path, "data.val_suite=none")
    assert MEAN_KEY not in off
    assert off["train_loss"] == metrics["train_loss"]


def test_in_loop_seed_and_batch_size_are_antray_evals_defaults():
    from orchestrator.cli import build_parser
    from orchestrator.suite_validation import EVAL_BATCH_SIZE, EVAL_SEED

    args = build_parser().parse_args(["eval", "--checkpoint", "x", "--benchmark", "mnist-c"])
    assert (args.seed, args.batch_size) == (EVAL_SEED, EVAL_BATCH_SIZE)
    assert IMAGES > EVAL_BATCH_SIZE  # the parity above spans two batches' corruption seeds


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
