"""Unit tests of evaluation.corruptions: contract, severity ordering, seeding and validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.corruptions import (
    CORRUPTIONS,
    available_corruptions,
    category_of,
    corrupt,
)
from evaluation.corruptions.blur import disk_kernel
from evaluation.corruptions.digital import pil_box_matrix
from evaluation.corruptions.params import CIFAR_PARAMS, IMAGENET_PARAMS, table_for
from evaluation.corruptions.weather import plasma_fractal

EXPECTED = {
    "gaussian_noise": "noise",
    "shot_noise": "noise",
    "impulse_noise": "noise",
    "speckle_noise": "noise",
    "gaussian_blur": "blur",
    "defocus_blur": "blur",
    "motion_blur": "blur",
    "fog": "weather",
    "brightness": "weather",
    "contrast": "digital",
    "pixelate": "digital",
    "jpeg_compression": "digital",
}
NAMES = sorted(EXPECTED)
STOCHASTIC = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "motion_blur",
    "fog",
}

# CIFAR table (RGB and MNIST-sized gray) and ImageNet table (max side > 32).
SHAPES = {
    "cifar_rgb": (4, 3, 32, 32),
    "mnist_gray": (4, 1, 28, 28),
    "imagenet_rgb": (2, 3, 64, 64),
}

# Severity pairs allowed to tie (|diff| < 1e-6) because the published constants coincide in
# effect: CIFAR motion blur (6, 2) vs (8, 2) differ only in kernel taps >= 13 whose gaussian
# weights exp(-i^2 / 8) are below 1e-9, so severities 3 and 4 are the same blur.
TIES = {("motion_blur", "cifar", 3)}


def _random_images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _smooth_images(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    b, c, h, w = shape
    coarse = torch.rand((b, c, 4, 4), generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def test_registry_lists_the_corruptions_with_categories() -> None:
    assert sorted(available_corruptions()) == NAMES
    for name, category in EXPECTED.items():
        spec = CORRUPTIONS[name]
        assert spec.name == name
        assert spec.category == category == category_of(name)
        assert spec.stochastic == (name in STOCHASTIC)


def test_param_tables_cover_every_corruption_with_five_severities() -> None:
    for table in (CIFAR_PARAMS, IMAGENET_PARAMS):
        assert set(table) == set(NAMES)
        assert all(len(values) == 5 for values in table.values())
    # spot checks against make_cifar_c.py / make_imagenet_c.py
    assert CIFAR_PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert IMAGENET_PARAMS["jpeg_compression"] == (25, 18, 15, 10, 7)
    assert table_for(32, 32) is CIFAR_PARAMS
    assert table_for(28, 28) is CIFAR_PARAMS
    assert table_for(32, 64) is IMAGENET_PARAMS
    assert table_for(224, 224) is IMAGENET_PARAMS


@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("name", NAMES)
def test_output_contract(name: str, shape_id: str) -> None:
    x = _smooth_images(SHAPES[shape_id])
    y = corrupt(x, name, 3, seed=7)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert y.device == x.device
    assert torch.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert not torch.equal(y, x), "severity 3 should change the images"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_is_preserved(name: str, dtype: torch.dtype) -> None:
    x = _random_images((2, 3, 16, 16)).to(dtype)
    y = corrupt(x, name, 2, seed=0)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= 1.0


@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("name", NAMES)
def test_higher_severity_changes_images_more(name: str, shape_id: str) -> None:
    shape = SHAPES[shape_id]
    table = "cifar" if max(shape[2:]) <= 32 else "imagenet"
    x = _random_images(shape)
    change = [(corrupt(x, name, s, seed=3) - x).abs().mean().item() for s in range(1, 6)]
    for severity in range(1, 5):
        lower, higher = change[severity - 1], change[severity]
        if (name, table, severity) in TIES:
            assert higher == pytest.approx(lower, abs=1e-6)
        else:
            assert higher > lower, f"{name} {shape_id}: severity {severity + 1} <= {severity}"


@pytest.mark.parametrize("name", NAMES)
def test_seeding(name: str) -> None:
    x = _random_images((4, 3, 32, 32))
    first = corrupt(x, name, 4, seed=11)
    assert torch.equal(first, corrupt(x, name, 4, seed=11))
    other = corrupt(x, name, 4, seed=12)
    if name in STOCHASTIC:
        assert not torch.equal(first, other)
    else:
        assert torch.equal(first, other)


def test_seeding_does_not_touch_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    corrupt(_random_images((2, 3, 32, 32)), "fog", 2, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_single_image_without_batch_dim() -> None:
    x = _random_images((4, 3, 32, 32))
    batched = corrupt(x, "gaussian_noise", 2, seed=5)
    single = corrupt(x[0], "gaussian_noise", 2, seed=5)
    assert single.shape == x[0].shape
    assert torch.equal(single, corrupt(x[:1], "gaussian_noise", 2, seed=5)[0])
    assert batched.shape == x.shape


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "3"])
def test_bad_severity_raises(severity: object) -> None:
    with pytest.raises(ValueError, match=r"severity must be one of \[1, 2, 3, 4, 5\]"):
        corrupt(_random_images((1, 3, 8, 8)), "fog", severity, seed=0)  # type: ignore[arg-type]


def test_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'frost'.*gaussian_noise"):
        corrupt(_random_images((1, 3, 8, 8)), "frost", 1, seed=0)
    with pytest.raises(ValueError, match="unknown corruption"):
        category_of("Gaussian Noise")


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
        torch.zeros(2, 2, 8, 8),
        torch.zeros(8, 8),
    ],
)
def test_bad_images_raise(x: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        corrupt(x, "contrast", 1, seed=0)


# ---- semantics of individual corruptions ------------------------------------------------------


def test_gaussian_noise_has_the_published_std() -> None:
    x = torch.full((2, 3, 64, 64), 0.5)
    y = corrupt(x, "gaussian_noise", 1, seed=0)
    assert (y - x).std().item() == pytest.approx(0.08, rel=0.05)  # ImageNet severity 1


def test_shot_noise_is_unbiased_and_scales_with_intensity() -> None:
    x = torch.full((2, 3, 64, 64), 0.3)
    y = corrupt(x, "shot_noise", 1, seed=0)  # ImageNet: poisson(60 x) / 60
    assert y.mean().item() == pytest.approx(0.3, abs=0.01)
    assert y.var().item() == pytest.approx(0.3 / 60, rel=0.1)


def test_impulse_noise_replaces_the_published_fraction() -> None:
    x = torch.full((2, 3, 64, 64), 0.5)
    y = corrupt(x, "impulse_noise", 5, seed=0)  # ImageNet amount 0.27
    assert (y != x).float().mean().item() == pytest.approx(0.27, abs=0.02)
    assert set(torch.unique(y).tolist()) == {0.0, 0.5, 1.0}


def test_brightness_keeps_hue_and_saturation() -> None:
    x = torch.tensor([0.2, 0.4, 0.1]).view(1, 3, 1, 1).expand(1, 3, 40, 40)
    y = corrupt(x.contiguous(), "brightness", 1, seed=0)  # ImageNet +0.1 on V = 0.4
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([0.25, 0.5, 0.125]))
    gray = torch.full((1, 1, 28, 28), 0.97)
    assert torch.equal(corrupt(gray, "brightness", 1, seed=0), torch.ones_like(gray))


def test_contrast_keeps_per_channel_means() -> None:
    x = 0.25 + 0.5 * _random_images((2, 3, 32, 32))
    y = corrupt(x, "contrast", 5, seed=0)  # CIFAR factor 0.15, no clipping needed
    torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)))
    torch.testing.assert_close(
        y - y.mean(dim=(2, 3), keepdim=True), 0.15 * (x - x.mean(dim=(2, 3), keepdim=True))
    )


def test_fog_keeps_constant_images_below_their_max() -> None:
    x = torch.full((2, 3, 32, 32), 0.6)
    y = corrupt(x, "fog", 3, seed=0)
    assert y.max().item() <= 0.6 + 1e-6
    assert torch.equal(y[:, 0], y[:, 1])  # one fractal per image, shared by its channels


def test_plasma_fractal_is_normalised_and_seeded() -> None:
    maps = plasma_fractal(3, 32, 2.0, torch.Generator().manual_seed(0))
    assert maps.shape == (3, 32, 32)
    assert maps.amin(dim=(1, 2)).tolist() == [0.0, 0.0, 0.0]
    assert maps.amax(dim=(1, 2)).tolist() == [1.0, 1.0, 1.0]
    assert not torch.equal(maps[0], maps[1])
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(1, 24, 2.0, torch.Generator())


def test_blurs_preserve_constant_images() -> None:
    x = torch.full((2, 3, 32, 32), 0.4)
    for name in ("gaussian_blur", "defocus_blur", "motion_blur", "pixelate"):
        torch.testing.assert_close(corrupt(x, name, 5, seed=0), x)


def test_disk_kernel_matches_the_reference_construction() -> None:
    for radius, alias in [(0.3, 0.4), (1.5, 0.1), (3, 0.1), (6, 0.5)]:
        kernel = disk_kernel(radius, alias)
        assert kernel.shape == (17, 17)
        assert kernel.sum().item() == pytest.approx(1.0)
        torch.testing.assert_close(kernel, kernel.T)
    # radius < 1 leaves the centre tap only: the kernel is the 3x3 anti-aliasing gaussian
    assert _kernel_support(disk_kernel(0.3, 0.4)) == 3
    # the reference smooths the normalised disk with reflect-101 borders, so a disk touching
    # the border of its array (radius 8 in 17x17, radius 10 in 21x21) gains ~1% mass
    big = disk_kernel(10, 0.5)
    assert big.shape == (21, 21)
    assert big.sum().item() == pytest.approx(1.0108, abs=1e-3)
    assert disk_kernel(8, 0.5).sum().item() == pytest.approx(1.013, abs=1e-3)


def _kernel_support(kernel: torch.Tensor) -> int:
    rows = kernel.abs().sum(dim=1).nonzero().flatten()
    return int(rows.max() - rows.min() + 1)


def test_pil_box_matrix() -> None:
    # exact factor 2: pairs averaged; upscaling: nearest pixel centre
    down = pil_box_matrix(4, 2)
    torch.testing.assert_close(down, torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]).double())
    up = pil_box_matrix(2, 4)
    torch.testing.assert_close(up, torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]]).double())
    # 32 -> 30 (CIFAR severity 1): whole pixels whose centre falls in the footprint
    odd = pil_box_matrix(32, 30)
    assert torch.allclose(odd.sum(dim=1), torch.ones(30, dtype=torch.float64))
    assert odd[0].nonzero().flatten().tolist() == [0]


def test_pixelate_is_blocky() -> None:
    x = _random_images((1, 3, 64, 64))
    y = corrupt(x, "pixelate", 5, seed=0)  # ImageNet factor 0.25: 16x16 blocks of 4x4
    blocks = y.unfold(2, 4, 4).unfold(3, 4, 4)
    assert torch.equal(blocks.amax(dim=(-1, -2)), blocks.amin(dim=(-1, -2)))
    torch.testing.assert_close(y[..., ::4, ::4], F.avg_pool2d(x, 4))


def test_jpeg_quantises_like_a_codec() -> None:
    x = _smooth_images((2, 3, 32, 32))
    y = corrupt(x, "jpeg_compression", 1, seed=0)
    assert torch.equal(torch.round(y * 255) / 255, y)  # decoded 8-bit values
    assert (y - x).abs().mean().item() < 0.05


@pytest.mark.parametrize("size", [32, 28, 64])
def test_pixelate_matches_pil_box_resizes(size: int) -> None:
    image_mod = pytest.importorskip("PIL.Image")  # Pillow ships with torchvision
    x = _random_images((1, 1, size, size)).double()
    table = CIFAR_PARAMS if size <= 32 else IMAGENET_PARAMS
    for severity, factor in enumerate(table["pixelate"], start=1):
        small = int(size * factor)
        pil = image_mod.fromarray(x[0, 0].numpy().astype("float32"), mode="F")
        pil = pil.resize((small, small), image_mod.BOX).resize((size, size), image_mod.BOX)
        expected = torch.from_numpy(np.array(pil, dtype="float64"))
        ours = corrupt(x, "pixelate", severity, seed=0)[0, 0]
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_jpeg_matches_pil() -> None:
    image_mod = pytest.importorskip("PIL.Image")
    x = _smooth_images((1, 3, 64, 64))
    u8 = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for severity, quality in enumerate(IMAGENET_PARAMS["jpeg_compression"], start=1):
        buffer = io.BytesIO()
        image_mod.fromarray(u8).save(buffer, "JPEG", quality=quality)
        expected = torch.from_numpy(np.array(image_mod.open(buffer))).permute(2, 0, 1)
        ours = corrupt(x, "jpeg_compression", severity, seed=0)[0]
        assert torch.equal((ours * 255).round().to(torch.uint8), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str) -> None:
    x = _smooth_images((2, 3, 32, 32))
    cpu = corrupt(x, name, 3, seed=2)
    gpu = corrupt(x.cuda(), name, 3, seed=2)
    assert gpu.device.type == "cuda"
    # jpeg and poisson run on the CPU either way; the rest may differ by float rounding
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)
