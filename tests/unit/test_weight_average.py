"""``optim.ema_decay``: validation and eval read an exponential moving average of the
classifier's weights, while training (and the ANT generator, which attacks the live
weights) stays exactly what it is without it (on real MNIST, with eval serving the
average: tests/integration/test_training_runs.py)."""

from pathlib import Path

import pytest
import torch
from torch import nn

from orchestrator.cli import main
from orchestrator.config import load_config
from trainers.averaging import WeightAverage, create_average
from trainers.checkpoint_format import load_state
from trainers.loop import run_worker

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


def test_a_resumed_run_continues_the_same_average(fake_env, tiny, tmp_path):
    """Preempted after a mid-epoch checkpoint and resumed, the run ends with the same
    averaged weights as one that was never interrupted."""
    cfg = tiny(
        "noise.mode=vanilla",  # GNT's noise stream is not part of a checkpoint
        "optim.epochs=2",
        "optim.ema_decay=0.8",
        "runtime.checkpoint_every_steps=5",
    )
    run_worker(cfg, fake_env(tmp_path / "calm"))
    calm = load_state(tmp_path / "calm" / "checkpoint")
    run = tmp_path / "run"
    with pytest.raises(fake_env.Preempted):
        run_worker(cfg, fake_env(run, preempt_mid_epoch=True))
    assert load_state(run / "checkpoint")["averaged_model"]["updates"] == 5
    run_worker(cfg, fake_env(run, resume=True))
    final = load_state(run / "checkpoint")
    assert final["averaged_model"]["updates"] == calm["averaged_model"]["updates"] == 16
    for name, value in calm["averaged_model"]["weights"].items():
        got = final["averaged_model"]["weights"][name]
        assert torch.allclose(got.float(), value.float(), atol=1e-6), name


def test_resuming_a_run_without_an_average_starts_one_from_its_weights(fake_env, tiny, tmp_path):
    run = tmp_path / "run"
    run_worker(tiny("noise.mode=vanilla"), fake_env(run))  # 1 epoch, 8 steps, no average
    assert load_state(run / "checkpoint")["averaged_model"] is None
    resumed = tiny("noise.mode=vanilla", "optim.epochs=2", "optim.ema_decay=0.8")
    run_worker(resumed, fake_env(run, resume=True))
    averaged = load_state(run / "checkpoint")["averaged_model"]
    # one copy of the restored weights, then the 8 steps of epoch 2
    assert averaged["updates"] == 9 and averaged["decay"] == 0.8
