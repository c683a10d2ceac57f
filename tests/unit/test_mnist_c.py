"""Unit tests of the generated MNIST-C suite (evaluation.corruptions.mnist_c).

One table of the 15 corruptions drives the contract tests (shape, range, dtype, determinism,
label preservation on real digits); then one test per corruption pins its published
parameters with a statistic or an independent oracle (scipy / scikit-image / a plain loop).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import feature, transform

from evaluation.benchmarks import MNIST_C_CORRUPTIONS
from evaluation.corruptions._ops import gaussian_kernel1d, separable_conv2d
from evaluation.corruptions.mnist_c import (
    MNIST_C,
    corrupt_mnist,
    mnist_c_category,
    mnist_c_corruptions,
)
from evaluation.corruptions.mnist_c.affine import centred, warp
from evaluation.corruptions.mnist_c.blur import (
    glass_shuffle,
    glass_shuffle_draws,
    vertical_gaussian,
)
from evaluation.corruptions.mnist_c.lines import dotted_line_map, zigzag_points
from evaluation.corruptions.mnist_c.overlay import fog_fractals, fog_with, spatter_with
from evaluation.corruptions.suites import generated_suite
from evaluation.corruptions.weather import plasma_fractal
from trainers.data import load_mnist, resolve_data_root

# name -> (category, stochastic, digits of 20 the matching oracle must recognise)
TABLE = {
    "shot_noise": ("noise", True, 19),
    "impulse_noise": ("noise", True, 19),
    "glass_blur": ("blur", True, 19),
    "motion_blur": ("blur", True, 19),
    "shear": ("affine", True, 19),
    "scale": ("affine", False, 19),
    "rotate": ("affine", True, 19),
    "brightness": ("weather", False, 19),
    "translate": ("affine", True, 19),
    # The inverted side bands add two strong vertical edges to every digit, which a linear
    # matcher cannot ignore; 12 of 20 is still six times chance.
    "stripe": ("digital", False, 12),
    "fog": ("weather", True, 19),
    "spatter": ("weather", True, 19),
    "dotted_line": ("line", True, 19),
    "zigzag": ("line", True, 19),
    "canny_edges": ("digital", False, 19),
}
NAMES = list(TABLE)
CENTRE = 13.5


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/unit/conftest.py


@pytest.fixture(scope="module")
def digits(mnist_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 400 MNIST test digits [400, 1, 28, 28] in [0, 1] and their labels."""
    x, y = load_mnist(resolve_data_root(mnist_root), train=False).tensors
    return x[:400].clone(), y[:400].clone()


