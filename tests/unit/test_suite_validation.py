"""The generated corruption suite on the validation split, measured after every epoch
(``data.val_suite``): the same figure ``antray eval --generated --split val`` gives the
checkpoint, reported for Tune and MLflow; ``antray tune`` ranks by it by default."""

import json
from pathlib import Path

import pytest

from evaluation.corruptions.suites import generated_suite
from evaluation.request import CLEAN_DATASETS
from orchestrator.cli import main
from orchestrator.config import VAL_SUITE_DATASET, load_config
from orchestrator.suite_validation import MEAN_KEY, corruption_key
from orchestrator.tune_runner import default_metric

REPO = Path(__file__).resolve().parents[2]
IMAGES = 48


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_each_suite_corrupts_the_dataset_the_evaluation_loads():
    assert VAL_SUITE_DATASET == CLEAN_DATASETS


def test_training_reports_the_suite_and_eval_of_the_checkpoint_agrees(mnist_root, tmp_path):
    run = tmp_path / "run"
    common = sets(
        "data.limit_train=512",
        "data.limit_val=100",
        "data.batch_size=64",
        "optim.epochs=2",
        "runtime.torch_threads=1",
        "tracking.mlflow_uri=sqlite:///" + str(tmp_path / "ml.db"),
        "data.val_suite=mnist-c",
        f"data.val_suite_images={IMAGES}",
    )
    argv = ["train", "--backend", "local", "--config", str(REPO / "configs/mnist_gnt.yaml")]
    assert main([*argv, "--run-dir", str(run), "--data-root", str(mnist_root), *common]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    suite = generated_suite("mnist-c")
    per = [metrics[corruption_key(c)] for c in suite.corruptions]
    assert len(per) == 15 and all(0.0 <= a <= 1.0 for a in per)
    assert metrics[MEAN_KEY] == pytest.approx(sum(per) / 15, abs=1e-12)
    # A trained-for-two-epochs model is far from chance on most corruptions.
    assert metrics[MEAN_KEY] > 0.3, metrics[MEAN_KEY]

    out = tmp_path / "eval"
    evaluate = ["eval", "--checkpoint", str(run), "--benchmark", "mnist-c", "--generated"]
    evaluate += ["--split", "val", "--limit", str(IMAGES), "--no-progress", "--out", str(out)]
    assert main([*evaluate, "--data-root", str(mnist_root)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["mean_accuracy"] == pytest.approx(metrics[MEAN_KEY], abs=1e-12)


def test_tune_ranks_by_the_suite_when_the_config_measures_it():
    assert default_metric(load_config(REPO / "configs/mnist_ant1x1.yaml")) == MEAN_KEY
    off = load_config(REPO / "configs/mnist_ant1x1.yaml", ["data.val_suite=none"])
    assert default_metric(off) == "val_gaussian_acc"


def test_tune_refuses_the_suite_metric_when_it_is_not_measured(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", "--config", str(REPO / "configs/mnist_gnt.yaml"), "--space", "gnt_sigma"]
    argv += ["--metric", MEAN_KEY, "--out", str(out), *sets("data.val_suite=none")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.val_suite" in err, err
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
