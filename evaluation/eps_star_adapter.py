"""eps* for ``antray eval``: from an :class:`EvalRequest` to the report's ``eps_star`` entries.

Gaussian and uniform directions run ``evaluation.eps_star.eps_star``; adversarial directions
train ``adv_seeds`` fresh generators with ``adversarial_eps_star``. Those generators train on
the *train* split of the training images (``trainers.data.load_split(..., "train")``, which
excludes the validation split), never on the images eps* is then measured on (the test
images, or the validation split). All of them, for every model compared on a benchmark,
have the one l2 size ``request.eps_star_epsilon`` (default: the paper's value carried to
the image size). An epsilon the noise cannot reach is refused up front (see
:func:`check_epsilon_reachable`): the rescaling then returns the saturated image, which
does not depend on the generator's output, so the generator would get no gradient.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from evaluation.corruption_loop import EvalSettings, load_eval_set
from evaluation.directions import draw_directions
from evaluation.eps_star import (
    EpsStarResult,
    adversarial_eps_star,
    eps_star,
    max_reachable_size,
)
from evaluation.request import EvalInputError, EvalRequest

GENERATOR_BATCH_SIZE = 128  # batches the adversarial eps* generators train on
# Refuse an epsilon out of reach on this share of the checked training images or more.
UNREACHABLE_SHARE = 0.5


def generator_batches(settings: EvalSettings, *, seed: int) -> DataLoader:
    """Shuffled batches of the train split (raises ``DataMissingError`` if it is absent)."""
    data: Dataset = load_eval_set(settings, "train")
    return DataLoader(
        data,
        batch_size=GENERATOR_BATCH_SIZE,
        shuffle=True,
        num_workers=settings.loader_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def check_epsilon_reachable(
    images: torch.Tensor, epsilon: float, *, seed: int
) -> dict[str, float | int]:
    """How often ``epsilon`` is out of reach on ``images``; ``EvalInputError`` if too often.

    A fresh generator starts out as (almost) its Gaussian input z (docs/METHOD.md), so the check
    draws Gaussian directions: on an image where ``epsilon`` is at least the largest
    reachable size ``||saturated(x, d) - x||``, the rescaled noise is the saturated image
    and carries no gradient. At ``UNREACHABLE_SHARE`` of the images or more the generator
    could not train: the error says which sizes are reachable.
    """
    x = images.float()
    e_max = max_reachable_size(x, draw_directions(x, "gaussian", seed=seed))
    out_of_reach = e_max <= epsilon
    share = float(out_of_reach.double().mean())
    summary = {
        "unreachable_share": share,
        "checked_images": int(x.shape[0]),
        "median_max_size": float(e_max.median()),
    }
    if share >= UNREACHABLE_SHARE:
        raise EvalInputError(
            f"--eps-star-epsilon {epsilon:g} cannot be reached: Gaussian noise saturates below "
            f"it on {100 * share:.0f}% of {x.shape[0]} training images (median largest l2 "
            f"size {summary['median_max_size']:.3g}), so the generator would get no gradient; "
            f"pick a value well below {float(e_max.min()):.3g}"
        )
    return summary


def prepare_adversarial(
    request: EvalRequest, settings: EvalSettings
) -> tuple[DataLoader, dict[str, Any]]:
    """The generators' training batches and the reachability summary, before any work."""
    batches = generator_batches(settings, seed=request.seed)
    first, _ = next(iter(batches))
    assert request.eps_star_epsilon is not None  # filled in by EvalRequest
    reach = check_epsilon_reachable(first, request.eps_star_epsilon, seed=request.seed)
    return batches, reach


def _summary(result: EpsStarResult) -> dict[str, Any]:
    return {
        "median": result.median,
        "never_flipped": result.never_flipped,
        "misclassified_clean": result.misclassified_clean,
        "rel_precision": result.rel_precision,
        "mean_forwards_per_image": result.forwards_per_image,
        "max_forwards_per_image": result.max_forwards_per_image,
    }


def run_eps_star(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    request: EvalRequest,
    settings: EvalSettings,
    *,
    adversarial: tuple[DataLoader, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """eps* per requested direction on (x, y) (the evaluation images).

    Gaussian / uniform: median, never-flipped count, precision, forwards and per-image
    ``values``. Adversarial: mean +- std over ``adv_seeds`` fresh generators trained on
    ``adversarial`` (from :func:`prepare_adversarial`).
    """
    device = torch.device(settings.device)
    model.to(device).eval()
    n = int(x.shape[0])
    out: dict[str, dict[str, Any]] = {}
    for direction in request.eps_star:
        if request.progress:
            print(f"eps* {direction} on {n} images", file=sys.stderr, flush=True)
        if direction != "adversarial":
            result = eps_star(
                model, x, y, direction=direction, seed=request.seed, batch_size=request.batch_size
            )
            out[direction] = {**_summary(result), "n": n, "values": result.per_image.tolist()}
            continue
        if adversarial is None:
            adversarial = prepare_adversarial(request, settings)
        batches, reach = adversarial
        seeds = [request.seed + k for k in range(request.adv_seeds)]
        assert request.eps_star_epsilon is not None
        summary = adversarial_eps_star(
            model,
            batches,
            x,
            y,
            kind=request.generator,
            epsilon=request.eps_star_epsilon,
            seeds=seeds,
            iterations=request.adv_iterations,
            device=device,
            batch_size=request.batch_size,
        )
        out[direction] = {
            **summary,
            "epsilon": request.eps_star_epsilon,
            "generator": request.generator,
            "iterations": request.adv_iterations,
            "seeds": seeds,
            "generator_data": f"train split ({len(batches.dataset)} images)",  # type: ignore[arg-type]
            **reach,
            "n": n,
        }
    return out


__all__ = ["check_epsilon_reachable", "generator_batches", "prepare_adversarial", "run_eps_star"]
