"""Median perturbation size eps* along noise directions, with exact clipped l2 sizes.

For an image ``x`` (pixel space [0, 1]) with label ``y`` and a direction ``d``, the perturbed
image at l2 size ``e`` is ``clip(x + eta(e) * d, 0, 1)`` with ``eta(e)`` from the
clipping-aware rescaling, so every size is measured after clipping, exactly (docs/METHOD.md,
"The exact clipping-aware l2 rescaling"). The largest reachable size is
``E_max = ||saturated(x, d) - x||_2``.
Per image, eps is the size at which the prediction first differs from ``y`` on the way out
along the ray: 0 for an image misclassified clean, ``+inf`` for one that never flips.

The search follows the authors' procedure (bethgelab/game-of-noise, ``evaluation_utils.py``,
``zero_accuracy_perturbation``): a coarse scan ``eta = 1.8**b`` *upward* while the
prediction stays correct, then 40 bisection steps around the first size that flips; an
image that never flips keeps the number of input coordinates as its size, which lies above
every reachable l2 size. Here, batched over the images (only those still searching are
forwarded):

1. one forward on the clean image (misclassified -> eps 0);
2. an upward coarse scan over ``E_max * factor**(k - levels)``, ``k = 0 .. levels``, whose
   last probe is the fully saturated image. The first probe that flips brackets the
   boundary between the previous probe (0 for ``k = 0``) and itself; an image that flips at
   no probe, saturated image included, never flips: ``+inf``. Scanning upward (rather than
   asking the saturated image first) is what counts an image whose prediction flips in
   the middle of the ray and comes back at saturation as flipped;
3. bisection in log space (probe ``sqrt(lo * hi)``; while ``lo = 0``, probe ``hi / factor``
   downward) until ``hi <= lo * (1 + rel_tol)`` or the image has used ``max_forwards``.

The reported eps is the upper bracket end ``hi``: a size that provably flips the prediction;
``rel_precision`` says how far above the last size known not to flip it may be. Differences
from the reference, and why: sizes are exact clipped sizes and the grid is relative to each
image's ``E_max`` (so the scan covers every image's whole ray; the reference's eta grid stops
at ``1.8**10`` unclipped); a relative tolerance and a forward budget replace the 40 fixed
steps (defaults: factor 2 from ``E_max / 64``, ``rel_tol`` 5e-3, at most 20 forwards per
image, about 12-16 on average); a never-flipped image is ``+inf`` (the paper's definition)
rather than the coordinate count. Both lie above every flipped image, and the median is the
lower median (``torch.median``, as the reference takes it), so eps* is the same as the reference's
whenever it is finite, and ``+inf`` exactly when more than half of the images never flip.
``EpsStarResult.never_flipped`` counts them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from evaluation.directions import Direction, draw_directions, eval_mode, model_device
from generators.rescale import clipping_aware_rescale, saturated
from generators.training import FROM_SCRATCH_ITERATIONS, train_generator_from_scratch


@dataclass(frozen=True)
class SearchPlan:
    """How the line search probes: the coarse grid, then bisection.

    ``bisection_steps`` switches to the reference's fixed-step form: that many linear
    bisection steps after the scan, no tolerance, no budget (for validation).
    """

    factor: float = 2.0  # ratio of neighbouring coarse probes
    levels: int = 6  # the scan starts at E_max / factor**levels
    max_forwards: int = 20
    rel_tol: float = 5e-3
    bisection_steps: int | None = None

    def __post_init__(self) -> None:
        if self.factor <= 1:
            raise ValueError(f"factor must be > 1, got {self.factor}")
        if self.levels < 0:
            raise ValueError(f"levels must be >= 0, got {self.levels}")
        if self.bisection_steps is None:
            if self.rel_tol <= 0:
                raise ValueError("rel_tol must be positive")
            if self.max_forwards < self.levels + 2:  # clean + the whole scan
                raise ValueError(
                    f"max_forwards must be >= levels + 2 = {self.levels + 2} "
                    "(the clean image and every coarse probe)"
                )
        elif self.bisection_steps < 0:
            raise ValueError("bisection_steps must be >= 0")


# The authors' procedure in size space: coarse factor 1.8 from far below, 40 linear steps.
REFERENCE_PLAN = SearchPlan(factor=1.8, levels=16, bisection_steps=40)


@dataclass
class EpsStarResult:
    """Per-image sizes (``[B]``, float64 on CPU, 0 / finite / +inf) and their summary."""

    per_image: torch.Tensor
    median: float
    forwards_per_image: float  # mean number of classifier forwards per image
    max_forwards_per_image: int
    never_flipped: int  # images correct along the whole ray (eps +inf)
    misclassified_clean: int  # images wrong before any noise (eps 0)
    rel_precision: float  # max (hi - lo) / hi over the images with 0 < eps < inf
    forwards: torch.Tensor = field(repr=False)  # ``[B]`` int64, forwards of each image
    lower: torch.Tensor = field(repr=False)  # ``[B]`` largest size known not to flip


def median_with_inf(values: torch.Tensor) -> float:
    """The lower median (``torch.median``'s convention, the reference's); ``+inf`` allowed.

    ``+inf`` exactly when more than half of the values are ``+inf``; ``nan`` when empty.
    """
    flat = values.detach().reshape(-1).to(torch.float64).cpu()
    if flat.numel() == 0:
        return math.nan
    return float(torch.sort(flat).values[(flat.numel() - 1) // 2])


def _flipped(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(dim=1) != labels


def max_reachable_size(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``||saturated(x, d) - x||_2`` per image, float64."""
    diff = saturated(x, d).to(torch.float64) - x.to(torch.float64)
    return diff.reshape(x.shape[0], -1).norm(dim=1)


