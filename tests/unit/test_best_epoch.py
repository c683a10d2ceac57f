"""``optim.select_epoch: best_val``: the run serves the classifier of its best validation
epoch (early stopping chosen on the validation split), and training is unchanged."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from evaluation.model_loading import load_checkpoint_model, served_epoch, served_weights
from orchestrator.cli import main
from trainers.best_epoch import BestEpoch, selection_metric
from trainers.checkpoint_format import BEST_VAL_KEY, load_state
from trainers.loop import run_worker

REPO = Path(__file__).resolve().parents[2]


def _model(value: float) -> nn.Module:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)
    return model


def test_the_highest_score_wins_and_a_tie_or_nan_keeps_the_earlier_epoch():
    best = BestEpoch("val_clean_acc")
    assert best.metrics() == {} and best.state() is None
    assert best.offer(0, {"val_clean_acc": 0.5}, _model(0.0))
    assert best.offer(1, {"val_clean_acc": 0.7}, _model(1.0))
    assert not best.offer(2, {"val_clean_acc": 0.7}, _model(2.0))  # a tie
    assert not best.offer(3, {"val_clean_acc": math.nan}, _model(3.0))
    assert not best.offer(4, {"val_clean_acc": 0.6}, _model(4.0))
    assert best.metrics() == {"best_epoch": 2.0, "best_val_clean_acc": 0.7}
    assert torch.equal(best.weights["weight"], torch.full((1, 2), 1.0))


def test_the_weights_are_a_copy_taken_at_the_offer():
    model, best = _model(1.0), BestEpoch("val_clean_acc")
    best.offer(0, {"val_clean_acc": 0.9}, model)
    with torch.no_grad():
        model.weight.fill_(5.0)  # training goes on
    assert torch.equal(best.weights["weight"], torch.full((1, 2), 1.0))


def test_a_missing_metric_is_an_error_that_names_it():
    with pytest.raises(KeyError, match="val_corruption_acc"):
        BestEpoch("val_corruption_acc").offer(0, {"val_clean_acc": 0.9}, _model(0.0))


def test_state_round_trip_and_another_metric_starts_over():
    best = BestEpoch("val_corruption_acc")
    best.offer(3, {"val_corruption_acc": 0.8}, _model(2.0))
    again = BestEpoch("val_corruption_acc")
    again.load_state(best.state())
    assert (again.epoch, again.score) == (3, 0.8)
    assert torch.equal(again.weights["bias"], best.weights["bias"])
    other = BestEpoch("val_clean_acc")
    other.load_state(best.state())  # ranked by another metric: not comparable
    assert other.state() is None
    assert selection_metric("mnist-c") == "val_corruption_acc"
    assert selection_metric("none") == "val_clean_acc"


def _argmax_epoch(epochs):
    scores = [m["val_clean_acc"] for m, _ in epochs]
    return scores.index(max(scores))  # the first of equal scores, as BestEpoch keeps


def test_the_run_serves_its_best_validation_epoch(fake_env, tiny, tmp_path):
    cfg = tiny("noise.mode=vanilla", "optim.epochs=4", "optim.select_epoch=best_val")
    env = fake_env(tmp_path / "run")  # keeps every epoch's metrics and live weights
    final = run_worker(cfg, env)
    assert len(env.epochs) == 4
    chosen = _argmax_epoch(env.epochs)
    # every epoch's report says which epoch the run serves so far
    for i, (metrics, _) in enumerate(env.epochs):
        assert metrics["best_epoch"] == _argmax_epoch(env.epochs[: i + 1]) + 1
    assert final["best_val_clean_acc"] == max(m["val_clean_acc"] for m, _ in env.epochs)

    state = load_state(tmp_path / "run" / "checkpoint")
    assert state[BEST_VAL_KEY]["epoch"] == chosen and served_epoch(state) == chosen
    for name, value in env.epochs[chosen][1].items():
        assert torch.equal(served_weights(state)[name], value), name
    _, info = load_checkpoint_model(tmp_path / "run")
    assert info["served_epoch"] == chosen and info["epoch"] == 3


def test_training_is_the_same_with_or_without_the_selection(fake_env, tiny, tmp_path):
    last = run_worker(tiny("noise.mode=vanilla", "optim.epochs=2"), fake_env(tmp_path / "a"))
    best = run_worker(
        tiny("noise.mode=vanilla", "optim.epochs=2", "optim.select_epoch=best_val"),
        fake_env(tmp_path / "b"),
    )
    assert best["train_loss"] == last["train_loss"]
    assert best["val_clean_acc"] == last["val_clean_acc"]
    a, b = load_state(tmp_path / "a" / "checkpoint"), load_state(tmp_path / "b" / "checkpoint")
    assert a[BEST_VAL_KEY] is None and served_epoch(a) == 1
    for name, value in a["model"].items():
        assert torch.equal(b["model"][name], value), name  # the live weights: identical


def test_a_resumed_run_keeps_comparing_with_the_epochs_before(fake_env, tiny, tmp_path):
    run = tmp_path / "run"
    first = fake_env(run)
    run_worker(tiny("noise.mode=vanilla", "optim.epochs=2", "optim.select_epoch=best_val"), first)
    second = fake_env(run, resume=True)
    run_worker(tiny("noise.mode=vanilla", "optim.epochs=4", "optim.select_epoch=best_val"), second)
    epochs = first.epochs + second.epochs
    assert [int(m["epoch"]) for m, _ in epochs] == [1, 2, 3, 4]
    chosen = _argmax_epoch(epochs)
    state = load_state(run / "checkpoint")
    assert state[BEST_VAL_KEY]["epoch"] == chosen
    for name, value in epochs[chosen][1].items():
        assert torch.equal(served_weights(state)[name], value), name


def test_best_val_without_a_validation_split_is_refused_before_anything(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--backend", "local", "--config", str(REPO / "configs/mnist_gnt.yaml")]
    sets = ["--set", "optim.select_epoch=best_val", "--set", "data.val_size=0"]
    sets += ["--set", "data.val_suite=none"]
    assert main([*argv, "--run-dir", str(out), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "optim.select_epoch" in err and "data.val_size=0" in err, err
    assert not out.exists()
    assert main([*argv, "--run-dir", str(out), "--set", "optim.select_epoch=early"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optim.select_epoch" in err, err


def test_tune_ranks_best_val_trials_by_the_epoch_they_serve():
    from orchestrator.config import load_config
    from orchestrator.errors import UserError
    from orchestrator.tune_runner import check_metric, default_metric

    cfg = load_config(REPO / "configs/mnist_ant1x1.yaml")  # best_val, chosen on validation
    assert default_metric(cfg) == "best_val_corruption_acc"
    check_metric(cfg, "best_val_corruption_acc")
    with pytest.raises(UserError, match="best_val_corruption_acc"):
        check_metric(cfg, "best_val_clean_acc")
    last = load_config(REPO / "configs/mnist_ant1x1.yaml", ["optim.select_epoch=last"])
    with pytest.raises(UserError, match="optim.select_epoch"):
        check_metric(last, "best_val_corruption_acc")
