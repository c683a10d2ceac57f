"""Benchmark loaders on tiny trees written into tmp_path (evaluation/benchmarks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.benchmarks import (
    BENCHMARKS,
    BenchmarkDataError,
    check_benchmark_files,
    corruption_category,
    iter_benchmark,
)

MNIST_C = ("shot_noise", "zigzag")
CIFAR_C = ("gaussian_noise", "fog")


def _mnist_c_tree(root: Path) -> Path:
    for i, corruption in enumerate(MNIST_C):
        folder = root / "mnist_c" / corruption
        folder.mkdir(parents=True)
        images = np.full((6, 28, 28, 1), 50 * i, dtype=np.uint8)
        images[:, 0, 0, 0] = 255
        np.save(folder / "test_images.npy", images)
        np.save(folder / "test_labels.npy", np.arange(6, dtype=np.uint8))
    return root


def _cifar_c_tree(root: Path) -> Path:
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    for corruption in CIFAR_C:
        # 5 severities x 3 images; every pixel of severity s holds the value s.
        images = np.repeat(np.arange(1, 6, dtype=np.uint8), 3)[:, None, None, None]
        np.save(folder / f"{corruption}.npy", np.broadcast_to(images, (15, 32, 32, 3)).copy())
    np.save(folder / "labels.npy", np.arange(15, dtype=np.int64) % 10)
    return root


def _imagenet_c_tree(root: Path) -> Path:
    for severity in (1, 2):
        for k, wnid in enumerate(("n01440764", "n01443537")):
            folder = root / "gaussian_noise" / str(severity) / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (224, 224), (100 * k, 20 * severity, 0)).save(folder / "img.JPEG")
    return root


def test_mnist_c_shapes_range_labels(tmp_path: Path) -> None:
    root = _mnist_c_tree(tmp_path)
    splits = list(iter_benchmark("mnist-c", root, batch_size=4, corruptions=MNIST_C))
    assert [(c, s) for c, s, _ in splits] == [("shot_noise", 1), ("zigzag", 1)]
    batches = list(splits[1][2])
    assert len(splits[1][2]) == 2 and [x.shape for x, _ in batches] == [
        (4, 1, 28, 28),
        (2, 1, 28, 28),
    ]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() == 1.0
    assert x[0, 0, 1, 1] == pytest.approx(50 / 255)
    assert y.tolist() == list(range(6))
    limited = list(iter_benchmark("mnist-c", root, batch_size=4, corruptions=MNIST_C, limit=3))
    assert sum(len(yb) for _, yb in limited[0][2]) == 3


def test_cifar10_c_severity_slicing(tmp_path: Path) -> None:
    root = _cifar_c_tree(tmp_path)
    splits = list(iter_benchmark("cifar10-c", root, batch_size=2, corruptions=CIFAR_C))
    assert [(c, s) for c, s, _ in splits] == [(c, s) for c in CIFAR_C for s in range(1, 6)]
    for _, severity, batches in splits:
        x = torch.cat([xb for xb, _ in batches])
        y = torch.cat([yb for _, yb in batches])
        assert x.shape == (3, 3, 32, 32)
        assert torch.all(x == severity / 255)  # rows (s-1)*3 : s*3
        assert y.tolist() == [(3 * (severity - 1) + i) % 10 for i in range(3)]
    ((_, _, only),) = iter_benchmark(
        "cifar10-c", root, batch_size=8, corruptions=["fog"], severities=[4], limit=2
    )
    ((x, y),) = list(only)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [9, 0]


def test_imagenet_c_folder(tmp_path: Path) -> None:
    root = _imagenet_c_tree(tmp_path)
    check_benchmark_files("imagenet-c", root, corruptions=["gaussian_noise"], severities=[1, 2])
    splits = list(
        iter_benchmark(
            "imagenet-c", root, batch_size=4, corruptions=["gaussian_noise"], severities=[1, 2]
        )
    )
    assert [(c, s) for c, s, _ in splits] == [("gaussian_noise", 1), ("gaussian_noise", 2)]
    ((x, y),) = list(splits[1][2])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [0, 1]  # sorted wnid order
    assert x[1, 0].mean() == pytest.approx(100 / 255, abs=0.02)  # 2nd wnid's red channel


def _random_224(seed: int) -> np.ndarray:
    """A 224x224 RGB image with independent random pixels: any resampling changes it."""
    return np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def test_imagenet_c_files_are_not_resized(tmp_path: Path) -> None:
    """ImageNet-C files are already 224x224: the loader must hand them over pixel for pixel
    (Resize(256) + CenterCrop(224) is for the clean validation set only)."""
    png, jpeg = _random_224(0), _random_224(1)
    png_dir = tmp_path / "fog" / "3" / "n01440764"
    jpeg_dir = tmp_path / "fog" / "3" / "n01443537"
    png_dir.mkdir(parents=True)
    jpeg_dir.mkdir(parents=True)
    Image.fromarray(png).save(png_dir / "a.png")
    Image.fromarray(jpeg).save(jpeg_dir / "b.JPEG", quality=90)
    with Image.open(jpeg_dir / "b.JPEG") as img:
        decoded = np.asarray(img.convert("RGB"))  # what the file holds after JPEG
    ((_, _, loader),) = iter_benchmark(
        "imagenet-c", tmp_path, batch_size=2, corruptions=["fog"], severities=[3]
    )
    ((x, y),) = list(loader)
    assert y.tolist() == [0, 1]
    as_uint8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(as_uint8[0], png)  # PNG: lossless, so exactly the pixels written
    assert np.array_equal(as_uint8[1], decoded)  # JPEG: exactly its decoded pixels
    assert torch.equal(x[0], torch.from_numpy(png).permute(2, 0, 1).float() / 255)


def test_imagenet_c_larger_is_center_cropped_smaller_is_an_error(tmp_path: Path) -> None:
    big = np.zeros((230, 240, 3), dtype=np.uint8)
    big[3:227, 8:232] = _random_224(2)  # the centre 224x224
    folder = tmp_path / "fog" / "1" / "n01440764"
    folder.mkdir(parents=True)
    Image.fromarray(big).save(folder / "big.png")
    ((_, _, loader),) = iter_benchmark(
        "imagenet-c", tmp_path, batch_size=1, corruptions=["fog"], severities=[1]
    )
    ((x, _),) = list(loader)
    as_uint8 = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(as_uint8, _random_224(2))
    Image.new("RGB", (200, 224)).save(folder / "small.png")
    ((_, _, loader),) = iter_benchmark(
        "imagenet-c", tmp_path, batch_size=1, corruptions=["fog"], severities=[1]
    )
    with pytest.raises(BenchmarkDataError, match=r"small\.png is 200x224"):
        list(loader)


def _truncate(path: Path, n_bytes: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:-n_bytes])


# (benchmark, tree builder, how to break it, the file the message must name)
BROKEN = [
    ("mnist-c", _mnist_c_tree, lambda r: _truncate(r / "mnist_c/zigzag/test_images.npy"),
     "mnist_c/zigzag/test_images.npy"),
    ("mnist-c", _mnist_c_tree,
     lambda r: np.save(r / "mnist_c/zigzag/test_images.npy", np.zeros((6, 28, 28, 3), np.uint8)),
     "mnist_c/zigzag/test_images.npy"),
    ("mnist-c", _mnist_c_tree,
     lambda r: np.save(r / "mnist_c/zigzag/test_labels.npy", np.zeros(5, np.int64)),
     "mnist_c/zigzag/test_labels.npy"),
    ("mnist-c", _mnist_c_tree, lambda r: (r / "mnist_c/shot_noise/test_labels.npy").unlink(),
     "mnist_c/shot_noise/test_labels.npy"),
    ("cifar10-c", _cifar_c_tree, lambda r: _truncate(r / "CIFAR-10-C/fog.npy", 1),
     "CIFAR-10-C/fog.npy"),
    ("cifar10-c", _cifar_c_tree,
     lambda r: np.save(r / "CIFAR-10-C/fog.npy", np.zeros((14, 32, 32, 3), np.uint8)),
     "CIFAR-10-C/fog.npy"),
    ("cifar10-c", _cifar_c_tree,
     lambda r: np.save(r / "CIFAR-10-C/labels.npy", np.zeros(10, np.int64)),
     "CIFAR-10-C/labels.npy"),
    ("cifar10-c", _cifar_c_tree, lambda r: (r / "CIFAR-10-C/gaussian_noise.npy").unlink(),
     "CIFAR-10-C/gaussian_noise.npy"),
    ("imagenet-c", _imagenet_c_tree,
     lambda r: (r / "gaussian_noise/2/n01443537/img.JPEG").unlink(), "gaussian_noise/2"),
    ("imagenet-c", _imagenet_c_tree, lambda r: None, "gaussian_noise/3"),
]  # fmt: skip


@pytest.mark.parametrize(("benchmark", "build", "breakage", "named"), BROKEN)
def test_broken_files_raise_naming_the_path(tmp_path, benchmark, build, breakage, named) -> None:
    root = build(tmp_path)
    breakage(root)
    selection = {
        "mnist-c": {"corruptions": MNIST_C},
        "cifar10-c": {"corruptions": CIFAR_C},
        "imagenet-c": {"corruptions": ["gaussian_noise"], "severities": [1, 2, 3]},
    }[benchmark]
    with pytest.raises(BenchmarkDataError) as info:
        check_benchmark_files(benchmark, root, **selection)
    message = str(info.value)
    assert str(root / named) in message and "\n" not in message
    assert BENCHMARKS[benchmark].layout in message
    with pytest.raises(BenchmarkDataError):  # the iterator checks too, before the first batch
        next(iter_benchmark(benchmark, root, batch_size=2, **selection))


def test_bad_jpeg_raises_naming_the_file(tmp_path: Path) -> None:
    root = _imagenet_c_tree(tmp_path)
    bad = root / "gaussian_noise/1/n01440764/img.JPEG"
    bad.write_bytes(b"not a jpeg")
    ((_, _, loader),) = iter_benchmark(
        "imagenet-c", root, batch_size=2, corruptions=["gaussian_noise"], severities=[1]
    )
    with pytest.raises(BenchmarkDataError, match="n01440764"):
        list(loader)


def test_usage_errors_and_categories(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        next(iter_benchmark("svhn-c", tmp_path, batch_size=1))
    with pytest.raises(ValueError, match="severities"):
        next(iter_benchmark("mnist-c", tmp_path, batch_size=1, severities=[2]))
    assert not isinstance(ValueError("x"), BenchmarkDataError)
    assert issubclass(BenchmarkDataError, FileNotFoundError)
    assert corruption_category("glass_blur") == "blur"
    assert corruption_category("glass_blur", "mnist-c") is None
    assert len(BENCHMARKS["mnist-c"].corruptions) == 15
    assert len(BENCHMARKS["imagenet-c"].corruptions) == 15
