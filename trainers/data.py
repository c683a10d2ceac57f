"""Datasets behind one data-root resolution: ``--data-root``, then ``ANTRAY_DATA_ROOT``,
then ``./data`` (the only root torchvision may download into).

Every dataset yields float images in [0, 1] (models normalise inside) and int64 labels.
Missing files raise :class:`DataMissingError` naming the exact files and where they go.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import Dataset, Subset, TensorDataset

from generators.rescale import largest_distance, paper_epsilon

DATA_ROOT_ENV = "ANTRAY_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("data")

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataMissingError(FileNotFoundError):
    """Dataset files are missing or unreadable; the message says what to put where."""


@dataclass(frozen=True)
class DataRoot:
    path: Path
    may_download: bool  # only the ./data fallback; user-given roots are read-only


def resolve_data_root(explicit: str | os.PathLike | None = None) -> DataRoot:
    if explicit:
        return DataRoot(Path(explicit).expanduser().resolve(), may_download=False)
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return DataRoot(Path(env).expanduser().resolve(), may_download=False)
    return DataRoot(DEFAULT_DATA_ROOT.resolve(), may_download=True)


@dataclass(frozen=True)
class ImageSpec:
    channels: int
    height: int
    width: int
    num_classes: int

    @property
    def num_coordinates(self) -> int:
        return self.channels * self.height * self.width

    @property
    def shape(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"

    @property
    def default_epsilon(self) -> float:
        """ImageNet's 135 at this image size (docs/METHOD.md, "Images and sizes")."""
        return paper_epsilon(num_coordinates=self.num_coordinates)

    @property
    def largest_distance(self) -> float:
        """The largest l2 size a perturbation of these images can have (sqrt(N))."""
        return largest_distance(num_coordinates=self.num_coordinates)


IMAGE_SPECS = {
    "mnist": ImageSpec(1, 28, 28, 10),
    "synthetic": ImageSpec(1, 28, 28, 10),
    "synthetic-imagenet": ImageSpec(3, 224, 224, 1000),
    "cifar10": ImageSpec(3, 32, 32, 10),
    "imagenet": ImageSpec(3, 224, 224, 1000),
}


def unreachable_epsilon(epsilon: float, dataset: str) -> str | None:
    """Why the l2 size ``epsilon`` cannot perturb ``dataset``'s images, or None if it can:
    at or above the largest distance every perturbation is the saturated image, and a
    generator trained at that size gets no gradient."""
    spec = IMAGE_SPECS[dataset]
    if epsilon < spec.largest_distance:
        return None
    return (
        f"{epsilon:g} is at or above {spec.largest_distance:.4g}, the largest l2 distance "
        f"between two {spec.shape} images in [0, 1] (sqrt({spec.num_coordinates})): every "
        "perturbation would be the saturated image"
    )


def _read_idx(path: Path) -> np.ndarray:
    """IDX file (optionally gzipped) -> array; big-endian header, uint8 payload."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataMissingError(f"{path} is not an IDX uint8 file (corrupt or truncated)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise DataMissingError(
            f"{path} is truncated: expected {int(np.prod(dims))} values, found {payload.size}"
        )
    return payload.reshape(dims)


def _find_mnist_file(root: Path, stem: str) -> Path | None:
    for candidate in (root / "MNIST" / "raw" / f"{stem}.gz", root / "MNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def _download_mnist(root: DataRoot) -> None:
    import torchvision

    root.path.mkdir(parents=True, exist_ok=True)
    # One download per node even with several workers on it (Ray's examples do the same).
    with FileLock(str(root.path / ".mnist.lock")):
        torchvision.datasets.MNIST(str(root.path), train=True, download=True)
        torchvision.datasets.MNIST(str(root.path), train=False, download=True)


def load_mnist(root: DataRoot, *, train: bool) -> TensorDataset:
    """MNIST straight from torchvision's raw IDX files (``.gz`` read directly)."""
    stems = MNIST_FILES["train" if train else "test"]
    paths = [_find_mnist_file(root.path, s) for s in stems]
    if any(p is None for p in paths) and root.may_download:
        try:
            _download_mnist(root)
        except Exception as exc:  # offline: fall through to the explicit message
            download_error = f" (download failed: {type(exc).__name__})"
        else:
            download_error = ""
        paths = [_find_mnist_file(root.path, s) for s in stems]
    else:
        download_error = ""
    if any(p is None for p in paths):
        missing = ", ".join(f"{s}.gz" for s, p in zip(stems, paths, strict=True) if p is None)
        raise DataMissingError(
            f"MNIST files missing: put {missing} in {root.path / 'MNIST' / 'raw'} "
            f"(torchvision's layout; set --data-root or {DATA_ROOT_ENV}){download_error}"
        )
    images = _read_idx(paths[0])  # type: ignore[arg-type]
    labels = _read_idx(paths[1])  # type: ignore[arg-type]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataMissingError(f"{paths[0]} / {paths[1]}: unexpected shapes {images.shape}")
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorDataset(x, y)


def make_synthetic(*, train: bool, size: int = 2048, seed: int = 0) -> TensorDataset:
    """Ten fixed random 28x28 templates plus noise: learnable in a few steps, for tests."""
    g = torch.Generator().manual_seed(1234)
    templates = torch.rand(10, 1, 28, 28, generator=g)
    g.manual_seed(seed + (0 if train else 1))
    y = torch.randint(10, (size,), generator=g)
    x = (0.7 * templates[y] + 0.3 * torch.rand(size, 1, 28, 28, generator=g)).clamp(0, 1)
    return TensorDataset(x, y)


