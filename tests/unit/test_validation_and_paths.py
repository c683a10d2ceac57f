"""Quick validation leaves the training RNG alone; config paths become absolute."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from generators.networks import create_generator
from orchestrator.config import load_config
from orchestrator.train import absolute_paths
from trainers.device import Precision
from trainers.models import create_model
from trainers.validation import quick_validation


def test_quick_validation_does_not_reset_the_training_rng():
    data = TensorDataset(torch.rand(16, 1, 28, 28), torch.randint(10, (16,)))
    loader = DataLoader(data, batch_size=8)
    model, generator = create_model("madry_cnn"), create_generator("1x1", channels=1)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    metrics = quick_validation(
        model, loader, Precision.create("cpu"), generator=generator, epsilon=3.0
    )
    assert set(metrics) == {"val_clean_acc", "val_gaussian_acc", "val_generator_acc"}
    assert torch.equal(torch.rand(3), expected)


def test_relative_config_paths_are_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.root=data", "model.weights_path=w/r50.pth"])
    fixed = absolute_paths(cfg)
    assert fixed.data.root == str(tmp_path / "data")
    assert fixed.model.weights_path == str(tmp_path / "w" / "r50.pth")
    assert fixed.data.stylized_root is None