_SCAN, _BISECT, _DONE = 0, 1, 2


def _search_chunk(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor, plan: SearchPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(eps, forwards, lower)`` per image of one chunk (CPU); see the module docstring."""
    batch, device = x.shape[0], x.device
    forwards = torch.ones(batch, dtype=torch.int64, device=device)
    eps = torch.full((batch,), math.nan, dtype=torch.float64, device=device)
    lo = torch.zeros(batch, dtype=torch.float64, device=device)
    hi = torch.full_like(lo, math.inf)
    level = torch.zeros(batch, dtype=torch.int64, device=device)
    steps = torch.zeros(batch, dtype=torch.int64, device=device)
    e_max = max_reachable_size(x, d)

    wrong = _flipped(model, x, y)
    eps[wrong] = 0.0
    stuck = ~wrong & (e_max == 0)  # the direction cannot move the image at all
    eps[stuck] = math.inf
    phase = torch.full((batch,), _SCAN, dtype=torch.int64, device=device)
    phase[wrong | stuck] = _DONE

    while True:
        bisecting = phase == _BISECT
        if plan.bisection_steps is None:
            converged = bisecting & (lo > 0) & (hi <= lo * (1.0 + plan.rel_tol))
            phase[converged | (bisecting & (forwards >= plan.max_forwards))] = _DONE
        else:
            phase[bisecting & (steps >= plan.bisection_steps)] = _DONE
        idx = (phase != _DONE).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        scan = phase[idx] == _SCAN
        lo_i, hi_i = lo[idx], hi[idx]
        # The last scan level is exactly E_max: the rescaling returns the saturated image.
        scan_size = e_max[idx] * plan.factor ** (level[idx] - plan.levels).to(torch.float64)
        if plan.bisection_steps is None:
            bisect_size = torch.where(lo_i > 0, torch.sqrt(lo_i * hi_i), hi_i / plan.factor)
        else:
            bisect_size = (lo_i + hi_i) / 2
        probe = torch.where(scan, scan_size, bisect_size)
        flips = _flipped(model, clipping_aware_rescale(x[idx], d[idx], epsilon=probe), y[idx])
        forwards[idx] += 1
        hi[idx] = torch.where(flips, probe, hi_i)
        lo[idx] = torch.where(flips, lo_i, probe)
        steps[idx] += (~scan).long()
        level[idx] += scan.long()
        phase[idx[scan & flips]] = _BISECT
        never = idx[scan & ~flips & (level[idx] > plan.levels)]
        phase[never] = _DONE
        eps[never] = math.inf

    searched = torch.isnan(eps)
    eps[searched] = hi[searched]
    lower = torch.where(wrong, torch.zeros_like(lo), lo)
    return eps.cpu(), forwards.cpu(), lower.cpu()


def _run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: Callable[[torch.Tensor, int], torch.Tensor],
    plan: SearchPlan,
    batch_size: int,
) -> EpsStarResult:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    device = model_device(model)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device=device, dtype=torch.float32)
            yb = y[start : start + batch_size].to(device=device, dtype=torch.int64)
            db = directions(xb, start).to(device=device, dtype=torch.float32)
            parts.append(_search_chunk(model, xb, yb, db, plan))
    if parts:
        per_image, forwards, lower = (torch.cat(p) for p in zip(*parts, strict=True))
    else:
        per_image = lower = torch.zeros(0, dtype=torch.float64)
        forwards = torch.zeros(0, dtype=torch.int64)
    searched = torch.isfinite(per_image) & (per_image > 0)
    widths = (per_image[searched] - lower[searched]) / per_image[searched]
    return EpsStarResult(
        per_image=per_image,
        median=median_with_inf(per_image),
        forwards_per_image=float(forwards.double().mean()) if forwards.numel() else 0.0,
        max_forwards_per_image=int(forwards.max()) if forwards.numel() else 0,
        never_flipped=int(torch.isinf(per_image).sum()),
        misclassified_clean=int((per_image == 0).sum()),
        rel_precision=float(widths.max()) if widths.numel() else 0.0,
        forwards=forwards,
        lower=lower,
    )


def eps_star(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    direction: Direction = "gaussian",
    seed: int,
    plan: SearchPlan | None = None,
    batch_size: int = 256,
) -> EpsStarResult:
    """Per-image clipped l2 size along a noise direction at which the prediction first flips.

    ``x``: images in [0, 1] pixel space (``[B, C, H, W]``), ``y``: labels. ``direction``:
    ``"gaussian"``, ``"uniform"``, a ``NoiseGenerator`` or a callable (see
    ``evaluation.directions.draw_directions``), reproducible from ``seed``. ``plan`` (default
    ``SearchPlan()``) sets the scan, the tolerance and the per-image forward budget. The
    model runs in eval mode under ``torch.no_grad()`` on its own device, in chunks of
    ``batch_size`` images.
    """

    def directions(xb: torch.Tensor, start: int) -> torch.Tensor:
        return draw_directions(xb, direction, seed=seed, start_index=start)

    return _run(model, x, y, directions, plan or SearchPlan(), batch_size)


def reference_search(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: torch.Tensor,
    *,
    plan: SearchPlan = REFERENCE_PLAN,
    batch_size: int = 256,
) -> EpsStarResult:
    """The reference's fixed-step form along given ``directions`` (validation): an upward
    coarse scan with factor 1.8, then 40 linear bisection steps, no budget."""
    if directions.shape != x.shape:
        raise ValueError(f"directions {tuple(directions.shape)} != images {tuple(x.shape)}")
    if plan.bisection_steps is None:
        raise ValueError("reference_search needs a plan with bisection_steps")

    def given(xb: torch.Tensor, start: int) -> torch.Tensor:
        return directions[start : start + xb.shape[0]]

    return _run(model, x, y, given, plan, batch_size)


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
    plan: SearchPlan | None = None,
    batch_size: int = 256,
) -> dict[str, float | list[float] | list[int]]:
    """eps* along adversarially trained noise: one fresh generator per seed (paper: 4 seeds).

    For each seed a generator of ``kind`` (``"1x1"`` / ``"3x3"``) is trained from scratch
    against the frozen ``model`` on ``loader_or_batches`` (pixel-space [0, 1] batches; they
    must not be the images ``x`` it is then measured on) at l2 size ``epsilon`` for
    ``iterations`` Adam steps, then eps* of ``(x, y)`` is measured along its samples
    (directions seeded with the same seed). Returns ``mean`` and ``std`` of the per-seed
    medians (sample std, 0 for one seed, ``nan`` if any is infinite), ``per_seed``,
    ``never_flipped`` per seed, and the forward and precision figures over all seeds.
    The model is moved to ``device``.
    """
    if not seeds:
        raise ValueError("need at least one seed")
    model.to(device)
    results: list[EpsStarResult] = []
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
            results.append(
                eps_star(
                    model, x, y, direction=generator, seed=seed, plan=plan, batch_size=batch_size
                )
            )
    per_seed = [r.median for r in results]
    mean = statistics.fmean(per_seed)
    if not all(math.isfinite(v) for v in per_seed):
        std = math.nan
    else:
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return {
        "mean": mean,
        "std": std,
        "per_seed": per_seed,
        "never_flipped": [r.never_flipped for r in results],
        "mean_forwards_per_image": statistics.fmean(r.forwards_per_image for r in results),
        "max_forwards_per_image": max(r.max_forwards_per_image for r in results),
        "rel_precision": max(r.rel_precision for r in results),
    }


__all__ = [
    "REFERENCE_PLAN",
    "EpsStarResult",
    "SearchPlan",
    "adversarial_eps_star",
    "draw_directions",
    "eps_star",
    "max_reachable_size",
    "median_with_inf",
    "reference_search",
]
