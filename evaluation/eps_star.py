"""Median perturbation size eps* along noise directions, with exact clipped l2 sizes.

For an image ``x`` (pixel space [0, 1]) with label ``y`` and a direction ``d``, the
perturbed image at l2 size ``e`` is ``clip(x + eta(e) * d, 0, 1)`` with
``eta(e) = clipping_aware_scale(x, d, epsilon=e)``, so every size is measured after
clipping, exactly (SPEC.md, "Exact l2 size with clipping"). The largest reachable size
is ``E_max = ||saturated(x, d) - x||_2``. Per image, eps is the smallest size at which
the prediction differs from ``y``: 0 for images misclassified clean, ``+inf`` for images
still correct at the fully saturated image. eps* is the median over the set (numpy
convention: the mean of the two middle values for an even count, so ``+inf`` as soon as
half of the values are ``+inf``).

Search (per image, batched over all images; only images still searching are forwarded):

1. one forward on the clean image (misclassified -> eps 0);
2. one forward on the saturated image (still correct -> eps +inf); now ``lo = 0`` is a
   size that does not flip and ``hi = E_max`` one that does;
3. coarse geometric bracket: probe ``hi / 8`` until a probe does not flip;
4. bisection in log-space (probe ``sqrt(lo * hi)``) until ``hi <= lo * (1 + rel_tol)``
   or the image has used ``max_forwards`` forwards.

The reported eps is the upper bracket end ``hi``: a size that provably flips the
prediction, at most ``rel_tol`` (relative) above the last size known not to flip.
Typical cost with the defaults: 10-12 forwards per image on average, 12-16 at most.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from generators.networks import NoiseGenerator
from generators.rescale import clipping_aware_rescale, saturated
from generators.training import FROM_SCRATCH_ITERATIONS, train_generator_from_scratch

COARSE_FACTOR = 8.0  # the coarse bracket divides the size by this per probe
DirectionFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Direction = str | NoiseGenerator | DirectionFn


@dataclass
class EpsStarResult:
    """Per-image sizes (``[B]``, float64 on CPU, 0 / finite / +inf) and their summary."""

    per_image: torch.Tensor
    median: float
    forwards_per_image: float  # mean number of classifier forwards per image
    max_forwards_per_image: int
    forwards: torch.Tensor = field(repr=False)  # ``[B]`` int64, forwards of each image


def median_with_inf(values: torch.Tensor) -> float:
    """Median with numpy's convention (mean of the two middle values); ``+inf`` allowed.

    More than half ``+inf`` -> ``+inf`` (exactly half also gives ``+inf``, like numpy).
    An empty tensor gives ``nan``.
    """
    flat = values.detach().reshape(-1).to(torch.float64).cpu()
    n = flat.numel()
    if n == 0:
        return math.nan
    ordered = torch.sort(flat).values
    if n % 2:
        return float(ordered[n // 2])
    return float((ordered[n // 2 - 1] + ordered[n // 2]) / 2)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block (warns if it was training); the mode is restored after."""
    was_training = model.training
    if was_training:
        warnings.warn(
            "model was in train mode; evaluating it in eval mode", UserWarning, stacklevel=3
        )
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in _chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _chain(*iterables: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    for iterable in iterables:
        yield from iterable


def _image_rng(seed: int, index: int) -> torch.Generator:
    """CPU generator for image ``index``: directions do not depend on the batching."""
    mixed = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % (2**63)
    return torch.Generator().manual_seed(mixed)


def draw_directions(
    x: torch.Tensor, direction: Direction, *, seed: int, start_index: int = 0
) -> torch.Tensor:
    """Directions for the images ``x`` (same shape, float32, on ``x.device``).

    ``direction``: ``"gaussian"`` (N(0, 1)), ``"uniform"`` (U(-1, 1)), a ``NoiseGenerator``
    (its raw, un-rescaled sample), or a callable ``fn(like, rng) -> Tensor`` called once for
    the whole batch with a CPU ``torch.Generator`` seeded from ``(seed, start_index)``.
    Built-in and generator directions are drawn per image from a generator seeded from
    ``(seed, start_index + i)``, so they do not depend on how the set is batched.
    """
    like = x.detach().float()
    batch = like.shape[0]
    if isinstance(direction, str):
        if direction not in ("gaussian", "uniform"):
            raise ValueError(f"unknown direction {direction!r}; use 'gaussian' or 'uniform'")
        shape = tuple(like.shape[1:])
        draws = []
        for i in range(batch):
            rng = _image_rng(seed, start_index + i)
            if direction == "gaussian":
                draws.append(torch.randn(shape, generator=rng))
            else:
                draws.append(torch.rand(shape, generator=rng) * 2.0 - 1.0)
        return torch.stack(draws).to(like.device)
    if isinstance(direction, NoiseGenerator):
        _, _, h, w = like.shape
        latent = direction.latent_shape(1, h, w)[1:]
        z = torch.stack(
            [torch.randn(latent, generator=_image_rng(seed, start_index + i)) for i in range(batch)]
        )
        gen_device = model_device(direction)
        with torch.no_grad():
            out = direction(z.to(gen_device))
        return out.float().to(like.device)
    if callable(direction):
        out = direction(like, _image_rng(seed, start_index))
        if out.shape != like.shape:
            raise ValueError(f"direction gave shape {tuple(out.shape)}, expected {like.shape}")
        return out.detach().float().to(like.device)
    raise TypeError(f"unsupported direction {direction!r}")


def _flipped(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(dim=1) != labels


def _max_size(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``||saturated(x, d) - x||_2`` per image, float64."""
    diff = (saturated(x, d) - x).reshape(x.shape[0], -1).to(torch.float64)
    return diff.norm(dim=1)


def _perturb(x: torch.Tensor, d: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """``clip(x + eta(e) d)`` with exact clipped l2 size ``e = sizes`` per image."""
    return clipping_aware_rescale(x, d, epsilon=sizes)


def _search_chunk(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    d: torch.Tensor,
    *,
    max_forwards: int,
    rel_tol: float,
    bisection_steps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """eps and forward counts (both ``[B]``, CPU) for one chunk; see the module docstring.

    ``bisection_steps`` switches to the plain reference: that many linear bisection steps
    on ``[0, E_max]``, no coarse bracket, no budget.
    """
    batch = x.shape[0]
    device = x.device
    forwards = torch.zeros(batch, dtype=torch.int64, device=device)
    eps = torch.full((batch,), math.nan, dtype=torch.float64, device=device)

    wrong = _flipped(model, x, y)
    forwards += 1
    eps[wrong] = 0.0
    active = ~wrong

    hi = _max_size(x, d)
    lo = torch.zeros_like(hi)
    idx = active.nonzero().squeeze(1)
    if idx.numel():
        flips = _flipped(model, saturated(x[idx], d[idx]), y[idx])
        forwards[idx] += 1
        never = idx[~flips]
        eps[never] = math.inf
        active[never] = False

    step = 0
    while True:
        if bisection_steps is None:
            converged = (lo > 0) & (hi <= lo * (1.0 + rel_tol))
            active &= ~converged & (forwards < max_forwards)
        elif step >= bisection_steps:
            break
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        lo_i, hi_i = lo[idx], hi[idx]
        if bisection_steps is None:
            probe = torch.where(lo_i > 0, torch.sqrt(lo_i * hi_i), hi_i / COARSE_FACTOR)
        else:
            probe = (lo_i + hi_i) / 2
        flips = _flipped(model, _perturb(x[idx], d[idx], probe), y[idx])
        forwards[idx] += 1
        hi[idx] = torch.where(flips, probe, hi_i)
        lo[idx] = torch.where(flips, lo_i, probe)
        step += 1

    searched = torch.isnan(eps)
    eps[searched] = hi[searched]
    return eps.cpu(), forwards.cpu()


def _run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: Callable[[torch.Tensor, int], torch.Tensor],
    *,
    batch_size: int,
    max_forwards: int,
    rel_tol: float,
    bisection_steps: int | None = None,
) -> EpsStarResult:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    device = model_device(model)
    eps_parts, forward_parts = [], []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device=device, dtype=torch.float32)
            yb = y[start : start + batch_size].to(device=device, dtype=torch.int64)
            db = directions(xb, start).to(device=device, dtype=torch.float32)
            eps, forwards = _search_chunk(
                model,
                xb,
                yb,
                db,
                max_forwards=max_forwards,
                rel_tol=rel_tol,
                bisection_steps=bisection_steps,
            )
            eps_parts.append(eps)
            forward_parts.append(forwards)
    per_image = torch.cat(eps_parts) if eps_parts else torch.zeros(0, dtype=torch.float64)
    forwards = torch.cat(forward_parts) if forward_parts else torch.zeros(0, dtype=torch.int64)
    return EpsStarResult(
        per_image=per_image,
        median=median_with_inf(per_image),
        forwards_per_image=float(forwards.double().mean()) if forwards.numel() else 0.0,
        max_forwards_per_image=int(forwards.max()) if forwards.numel() else 0,
        forwards=forwards,
    )


def eps_star(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    direction: Direction = "gaussian",
    seed: int,
    max_forwards: int = 20,
    rel_tol: float = 5e-3,
    batch_size: int = 256,
) -> EpsStarResult:
    """Per-image smallest clipped l2 size along a noise direction that flips the prediction.

    ``x``: images in [0, 1] pixel space (``[B, C, H, W]``), ``y``: labels. ``direction``:
    ``"gaussian"``, ``"uniform"``, a ``NoiseGenerator`` or a callable (see
    ``draw_directions``), reproducible from ``seed``. Each image uses at most
    ``max_forwards`` classifier forwards (>= 2: clean and saturated) and stops once its
    bracket is narrower than ``rel_tol`` (relative). The model runs in eval mode under
    ``torch.no_grad()`` on its own device, in chunks of ``batch_size`` images.
    """
    if max_forwards < 2:
        raise ValueError("max_forwards must be >= 2 (clean and saturated image)")
    if rel_tol <= 0:
        raise ValueError("rel_tol must be positive")

    def directions(xb: torch.Tensor, start: int) -> torch.Tensor:
        return draw_directions(xb, direction, seed=seed, start_index=start)

    return _run(
        model, x, y, directions, batch_size=batch_size, max_forwards=max_forwards, rel_tol=rel_tol
    )


def reference_bisection(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: torch.Tensor,
    steps: int = 50,
    *,
    batch_size: int = 256,
) -> EpsStarResult:
    """Plain bisection on ``[0, E_max]`` in size space along given ``directions`` (validation).

    Same clean / saturated decisions as ``eps_star``, then ``steps`` linear bisection steps;
    the reported eps is the upper bracket end. Forward counts are ``2 + steps`` per image.
    """
    if directions.shape != x.shape:
        raise ValueError(f"directions {tuple(directions.shape)} != images {tuple(x.shape)}")

    def given(xb: torch.Tensor, start: int) -> torch.Tensor:
        return directions[start : start + xb.shape[0]]

    return _run(
        model,
        x,
        y,
        given,
        batch_size=batch_size,
        max_forwards=2 + steps,
        rel_tol=0.0,
        bisection_steps=steps,
    )


def adversarial_eps_star(
    model: nn.Module,
    loader_or_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kind: str,
    epsilon: float,
    seeds: Sequence[int],
    iterations: int = FROM_SCRATCH_ITERATIONS,
    device: torch.device | str = "cpu",
    max_forwards: int = 20,
    rel_tol: float = 5e-3,
    batch_size: int = 256,
) -> dict[str, float | list[float]]:
    """eps* along adversarially trained noise: one fresh generator per seed (paper: 4 seeds).

    For each seed a generator of ``kind`` (``"1x1"`` / ``"3x3"``) is trained from scratch
    against the frozen ``model`` on ``loader_or_batches`` (pixel-space [0, 1] batches) at
    l2 size ``epsilon`` for ``iterations`` Adam steps, then eps* of ``(x, y)`` is measured
    along its samples (directions seeded with the same seed). Returns ``mean`` and ``std``
    (sample std, 0 for one seed, ``nan`` if any eps* is infinite) and ``per_seed``.
    The model is moved to ``device``.
    """
    if not seeds:
        raise ValueError("need at least one seed")
    model.to(device)
    per_seed: list[float] = []
    with eval_mode(model):
        for seed in seeds:
            generator, _ = train_generator_from_scratch(
                model,
                loader_or_batches,
                kind=kind,
                epsilon=epsilon,
                iterations=iterations,
                seed=seed,
                device=device,
            )
            result = eps_star(
                model,
                x,
                y,
                direction=generator,
                seed=seed,
                max_forwards=max_forwards,
                rel_tol=rel_tol,
                batch_size=batch_size,
            )
            per_seed.append(result.median)
    mean = statistics.fmean(per_seed)
    if not all(math.isfinite(v) for v in per_seed):
        std = math.nan
    else:
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return {"mean": mean, "std": std, "per_seed": per_seed}