def _rand(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _blob(col: float = CENTRE, row: float = CENTRE, sx: float = 2.5, sy: float = 2.5):
    """A smooth gaussian blob [1, 1, 28, 28] (moments are exact, no pixel clipping)."""
    grid = torch.arange(28, dtype=torch.float64)
    img = torch.exp(
        -((grid[None] - col) ** 2) / (2 * sx**2) - (grid[:, None] - row) ** 2 / (2 * sy**2)
    )
    return img[None, None]


def _moments(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: centre of mass (col, row) and principal-axis angle (radians, x right y down)."""
    img = img[:, 0].to(torch.float64)
    grid = torch.arange(28, dtype=torch.float64)
    mass = img.sum((1, 2))
    col = (img * grid[None, None]).sum((1, 2)) / mass
    row = (img * grid[None, :, None]).sum((1, 2)) / mass
    dc = grid[None, None] - col[:, None, None]
    dr = grid[None, :, None] - row[:, None, None]
    mu20, mu02, mu11 = ((img * d).sum((1, 2)) / mass for d in (dc * dc, dr * dr, dc * dr))
    return col, row, 0.5 * torch.atan2(2 * mu11, mu20 - mu02)


# ----------------------------------------------------------------------------- the registry


def test_the_suite_is_mnist_c_s_fifteen_at_one_severity() -> None:
    assert mnist_c_corruptions() == list(MNIST_C_CORRUPTIONS) == NAMES
    assert "identity" not in MNIST_C
    suite = generated_suite("mnist-c")
    assert suite.corruptions == tuple(MNIST_C_CORRUPTIONS) and suite.severities == (1,)
    assert suite.apply is corrupt_mnist
    for name, (category, stochastic, _) in TABLE.items():
        assert suite.category(name) == mnist_c_category(name) == category
        assert MNIST_C[name].stochastic is stochastic


def test_bad_arguments_raise() -> None:
    x = _rand((2, 1, 28, 28))
    with pytest.raises(ValueError, match="unknown MNIST-C corruption"):
        corrupt_mnist(x, "identity", 1, seed=0)
    for severity in (0, 2, True):
        with pytest.raises(ValueError, match="single severity 1"):
            corrupt_mnist(x, "shear", severity, seed=0)
    for shape in ((2, 3, 28, 28), (2, 1, 32, 32), (28, 28)):
        with pytest.raises(ValueError, match="28x28"):
            corrupt_mnist(_rand(shape), "shear", 1, seed=0)
    with pytest.raises(ValueError, match="float"):
        corrupt_mnist((x * 255).to(torch.uint8), "shear", 1, seed=0)
    assert corrupt_mnist(x[:0], "fog", seed=0).shape == (0, 1, 28, 28)


# ------------------------------------------------------------------- the contract, per row


@pytest.mark.parametrize("name", NAMES)
def test_contract_shape_range_dtype_determinism(name: str, digits) -> None:
    x = digits[0][:6]
    out = corrupt_mnist(x, name, 1, seed=7)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert not out.requires_grad and 0.0 <= out.min() and out.max() <= 1.0
    assert not torch.equal(out, x)  # every corruption changes every batch of digits
    # same seed: same output, whatever the global RNG does in between
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(corrupt_mnist(x, name, 1, seed=7), out)
    other = corrupt_mnist(x, name, 1, seed=8)
    assert torch.equal(other, out) is not TABLE[name][1]
    # one digit without a batch axis; other float dtypes are kept
    assert torch.equal(
        corrupt_mnist(x[0], name, 1, seed=7), corrupt_mnist(x[:1], name, 1, seed=7)[0]
    )
    for dtype in (torch.float64, torch.float16):
        typed = corrupt_mnist(x.to(dtype), name, 1, seed=7)
        assert typed.dtype == dtype and 0.0 <= typed.min() and typed.max() <= 1.0


def _band_pass(z: torch.Tensor) -> torch.Tensor:
    """Difference of gaussians (1.5 and 4 px), zero mean, unit norm: ignores haze and offsets."""

    def blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
        return separable_conv2d(img, gaussian_kernel1d(sigma, int(3 * sigma + 0.5)), "replicate")

    z = blur(z.to(torch.float64), 1.5) - blur(z.to(torch.float64), 4.0)
    z = z - z.mean(dim=(1, 2, 3), keepdim=True)
    return z / z.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]


def _tolerant_versions(refs: torch.Tensor) -> torch.Tensor:
    """Each reference digit under a grid of the small rotations, shears and scalings a reader
    shrugs off (+-0.4 rad, 70%): [K, M, 1, 28, 28]."""
    linear = []
    for angle in (-0.4, 0.0, 0.4):
        for shear in (-0.4, 0.0, 0.4):
            for zoom in (1.0, 1 / 0.7):
                rot = torch.tensor(
                    [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
                )
                she = torch.tensor([[1.0, -math.sin(shear)], [0.0, math.cos(shear)]])
                linear.append((rot @ she * zoom).to(torch.float64))
    maps = centred(torch.stack(linear)).repeat_interleave(refs.shape[0], 0)
    warped = warp(refs.to(torch.float64).repeat(len(linear), 1, 1, 1), maps)
    return warped.view(len(linear), *refs.shape)


def _recognised(corrupted: torch.Tensor, refs: torch.Tensor, shift: int = 3) -> int:
    """How many corrupted digits best match their own clean digit among ``refs`` (one per
    class), by band-passed correlation maximised over shifts up to 3 px and the tolerant
    versions of each reference."""
    versions = _tolerant_versions(refs)
    k, m = versions.shape[:2]
    feats = F.pad(_band_pass(versions.reshape(k * m, 1, 28, 28)), (shift,) * 4)
    probe = _band_pass(corrupted)
    best = torch.full((corrupted.shape[0], k * m), -2.0, dtype=torch.float64)
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            moved = feats[..., dy : dy + 28, dx : dx + 28]
            best = torch.maximum(best, torch.einsum("nchw,mchw->nm", probe, moved))
    own = best.view(-1, k, m).amax(dim=1).argmax(dim=1)
    return int((own == torch.arange(corrupted.shape[0])).sum())


@pytest.mark.parametrize("name", NAMES)
def test_labels_are_preserved_on_real_digits(name: str, digits) -> None:
    """The corrupted digit is still recognisably its own digit: a matcher that tolerates
    small shifts, rotations and scalings, and never saw the corruption, picks its clean
    original among one digit of each class (chance: 2 of 20)."""
    x, y = digits
    recognised = 0
    for trial in range(2):
        refs = torch.stack([x[(y == k).nonzero()[trial, 0]] for k in range(10)])
        recognised += _recognised(corrupt_mnist(refs, name, 1, seed=trial), refs)
    assert recognised >= TABLE[name][2]


# ------------------------------------------------------------- statistics that pin parameters


def test_shot_noise_counts_photons_at_scale_3() -> None:
    out = corrupt_mnist(torch.full((64, 1, 28, 28), 0.5), "shot_noise", seed=0)
    levels = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])
    assert torch.isclose(out[..., None], levels, atol=1e-6).any(-1).all()  # poisson(3x) / 3
    assert (out == 0).float().mean().item() == pytest.approx(math.exp(-1.5), abs=0.01)
    black = corrupt_mnist(torch.zeros(4, 1, 28, 28), "shot_noise", seed=0)
    assert black.abs().max() == 0  # no photons, no noise


def test_impulse_noise_flips_17_percent_half_salt() -> None:
    out = corrupt_mnist(torch.full((64, 1, 28, 28), 0.5), "impulse_noise", seed=0)
    flipped = out != 0.5
    assert flipped.float().mean().item() == pytest.approx(0.17, abs=0.005)
    assert (out[flipped] == 1).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert torch.isin(out[flipped], torch.tensor([0.0, 1.0])).all()


def test_glass_blur_blurs_columns_only_with_sigma_0_7() -> None:
    x = _rand((2, 1, 28, 28)).to(torch.float64)
    expected = ndimage.gaussian_filter1d(x.numpy(), 0.7, axis=2, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(vertical_gaussian(x, 0.7).numpy(), expected, atol=1e-12)


def test_glass_shuffle_follows_the_reference_loop() -> None:
    x = torch.arange(2 * 784, dtype=torch.float64).view(2, 1, 28, 28)  # every value unique
    swap, offset = glass_shuffle_draws(2, 28, 1, 2, torch.Generator().manual_seed(0))
    assert swap.shape == (2, 2, 26, 26) and set(offset.unique().tolist()) == {-1, 0}
    assert swap.float().mean().item() == pytest.approx(0.5, abs=0.03)
    out = glass_shuffle(x, swap, offset, 1)
    for b in range(2):  # the reference's sequential swaps, pixel by pixel
        img = x[b, 0].numpy().copy()
        for it in range(2):
            for i, row in enumerate(range(27, 1, -1)):
                for j, col in enumerate(range(27, 1, -1)):
                    if swap[b, it, i, j]:
                        r2, c2 = (
                            row + int(offset[b, it, i, j, 0]),
                            col + int(offset[b, it, i, j, 1]),
                        )
                        img[row, col], img[r2, c2] = img[r2, c2], img[row, col]
        np.testing.assert_array_equal(out[b, 0].numpy(), img)


def test_motion_blur_keeps_the_imagemagick_centre_tap() -> None:
    point = torch.zeros(16, 1, 28, 28)
    point[..., 14, 14] = 1.0
    out = corrupt_mnist(point, "motion_blur", seed=0)
    taps = torch.arange(21, dtype=torch.float64)  # radius 10: 2 * 10 + 1 taps, sigma 3
    centre_weight = 1.0 / torch.exp(-(taps**2) / 18.0).sum().item()
    np.testing.assert_allclose(out[..., 14, 14].numpy(), centre_weight, rtol=1e-5)


def _skimage_warp(img: torch.Tensor, linear: np.ndarray) -> np.ndarray:
    """The reference's warp: skimage with the centre-fixing translation a3, b3 = 13.5 (1 - sum)."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = CENTRE * (1 - linear.sum(axis=1))
    affine = transform.AffineTransform(matrix=matrix)
    return transform.warp(img.numpy().astype(np.float64), inverse_map=affine, order=1)


@pytest.mark.parametrize(
    ("name", "linears"),
    [
        ("shear", [np.array([[1, -math.sin(s)], [0, math.cos(s)]]) for s in (0.4, -0.4)]),
        (
            "rotate",
            [
                np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
                for r in (0.4, -0.4)
            ],
        ),
        ("scale", [np.eye(2) / 0.7]),
    ],
)
def test_affine_matches_skimage_warp_with_published_matrix(name: str, linears, digits) -> None:
    x = digits[0][:24]
    out = corrupt_mnist(x, name, seed=0)
    used = set()
    for b in range(x.shape[0]):
        errors = [np.abs(out[b, 0].numpy() - _skimage_warp(x[b, 0], lin)).max() for lin in linears]
        assert min(errors) < 1e-5
        used.add(int(np.argmin(errors)))
    assert used == set(range(len(linears)))  # random signs: both directions occur


def test_rotate_turns_the_principal_axis_by_0_4_rad() -> None:
    bar = _blob(sx=6.0, sy=1.5).expand(16, 1, 28, 28).clone()
    _, _, before = _moments(bar)
    _, _, after = _moments(corrupt_mnist(bar, "rotate", seed=0))
    turn = (after - before).abs()
    np.testing.assert_allclose(turn.numpy(), 0.4, atol=0.02)
    assert len(set(torch.sign(after).tolist())) == 2


def test_scale_shrinks_ink_to_49_percent_about_the_centre() -> None:
    blob = _blob(col=16.0, row=12.0, sx=3.0, sy=3.0).to(torch.float32)
    out = corrupt_mnist(blob, "scale", seed=0)
    assert out.sum().item() / blob.sum().item() == pytest.approx(0.7**2, abs=0.01)
    col, row, _ = _moments(out)
    assert col.item() == pytest.approx(CENTRE + 0.7 * (16.0 - CENTRE), abs=0.02)
    assert row.item() == pytest.approx(CENTRE + 0.7 * (12.0 - CENTRE), abs=0.02)


def test_translate_moves_the_centre_of_mass_by_3_px_per_axis(digits) -> None:
    x = digits[0][:120]
    border = torch.ones(28, 28, dtype=torch.bool)
    border[3:25, 3:25] = False
    x = x[x[:, 0, border].amax(dim=1) == 0][:64]  # ink 3 px off the edges: a shift keeps it all
    assert len(x) == 64
    out = corrupt_mnist(x, "translate", seed=0)
    col0, row0, _ = _moments(x)
    col1, row1, _ = _moments(out)
    shifts = torch.stack([col1 - col0, row1 - row0], dim=1)
    np.testing.assert_allclose(shifts.abs().numpy(), 3.0, atol=1e-4)
    assert len({tuple(s) for s in torch.sign(shifts).tolist()}) == 4
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), atol=1e-3)


