"""Corruption benchmark files on disk: MNIST-C, CIFAR-10-C and ImageNet-C (docs/METHOD.md,
"Evaluation").

Every loader yields batches ``(x, y)``: ``x`` float32 NCHW in [0, 1], ``y`` int64 labels, one
loader per (corruption, severity). Missing, truncated or misshapen files raise
:class:`BenchmarkDataError` with one line that names the file and the layout we expected.

Layouts (``root`` is the directory the user points us at):

- MNIST-C (Mu & Gilmer 2019): ``<root>/mnist_c/<corruption>/test_images.npy`` uint8
  N x 28 x 28 x 1 and ``test_labels.npy`` (N,) ints. One severity, reported as 1.
  ``identity`` (the clean test set) is optional.
- CIFAR-10-C: ``<root>/CIFAR-10-C/<corruption>.npy`` uint8 (5*M) x 32 x 32 x 3, severity s is
  rows (s-1)*M : s*M, and ``<root>/CIFAR-10-C/labels.npy`` (5*M,). The official M is 10000.
- ImageNet-C: ``<root>/<corruption>/<severity>/<wnid>/*.JPEG``; class index = sorted wnid
  order (torchvision ImageFolder), so the tree must hold all 1000 wnids for a 1000-way model.
  The files are 224x224 and are read without resizing (see ``IMAGENET_C_TRANSFORM``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms


class BenchmarkDataError(FileNotFoundError, ValueError):
    """Benchmark files are missing, truncated or have the wrong layout (a user error)."""


# ImageNet-C categories (Hendrycks & Dietterich 2019); CIFAR-10-C uses the same 15 corruptions.
CORRUPTION_CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
IMAGENET_C_CORRUPTIONS: tuple[str, ...] = tuple(
    c for names in CORRUPTION_CATEGORIES.values() for c in names
)
CATEGORY_OF: dict[str, str] = {
    c: category for category, names in CORRUPTION_CATEGORIES.items() for c in names
}

# MNIST-C has its own 15 corruptions and no categories (no mCE either).
MNIST_C_CORRUPTIONS: tuple[str, ...] = (
    "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
    "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
)  # fmt: skip
MNIST_C_CLEAN = "identity"


# The benchmarks antray knows, by name: the one place the names are listed (configs'
# data.val_suite and antray eval's --benchmark take them from here).
Benchmark = Literal["mnist-c", "cifar10-c", "imagenet-c"]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: Benchmark
    clean_dataset: str  # the clean images it corrupts (trainers.data.IMAGE_SPECS)
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    num_classes: int
    layout: str  # one line, quoted in every BenchmarkDataError


BENCHMARKS: dict[Benchmark, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "mnist-c", "mnist", MNIST_C_CORRUPTIONS, (1,), 10,
            "<root>/mnist_c/<corruption>/test_images.npy (uint8 N x 28 x 28 x 1) "
            "+ test_labels.npy (N,)",
        ),
        BenchmarkSpec(
            "cifar10-c", "cifar10", IMAGENET_C_CORRUPTIONS, (1, 2, 3, 4, 5), 10,
            "<root>/CIFAR-10-C/<corruption>.npy (uint8 5*M x 32 x 32 x 3, 5 severities of M "
            "rows) + <root>/CIFAR-10-C/labels.npy (5*M,)",
        ),
        BenchmarkSpec(
            "imagenet-c", "imagenet", IMAGENET_C_CORRUPTIONS, (1, 2, 3, 4, 5), 1000,
            "<root>/<corruption>/<severity>/<wnid>/*.JPEG",
        ),
    )
}  # fmt: skip

# ImageNet-C's files are already 224x224 crops of the validation images: read them as they
# are. The authors' loader (bethgelab/game-of-noise, datasets.py,
# setup_imagenetc_data_loader) applies CenterCrop(224) + ToTensor only, a no-op crop on
# these files; Resize(256) + CenterCrop(224) is for the clean validation set
# (trainers.data.image_folder), and applying it here would resample every corrupted image.
IMAGENET_C_SIZE = 224
IMAGENET_C_TRANSFORM = transforms.Compose(
    [transforms.CenterCrop(IMAGENET_C_SIZE), transforms.ToTensor()]
)


def corruption_category(corruption: str, benchmark: str | None = None) -> str | None:
    """ImageNet-C category (noise/blur/weather/digital); None for MNIST-C or unknown names."""
    if benchmark == "mnist-c":
        return None
    return CATEGORY_OF.get(corruption)


# ---------------------------------------------------------------- npy files (MNIST-C, CIFAR-10-C)


class ArrayBatches:
    """Re-iterable batches over uint8 NHWC (memory-mapped) images and their labels.

    Reads one batch at a time from disk, so a 50000-image file is never loaded whole.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.labels, self.batch_size = images, labels, batch_size

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.num_samples, self.batch_size):
            stop = start + self.batch_size
            chunk = torch.from_numpy(np.array(self.images[start:stop]))  # copy off the mmap
            x = chunk.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()
            yield x, torch.from_numpy(np.array(self.labels[start:stop], dtype=np.int64))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _load_npy(path: Path, layout: str) -> np.ndarray:
    if not path.is_file():
        raise BenchmarkDataError(f"missing file {path}; expected layout {layout}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BenchmarkDataError(
            f"unreadable or truncated .npy file {path} ({_one_line(exc)}); expected layout {layout}"
        ) from exc