class SyntheticImages(Dataset):
    """``size`` ImageNet-shaped items cycling over a small pool of random images: a data
    source for throughput benchmarks that needs no download and costs almost no memory
    or CPU per item (each item is a view into the pool)."""

    POOL = 64

    def __init__(self, spec: ImageSpec, *, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pool = torch.rand(self.POOL, spec.channels, spec.height, spec.width, generator=g)
        self.labels = torch.randint(spec.num_classes, (size,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pool[i % self.POOL], self.labels[i]


def _torchvision_cifar10(root: DataRoot, *, train: bool, augment: bool) -> Dataset:
    import torchvision
    from torchvision.transforms import v2

    folder = root.path / "cifar-10-batches-py"
    if not folder.is_dir() and not root.may_download:
        raise DataMissingError(
            f"CIFAR-10 missing: extract cifar-10-python.tar.gz so that {folder}/data_batch_1..5 "
            f"and test_batch exist (set --data-root or {DATA_ROOT_ENV})"
        )
    ops = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if augment:
        ops = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *ops]
    root.path.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.path / ".cifar10.lock")):
        return torchvision.datasets.CIFAR10(
            str(root.path), train=train, download=root.may_download, transform=v2.Compose(ops)
        )


def image_folder(path: Path, *, train: bool, what: str = "ImageNet") -> Dataset:
    """ImageNet-style folder ``<path>/<wnid>/*.JPEG`` with the standard resize/crop."""
    import torchvision
    from torchvision.transforms import v2

    if not path.is_dir():
        raise DataMissingError(
            f"{what} folder missing: {path} must hold one subfolder per class (wnid) of images"
        )
    if train:
        ops = [v2.RandomResizedCrop(224), v2.RandomHorizontalFlip()]
    else:
        ops = [v2.Resize(256), v2.CenterCrop(224)]
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    return torchvision.datasets.ImageFolder(str(path), transform=v2.Compose(ops))


def load_dataset(
    name: str,
    root: DataRoot,
    *,
    train: bool,
    limit: int | None = None,
    seed: int = 0,
    augment: bool | None = None,
) -> Dataset:
    """Dataset by config name; ``limit`` keeps the first N items (deterministic).

    ``augment`` (default: ``train``) picks the training transforms; a validation split
    carved from the training files reads them with the evaluation transforms.
    """
    augment = train if augment is None else augment
    if name == "mnist":
        ds: Dataset = load_mnist(root, train=train)
    elif name == "synthetic":
        ds = make_synthetic(train=train, size=limit or SYNTHETIC_SIZE, seed=seed)
    elif name == "synthetic-imagenet":
        spec = IMAGE_SPECS[name]
        ds = SyntheticImages(spec, size=limit or SYNTHETIC_SIZE, seed=seed + (0 if train else 1))
    elif name == "cifar10":
        ds = _torchvision_cifar10(root, train=train, augment=augment)
    elif name == "imagenet":
        ds = image_folder(root.path / "imagenet" / ("train" if train else "val"), train=augment)
    else:
        raise KeyError(f"unknown dataset {name!r}")
    if limit is not None and limit < len(ds):  # type: ignore[arg-type]
        ds = Subset(ds, range(limit))
    return ds


# --- train / validation / test --------------------------------------------------------
# Validation is carved from the training images (never the test set): per-epoch
# validation, Tune's objective and every choice of defaults read it; only `antray eval`
# reads the test set. The split is seeded by its own seed (not the experiment's), so
# every model and every Tune trial is compared on the same validation images.

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
SYNTHETIC_SIZE = 2048
DEFAULT_VAL_SIZE = {
    "mnist": 5000,
    "cifar10": 5000,
    "imagenet": 10000,
    "synthetic": 256,
    "synthetic-imagenet": 256,
}
GENERATED = ("synthetic", "synthetic-imagenet")  # made to size, no files


def default_val_size(name: str) -> int:
    return DEFAULT_VAL_SIZE[name]


def split_indices(n: int, *, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded partition of ``range(n)`` into (train, val) index lists, each sorted."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[val_size:]), sorted(order[:val_size])


def load_split(
    name: str,
    root: DataRoot,
    split: Split,
    *,
    val_size: int | None = None,
    split_seed: int = 0,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """The ``train`` or ``val`` part of the training images, or the ``test`` set.

    ``val_size`` (default: :data:`DEFAULT_VAL_SIZE`) images of the training files form
    the validation split and are excluded from ``train``; ``limit`` keeps the first N of
    the chosen split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test":
        return load_dataset(name, root, train=False, limit=limit, seed=seed)
    size = default_val_size(name) if val_size is None else val_size
    # Synthetic data is generated to size: make enough for both parts.
    full_limit = limit + size if name in GENERATED and limit is not None else None
    full = load_dataset(
        name, root, train=True, augment=split == "train", limit=full_limit, seed=seed
    )
    train_idx, val_idx = split_indices(len(full), val_size=size, seed=split_seed)  # type: ignore[arg-type]
    indices = train_idx if split == "train" else val_idx
    if limit is not None:
        indices = indices[:limit]
    return Subset(full, indices)


def load_stylized(root: DataRoot, stylized_root: str | None) -> Dataset:
    """Stylized-ImageNet (same class folders as ImageNet) for ANT+SIN."""
    path = Path(stylized_root) if stylized_root else root.path / "stylized-imagenet" / "train"
    return image_folder(path, train=True, what="Stylized-ImageNet")
