"""Quick validation during training: clean accuracy and accuracy under a small,
seeded noise set (Gaussian sigma 0.5, the paper's best GNT sigma, and the current
ANT generator at its epsilon). The full corruption benchmarks live in evaluation/; the
orchestrator hands the loop a ``SuiteValidationFactory`` that measures one of them on the
validation split (``orchestrator.suite_validation``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from generators.samplers import GaussianNoise
from trainers.device import Precision
from trainers.train_config import TrainConfig

QUICK_GAUSSIAN_SIGMA = 0.5

# A measurement of the model on rank 0 at each epoch's end: metrics by name.
SuiteValidation = Callable[[nn.Module], dict[str, float]]
# (cfg, data_root, device) -> the measurement, or None (off)
SuiteValidationFactory = Callable[[TrainConfig, str | None, torch.device], SuiteValidation | None]


@torch.no_grad()
def accuracy(
    model: nn.Module,
    loader: DataLoader,
    precision: Precision,
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    *,
    seed: int = 0,
) -> float:
    model.eval()
    rng = torch.Generator().manual_seed(seed)
    correct = total = 0
    for x, y in loader:
        x = precision.images(x)
        if transform is not None:
            x = transform(x, rng)
        with precision.autocast():
            pred = model(x).argmax(1)
        correct += int((pred.cpu() == y).sum())
        total += int(y.shape[0])
    return correct / max(total, 1)


def quick_validation(
    model: nn.Module,
    loader: DataLoader,
    precision: Precision,
    *,
    generator: nn.Module | None = None,
    epsilon: float | None = None,
) -> dict[str, float]:
    # Seeded noise for comparable epochs, without touching the training RNG streams.
    devices = [precision.device.index or 0] if precision.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _quick_validation(model, loader, precision, generator, epsilon)


def _quick_validation(model, loader, precision, generator, epsilon) -> dict[str, float]:
    gaussian = GaussianNoise([QUICK_GAUSSIAN_SIGMA])
    metrics = {
        "val_clean_acc": accuracy(model, loader, precision),
        "val_gaussian_acc": accuracy(model, loader, precision, lambda x, g: gaussian(x, rng=g)),
    }
    if generator is not None and epsilon is not None:

        def adversarial(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return generator.perturb(x, epsilon=epsilon)  # type: ignore[operator]

        torch.manual_seed(0)
        metrics["val_generator_acc"] = accuracy(model, loader, precision, adversarial)
    return metrics