def _load_images(path: Path, hwc: tuple[int, int, int], layout: str) -> np.ndarray:
    images = _load_npy(path, layout)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != hwc or not len(images):
        want = " x ".join(map(str, ("N",) + hwc))
        raise BenchmarkDataError(
            f"bad images in {path}: got {images.dtype} {images.shape}, expected uint8 {want} "
            f"(N > 0); expected layout {layout}"
        )
    return images


def _load_labels(path: Path, n: int, num_classes: int, layout: str) -> np.ndarray:
    labels = _load_npy(path, layout)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != n:
        raise BenchmarkDataError(
            f"bad labels in {path}: got {labels.dtype} {labels.shape}, expected ({n},) integers "
            f"matching the images; expected layout {layout}"
        )
    labels = np.asarray(labels, dtype=np.int64)  # small: read it whole
    if labels.min() < 0 or labels.max() >= num_classes:
        raise BenchmarkDataError(
            f"bad labels in {path}: values span [{labels.min()}, {labels.max()}], "
            f"expected [0, {num_classes - 1}]; expected layout {layout}"
        )
    return labels


def _mnist_c(root: Path, corruption: str) -> tuple[np.ndarray, np.ndarray]:
    spec = BENCHMARKS["mnist-c"]
    folder = root / "mnist_c" / corruption
    images = _load_images(folder / "test_images.npy", (28, 28, 1), spec.layout)
    labels = _load_labels(folder / "test_labels.npy", len(images), spec.num_classes, spec.layout)
    return images, labels


