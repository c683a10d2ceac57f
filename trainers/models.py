"""Classifier registry. Every model takes images in [0, 1] and normalises inside,
so noise, clipping and l2 sizes are all measured in pixel space (docs/METHOD.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from trainers.patch_conv import PatchConv2d

MODELS: dict[str, Callable[..., nn.Module]] = {}

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return wrap


class Normalized(nn.Module):
    """``net((x - mean) / std)``: the wrapper the reference put around ResNet50."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class MadryCNN(nn.Module):
    """Madry et al. 2018 MNIST net: conv5x5x32, pool, conv5x5x64, pool, fc1024, fc10
    (ReLU after each convolution and after fc1024).

    Each ReLU runs after its max-pool: ReLU is monotone, so ``pool(relu(a))`` equals
    ``relu(pool(a))`` and routes the gradient to the same pixel, at a quarter of the
    elementwise work. The first convolution is a ``PatchConv2d`` (one GEMM on CPU, where
    oneDNN is slow for one input channel). Neither changes the function, the gradients or
    the state dict (parameter-free layers moved; the convolutions keep indices 0 and 3)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            PatchConv2d(in_channels, 32, 5, padding=2),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Linear(1024, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet18 for 32x32 inputs: 3x3 stem, no max-pool (the usual CIFAR variant)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64))
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(torch.relu(self.stem(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


@register("madry_cnn")
def madry_cnn(num_classes: int = 10, **_: object) -> nn.Module:
    return Normalized(MadryCNN(num_classes), MNIST_MEAN, MNIST_STD)


@register("resnet18")
def resnet18(num_classes: int = 10, **_: object) -> nn.Module:
    return Normalized(CifarResNet18(num_classes), CIFAR10_MEAN, CIFAR10_STD)


@register("resnet50")
def resnet50(num_classes: int = 1000, weights_path: str | None = None, **_: object) -> nn.Module:
    """torchvision ResNet50; ``weights_path`` loads e.g. IMAGENET1K_V1 from a local file
    (no hub download: machines here are offline)."""
    net = torchvision.models.resnet50(num_classes=num_classes)
    if weights_path:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights not found: {path} (put torchvision's resnet50 "
                "IMAGENET1K_V1 state_dict, e.g. resnet50-0676ba61.pth, there)"
            )
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return Normalized(net, IMAGENET_MEAN, IMAGENET_STD)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Factory by registry name, e.g. ``create_model("madry_cnn", num_classes=10)``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