def test_translate_matches_skimage_warp_with_the_reference_shift(digits) -> None:
    """Magnitude and direction convention of the reference: ``transform.warp(x,
    inverse_map=AffineTransform(translation=(dx, dy)))`` with dx, dy each +-3, so output pixel
    (col, row) reads input (col + dx, row + dy). Every digit equals one of the four warps, and
    all four occur (two independent signs per digit, not one shared sign)."""
    x = digits[0][:48]
    out = corrupt_mnist(x, "translate", seed=0)
    shifts = [(dx, dy) for dx in (-3, 3) for dy in (-3, 3)]
    used = set()
    for b in range(x.shape[0]):
        img = x[b, 0].numpy().astype(np.float64)
        errors = [
            np.abs(
                out[b, 0].numpy()
                - transform.warp(img, inverse_map=transform.AffineTransform(translation=s))
            ).max()
            for s in shifts
        ]
        assert min(errors) < 1e-5
        used.add(shifts[int(np.argmin(errors))])
    assert used == set(shifts)


def test_brightness_adds_0_5(digits) -> None:
    x = digits[0][:8]
    assert torch.allclose(corrupt_mnist(x, "brightness", seed=0), (x + 0.5).clamp(max=1.0))


def test_stripe_inverts_half_the_columns() -> None:
    out = corrupt_mnist(torch.zeros(1, 1, 28, 28), "stripe", seed=0)
    assert out.mean().item() == 0.5
    inverted = out[0, 0].amax(dim=0) == 1
    assert inverted.nonzero().flatten().tolist() == list(range(7)) + list(range(21, 28))
    x = _rand((3, 1, 28, 28))
    assert torch.allclose(corrupt_mnist(corrupt_mnist(x, "stripe", seed=0), "stripe", seed=0), x)