def _cifar10_c(
    root: Path, corruption: str, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images of all 5 severities, stacked, with their labels (pass labels to skip re-reading)."""
    spec = BENCHMARKS["cifar10-c"]
    path = root / "CIFAR-10-C" / f"{corruption}.npy"
    images = _load_images(path, (32, 32, 3), spec.layout)
    if len(images) % len(spec.severities):
        raise BenchmarkDataError(
            f"bad images in {path}: {len(images)} rows is not 5 severities x M images; "
            f"expected layout {spec.layout}"
        )
    labels_path = root / "CIFAR-10-C" / "labels.npy"
    if labels is None:
        labels = _load_labels(labels_path, len(images), spec.num_classes, spec.layout)
    elif len(labels) != len(images):
        raise BenchmarkDataError(
            f"bad images in {path}: {len(images)} rows but {labels_path} has {len(labels)} "
            f"labels; expected layout {spec.layout}"
        )
    return images, labels


def _severity_rows(n_total: int, severity: int) -> slice:
    per = n_total // 5
    return slice((severity - 1) * per, severity * per)


# ------------------------------------------------------------------ ImageNet-C (JPEG folders)


def _load_rgb(path: str) -> Image.Image:
    layout = BENCHMARKS["imagenet-c"].layout
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except OSError as exc:  # PIL.UnidentifiedImageError and truncated JPEGs are OSErrors
        raise BenchmarkDataError(
            f"unreadable image {path} ({_one_line(exc)}); expected layout {layout}"
        ) from exc
    if min(rgb.size) < IMAGENET_C_SIZE:  # CenterCrop would pad it with black
        width, height = rgb.size
        raise BenchmarkDataError(
            f"image {path} is {width}x{height}, smaller than ImageNet-C's "
            f"{IMAGENET_C_SIZE}x{IMAGENET_C_SIZE}; expected layout {layout}"
        )
    return rgb


def _image_folder(folder: Path) -> datasets.ImageFolder:
    layout = BENCHMARKS["imagenet-c"].layout
    if not folder.is_dir():
        raise BenchmarkDataError(f"missing directory {folder}; expected layout {layout}")
    try:
        return datasets.ImageFolder(str(folder), transform=IMAGENET_C_TRANSFORM, loader=_load_rgb)
    except FileNotFoundError as exc:  # no wnid folders, or a wnid folder without images
        raise BenchmarkDataError(
            f"no images under {folder} ({_one_line(exc)}); expected layout {layout}"
        ) from exc


def _evenly_spaced(n: int, limit: int | None) -> list[int] | None:
    """ImageFolder sorts by class, so a prefix would be one class: stride over the set instead."""
    if limit is None or limit >= n:
        return None
    return [i * n // limit for i in range(limit)]


# ------------------------------------------------------------------------------- public API


def _resolve(
    name: str, corruptions: Sequence[str] | None, severities: Sequence[int] | None
) -> tuple[BenchmarkSpec, tuple[str, ...], tuple[int, ...]]:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    corruptions = tuple(spec.corruptions if corruptions is None else corruptions)
    allowed = spec.corruptions + ((MNIST_C_CLEAN,) if name == "mnist-c" else ())
    unknown = [c for c in corruptions if c not in allowed]
    if unknown:
        raise ValueError(f"unknown {name} corruption(s) {unknown}; choose from {list(allowed)}")
    severities = tuple(spec.severities if severities is None else (int(s) for s in severities))
    bad = [s for s in severities if s not in spec.severities]
    if bad:
        raise ValueError(f"{name} has severities {list(spec.severities)}, got {bad}")
    return spec, corruptions, severities


def check_benchmark_files(
    name: str,
    root: str | Path,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
) -> None:
    """Validate every file the selection needs up front (headers, shapes, labels, folders).

    JPEG contents are only decoded when iterated; a bad one then raises BenchmarkDataError.
    """
    spec, corruptions, severities = _resolve(name, corruptions, severities)
    root = Path(root)
    if name == "mnist-c":
        for corruption in corruptions:
            _mnist_c(root, corruption)
    elif name == "cifar10-c":
        labels = None
        for corruption in corruptions:
            _, labels = _cifar10_c(root, corruption, labels)
    else:
        reference: tuple[Path, list[str]] | None = None
        for corruption in corruptions:
            for severity in severities:
                folder = root / corruption / str(severity)
                classes = _image_folder(folder).classes
                if reference is None:
                    reference = (folder, classes)
                elif classes != reference[1]:
                    raise BenchmarkDataError(
                        f"{folder} holds {len(classes)} wnid folders but {reference[0]} holds "
                        f"{len(reference[1])} (or other names): class indices would disagree; "
                        f"expected layout {spec.layout}"
                    )


def iter_benchmark(
    name: str,
    root: str | Path,
    *,
    batch_size: int,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    limit: int | None = None,
    num_workers: int = 0,
    check: bool = True,
) -> Iterator[tuple[str, int, Iterable[tuple[torch.Tensor, torch.Tensor]]]]:
    """Yield ``(corruption, severity, batches)`` for a benchmark in ``BENCHMARKS``.

    ``limit`` caps the images per (corruption, severity): the first ``limit`` rows of the npy
    files (their order is the shuffled test set), an even stride over ImageNet-C's class-sorted
    folders. ``check`` validates all selected files before the first batch, so a missing file
    fails in seconds rather than after hours of evaluation. ``len(batches)`` is the batch count.
    """
    spec, corruptions, severities = _resolve(name, corruptions, severities)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    root = Path(root)
    if check:
        check_benchmark_files(name, root, corruptions=corruptions, severities=severities)

    cifar_labels = None
    for corruption in corruptions:
        if name == "mnist-c":
            images, labels = _mnist_c(root, corruption)
            yield corruption, 1, ArrayBatches(images[:limit], labels[:limit], batch_size=batch_size)
        elif name == "cifar10-c":
            images, cifar_labels = _cifar10_c(root, corruption, cifar_labels)
            for severity in severities:
                rows = _severity_rows(len(images), severity)
                x, y = images[rows][:limit], cifar_labels[rows][:limit]
                yield corruption, severity, ArrayBatches(x, y, batch_size=batch_size)
        else:
            for severity in severities:
                dataset = _image_folder(root / corruption / str(severity))
                indices = _evenly_spaced(len(dataset), limit)
                subset = dataset if indices is None else Subset(dataset, indices)
                loader = DataLoader(
                    subset, batch_size=batch_size, shuffle=False, num_workers=num_workers
                )
                yield corruption, severity, loader


__all__ = [
    "BENCHMARKS",
    "CATEGORY_OF",
    "CORRUPTION_CATEGORIES",
    "IMAGENET_C_CORRUPTIONS",
    "IMAGENET_C_SIZE",
    "IMAGENET_C_TRANSFORM",
    "MNIST_C_CLEAN",
    "MNIST_C_CORRUPTIONS",
    "ArrayBatches",
    "BenchmarkDataError",
    "BenchmarkSpec",
    "check_benchmark_files",
    "corruption_category",
    "iter_benchmark",
]
