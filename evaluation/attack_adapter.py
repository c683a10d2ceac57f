"""Attacks for ``antray eval``: from an :class:`EvalRequest` to the report's ``attacks``.

PGD accuracy per (norm, epsilon) under ``pgd_<norm>_<eps>`` and DDN's median l2 under
``ddn`` (``evaluation.attacks``, foolbox).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from evaluation.attacks import ddn_median_l2, pgd_accuracy
from evaluation.request import EvalRequest


def run_attacks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, request: EvalRequest
) -> dict[str, dict[str, Any]]:
    """The requested attacks on (x, y), the evaluation images."""
    device = torch.device(request.device)
    out: dict[str, dict[str, Any]] = {}
    n = int(x.shape[0])
    for attack in request.attacks:
        if request.progress:
            print(f"attack {attack} on {n} images", file=sys.stderr, flush=True)
        if attack == "pgd":
            for norm, epsilons in request.pgd_epsilons.items():
                if not epsilons:
                    continue
                accuracy = pgd_accuracy(
                    model,
                    x,
                    y,
                    norm=norm,
                    epsilons=epsilons,
                    steps=request.pgd_steps,
                    batch_size=request.batch_size,
                    device=device,
                    seed=request.seed,
                )
                for eps, acc in sorted(accuracy.items()):
                    out[f"pgd_{norm}_{eps:g}"] = {
                        "accuracy": acc,
                        "norm": norm,
                        "epsilon": eps,
                        "steps": request.pgd_steps,
                        "n": n,
                    }
        else:
            ddn = ddn_median_l2(
                model,
                x,
                y,
                steps=request.ddn_steps,
                batch_size=request.batch_size,
                device=device,
                seed=request.seed,
            )
            out["ddn"] = {
                "median_l2": ddn["median"],
                "steps": request.ddn_steps,
                "n": n,
                "values": ddn["per_image"].tolist(),  # type: ignore[union-attr]
            }
    return out


__all__ = ["run_attacks"]
