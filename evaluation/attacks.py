"""Adversarial robustness with foolbox 3.3.4: PGD accuracy and DDN median l2 (Table 4).

All sizes are in [0, 1] pixel space (``PyTorchModel(bounds=(0, 1))``); classifiers take
[0, 1] inputs and normalise inside. Inputs are processed in chunks of ``batch_size``
with the model in eval mode.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from types import ModuleType

import torch
from torch import nn

from evaluation.directions import eval_mode, model_device
from evaluation.eps_star import median_with_inf

NORMS = ("l2", "linf")


def _foolbox() -> ModuleType:
    # foolbox imports GitPython, which complains loudly without a git executable.
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import foolbox

    return foolbox


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Fork the global torch RNG (foolbox's random starts use it) and seed it."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _chunks(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    for start in range(0, x.shape[0], batch_size):
        yield (
            x[start : start + batch_size].to(device=device, dtype=torch.float32),
            y[start : start + batch_size].to(device=device, dtype=torch.int64),
        )


def _prepare(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is None:
        return model_device(model)
    device = torch.device(device)
    model.to(device)
    return device


def pgd_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    epsilons: Sequence[float],
    steps: int = 50,
    rel_stepsize: float | None = None,
    random_start: bool = True,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int | None = 0,
) -> dict[float, float]:
    """Robust accuracy under PGD (foolbox ``L2PGD`` / ``LinfPGD``) for each epsilon.

    ``x`` in [0, 1] pixel space, ``epsilons`` in the same units (``norm`` ``"l2"`` or
    ``"linf"``; epsilon 0 gives the clean accuracy). An image counts as robust at epsilon
    only if no adversarial was found at any epsilon <= it (an adversarial inside a smaller
    ball lies inside the larger one too), so accuracy never increases with epsilon.
    ``rel_stepsize`` defaults to foolbox's (0.025 for l2, 0.01 / 0.3 for linf). ``device``
    (default: the model's) receives the model and the inputs. ``seed`` seeds the random
    starts (``None``: use the global RNG as is).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    eps_list = [float(e) for e in epsilons]
    if not eps_list:
        return {}
    if any(e < 0 for e in eps_list):
        raise ValueError("epsilons must be >= 0")
    fb = _foolbox()
    device = _prepare(model, device)
    kwargs: dict[str, object] = {"steps": steps, "random_start": random_start}
    if rel_stepsize is not None:
        kwargs["rel_stepsize"] = rel_stepsize
    attack = fb.attacks.L2PGD(**kwargs) if norm == "l2" else fb.attacks.LinfPGD(**kwargs)
    order = sorted(range(len(eps_list)), key=lambda k: eps_list[k])
    sorted_eps = [eps_list[k] for k in order]
    robust = torch.zeros(len(eps_list), dtype=torch.int64)
    total = 0
    with eval_mode(model), _seeded(seed):
        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
        for xb, yb in _chunks(x, y, batch_size, device):
            _, _, success = attack(fmodel, xb, yb, epsilons=sorted_eps)
            broken = torch.cummax(success.to(torch.int64), dim=0).values.bool()
            robust += (~broken).sum(dim=1).cpu()
            total += xb.shape[0]
    if total == 0:
        return {e: math.nan for e in eps_list}
    return {sorted_eps[j]: float(robust[j]) / total for j in range(len(sorted_eps))}


def ddn_median_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    init_epsilon: float = 1.0,
    gamma: float = 0.05,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int | None = 0,
) -> dict[str, float | torch.Tensor]:
    """Minimal l2 adversarial size per image with foolbox's DDN attack, and its median.

    ``x`` in [0, 1] pixel space. Per image: 0 if misclassified clean, ``+inf`` if DDN found
    no adversarial, else ``||x_adv - x||_2``. Returns ``{"median": float, "per_image":
    Tensor[B] (float64, CPU)}``; the median counts ``+inf`` like ``median_with_inf``.
    """
    fb = _foolbox()
    device = _prepare(model, device)
    attack = fb.attacks.DDNAttack(steps=steps, init_epsilon=init_epsilon, gamma=gamma)
    parts = []
    with eval_mode(model), _seeded(seed):
        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
        for xb, yb in _chunks(x, y, batch_size, device):
            with torch.no_grad():
                wrong = model(xb).argmax(dim=1) != yb
            _, clipped, success = attack(fmodel, xb, yb, epsilons=None)
            sizes = (clipped - xb).reshape(xb.shape[0], -1).to(torch.float64).norm(dim=1)
            sizes = torch.where(success, sizes, torch.full_like(sizes, math.inf))
            sizes = torch.where(wrong, torch.zeros_like(sizes), sizes)
            parts.append(sizes.detach().cpu())
    per_image = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    return {"median": median_with_inf(per_image), "per_image": per_image}