def test_fog_is_haze_of_strength_3_from_a_256_map() -> None:
    fractals = fog_fractals(48, 28, torch.Generator().manual_seed(0)).to(torch.float32)
    x = _rand((48, 1, 28, 28))
    x[:, :, 0, 0] = 1.0  # peak 1: output (x + 3 f) / 4
    assert torch.allclose(fog_with(x, fractals), (x + 3 * fractals[:, None]) / 4, atol=1e-6)
    assert corrupt_mnist(torch.zeros(2, 1, 28, 28), "fog", seed=0).abs().max() == 0  # peak 0
    # A 28x28 corner of a 256x256 map spans ~0.3 of [0, 1] and is smooth; the whole 32x32 map
    # (ImageNet-C's CIFAR setting) would span ~1 with ~6x rougher neighbour steps.
    spans = fractals.amax(dim=(1, 2)) - fractals.amin(dim=(1, 2))
    assert 0.2 < spans.mean().item() < 0.45 and fractals.min() >= 0 and fractals.max() <= 1
    assert (fractals[..., 1:] - fractals[..., :-1]).abs().mean().item() < 0.02


def test_plasma_fractal_follows_the_reference_diamond_square() -> None:
    """The interleaved-grid fractal equals the reference's in-place strided recurrence fed with
    the same uniform draws (squares, then top and left edge midpoints, per level)."""
    size, decay = 16, 1.4
    got = plasma_fractal(2, size, decay, torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)
    maps = torch.zeros(2, size, size, dtype=torch.float64)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2

        def mean_plus_wibble(total: torch.Tensor, wibble: float = wibble) -> torch.Tensor:
            jitter = torch.rand(total.shape, generator=draws, dtype=torch.float64)
            return total / 4 + wibble * (2 * jitter - 1) * wibble

        corner = maps[:, ::step, ::step]
        total = corner + corner.roll(-1, 1)
        maps[:, half::step, half::step] = mean_plus_wibble(total + total.roll(-1, 2))
        centre, corner = maps[:, half::step, half::step], maps[:, ::step, ::step]
        maps[:, ::step, half::step] = mean_plus_wibble(
            centre + centre.roll(1, 1) + corner + corner.roll(-1, 2)
        )
        maps[:, half::step, ::step] = mean_plus_wibble(
            centre + centre.roll(1, 2) + corner + corner.roll(-1, 1)
        )
        step, wibble = half, wibble / decay
    flat = maps.flatten(1) - maps.flatten(1).amin(1, keepdim=True)
    expected = (flat / flat.amax(1, keepdim=True)).view(2, size, size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_spatter_matches_a_scipy_oracle_and_covers_13_percent() -> None:
    liquid = 0.65 + 0.3 * torch.randn(
        (4, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    x = _rand((4, 1, 28, 28)).to(torch.float64)
    smooth = ndimage.gaussian_filter(liquid.numpy(), (0, 0, 1.0, 1.0), mode="nearest", truncate=4.0)
    mask = ndimage.gaussian_filter(
        (smooth > 0.65).astype(np.float64), (0, 0, 1.5, 1.5), mode="nearest", truncate=4.0
    )
    mask[mask < 0.8] = 0
    expected = np.clip(x.numpy() * (1 - mask) + 63 / 255 * mask, 0, 1)
    np.testing.assert_allclose(spatter_with(x, liquid).numpy(), expected, atol=1e-12)
    mud = corrupt_mnist(torch.zeros(256, 1, 28, 28), "spatter", seed=0)
    covered = mud > 0
    assert covered.float().mean().item() == pytest.approx(0.134, abs=0.02)
    assert mud[covered].min() >= 0.8 * 63 / 255 - 1e-6 and mud.max() <= 63 / 255 + 1e-6


def test_dotted_line_dashes_and_width() -> None:
    ink = dotted_line_map(torch.tensor([5]), torch.tensor([20]))[0]
    kept = [c for c in range(28) if ink[:, c].any()]
    assert kept == [c for c in range(27) if (c // 2) % 2 == 1]  # pairs 2-3, 6-7, ..., 26
    for c in kept:
        line_row = 5 + 15 * c / 27
        dist = (torch.arange(28) - line_row).abs()
        assert ink[dist.argmin(), c] >= 1 + math.log(1 - 0.5 / 2.3) - 1e-9
        assert ink[dist > 2.3 * (1 - 1 / math.e) + 1e-6, c].abs().max() == 0
    rows = corrupt_mnist(torch.zeros(300, 1, 28, 28), "dotted_line", seed=0)[:, 0, :, 2].argmax(1)
    assert rows.min() >= 0 and rows.max() <= 26 and len(rows.unique()) >= 20


def test_zigzag_teeth_are_2_px_along_a_23_px_baseline() -> None:
    r0, r1 = torch.tensor([10, 10]), torch.tensor([14, 5])
    cols, rows = zigzag_points(r0, r1)
    assert cols.shape == (2, 8)
    theta = torch.atan((r1 - r0).double() / 23)
    along = (cols - 2) * torch.cos(theta)[:, None] + (rows - r0[:, None]) * torch.sin(theta)[
        :, None
    ]
    across = (
        -(cols - 2) * torch.sin(theta)[:, None] + (rows - r0[:, None]) * torch.cos(theta)[:, None]
    )
    np.testing.assert_allclose(along[:, :7].numpy(), [[0, 2, 6, 10, 14, 18, 22]] * 2, atol=1e-9)
    np.testing.assert_allclose(across[:, :7].numpy(), [[0, 2, -2, 2, -2, 2, -2]] * 2, atol=1e-9)
    np.testing.assert_allclose(along[:, 7].numpy(), (23 / torch.cos(theta)).numpy(), atol=1e-9)
    drawn = corrupt_mnist(torch.zeros(64, 1, 28, 28), "zigzag", seed=0)
    assert drawn[..., :2].abs().max() == 0 and drawn[..., 27:].abs().max() == 0


def test_canny_edges_are_binary_with_skimage_default_thresholds() -> None:
    square = torch.zeros(2, 1, 28, 28)
    square[0, :, 8:20, 8:20] = 1.0
    square[1, :, 8:20, 8:20] = 0.03  # gradient below the 0.1 hysteresis floor
    edges = corrupt_mnist(square, "canny_edges", seed=0)
    assert torch.isin(edges, torch.tensor([0.0, 1.0])).all()
    found = edges[0, 0].nonzero()
    assert len(found) > 30 and found.min() >= 7 and found.max() <= 20
    assert not edges[0, 0, 10:18, 10:18].any()  # flat interior: no edges
    assert edges[1].abs().max() == 0


def test_canny_edges_equal_skimage_canny_on_real_digits(digits) -> None:
    """The reference's call exactly: ``feature.canny(np.array(img) / 255.)`` with every default,
    on the float64 digit, pixel for pixel."""
    x = digits[0][:64]
    out = corrupt_mnist(x, "canny_edges", seed=0)
    for b in range(x.shape[0]):
        uint8 = np.round(x[b, 0].numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(out[b, 0].numpy().astype(bool), feature.canny(uint8 / 255.0))
