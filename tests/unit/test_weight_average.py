"""``optim.ema_decay``: validation and eval read an exponential moving average of the
classifier's weights, while training (and the ANT generator, which attacks the live
weights) stays exactly what it is without it."""

from pathlib import Path

import pytest
import torch
from test_loop_fidelity import FakeEnv, Preempted, tiny
from test_suite_validation import IMAGES, eval_val_suite
from test_suite_validation import _train as train_gnt
from torch import nn

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.suite_validation import MEAN_KEY
from trainers.averaging import WeightAverage, create_average
from trainers.checkpoint_format import load_state
from trainers.loop import LIVE_PREFIX, run_worker

REPO = Path(__file__).resolve().parents[2]


def test_the_average_is_the_exponential_moving_average_of_the_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    average = WeightAverage(model, decay=0.75)
    expected = None
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(8, 3))  # moves the batch-norm running statistics
        average.update(model)
        live = {k: v.clone().float() for k, v in model.state_dict().items()}
        if expected is None:  # the first update copies
            expected = live
        else:
            expected = {k: 0.75 * expected[k] + 0.25 * live[k] for k in live}
    got = average.model.state_dict()
    for name, value in expected.items():
        if name.endswith("num_batches_tracked"):
            continue  # an integer buffer: averaged and truncated, not compared
        assert torch.allclose(got[name].float(), value, atol=1e-6), name
    assert average.updates == 5 and not average.model.training


def test_state_round_trip_and_off_when_zero():
    model = nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.9)
    average.update(model)
    average.update(nn.Linear(2, 2))
    again = WeightAverage(nn.Linear(2, 2), decay=0.9)
    again.load_state(average.state())
    assert again.updates == 2
    for name, value in average.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], value)
    assert create_average(model, 0.0) is None
    with pytest.raises(ValueError):
        WeightAverage(model, decay=1.0)


def test_config_rejects_a_decay_of_one_naming_the_key(tmp_path, capsys):
    assert load_config(None, ["optim.ema_decay=0.998"]).optim.ema_decay == 0.998
    out = tmp_path / "run"
    argv = ["train", "--backend", "local", "--config", str(REPO / "configs/mnist_gnt.yaml")]
    assert main([*argv, "--run-dir", str(out), "--set", "optim.ema_decay=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optim.ema_decay" in err, err
    assert not out.exists()


def test_a_resumed_run_continues_the_same_average(tmp_path):
    """Preempted after a mid-epoch checkpoint and resumed, the run ends with the same
    averaged weights as one that was never interrupted."""
    cfg = tiny(
        "noise.mode=vanilla",  # GNT's noise stream is not part of a checkpoint
        "optim.epochs=2",
        "optim.ema_decay=0.8",
        "runtime.checkpoint_every_steps=5",
    )
    run_worker(cfg, FakeEnv(tmp_path / "calm"))
    calm = load_state(tmp_path / "calm" / "checkpoint")
    run = tmp_path / "run"
    with pytest.raises(Preempted):
        run_worker(cfg, FakeEnv(run, preempt_mid_epoch=True))
    assert load_state(run / "checkpoint")["averaged_model"]["updates"] == 5
    run_worker(cfg, FakeEnv(run, resume=True))
    final = load_state(run / "checkpoint")
    assert final["averaged_model"]["updates"] == calm["averaged_model"]["updates"] == 16
    for name, value in calm["averaged_model"]["weights"].items():
        got = final["averaged_model"]["weights"][name]
        assert torch.allclose(got.float(), value.float(), atol=1e-6), name


# GNT on 512 real digits for 2 epochs with the suite of 300 validation digits on.
SUITE = ("data.val_suite=mnist-c", f"data.val_suite_images={IMAGES}")


def test_training_is_unchanged_and_eval_serves_the_average(mnist_root, tmp_path):
    plain = train_gnt(tmp_path / "plain", mnist_root, tmp_path, *SUITE, "optim.ema_decay=0")
    averaged = train_gnt(tmp_path / "ema", mnist_root, tmp_path, *SUITE, "optim.ema_decay=0.9")
    # Same training (loss of every step of the last epoch), and the live weights measure
    # exactly what the run without the average measured.
    assert averaged["train_loss"] == plain["train_loss"]
    assert averaged[LIVE_PREFIX + MEAN_KEY] == plain[MEAN_KEY]
    assert LIVE_PREFIX + MEAN_KEY not in plain
    assert averaged[MEAN_KEY] != plain[MEAN_KEY]  # the average is other weights

    state = load_state(tmp_path / "ema" / "checkpoint")
    assert state["averaged_model"]["updates"] == averaged["step"] == 16
    report = eval_val_suite(tmp_path / "ema", mnist_root, tmp_path / "eval")
    assert report["mean_accuracy"] == pytest.approx(averaged[MEAN_KEY], abs=1e-12)
    assert report["metadata"]["checkpoint"]["weights"] == "averaged"
    # model.pt, the run's final classifier for other tools, is the average too.
    served = torch.load(tmp_path / "ema" / "model.pt", weights_only=False)["model"]
    for name, value in state["averaged_model"]["weights"].items():
        assert torch.equal(served[name], value), name


def test_resuming_a_run_without_an_average_starts_one_from_its_weights(tmp_path):
    run = tmp_path / "run"
    run_worker(tiny("noise.mode=vanilla"), FakeEnv(run))  # 1 epoch, 8 steps, no average
    assert load_state(run / "checkpoint")["averaged_model"] is None
    resumed = tiny("noise.mode=vanilla", "optim.epochs=2", "optim.ema_decay=0.8")
    run_worker(resumed, FakeEnv(run, resume=True))
    averaged = load_state(run / "checkpoint")["averaged_model"]
    # one copy of the restored weights, then the 8 steps of epoch 2
    assert averaged["updates"] == 9 and averaged["decay"] == 0.8
