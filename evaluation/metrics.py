"""Accuracy, corruption error (CE) and mCE (Hendrycks & Dietterich 2019; docs/METHOD.md,
"Evaluation").

Units: accuracies and errors are fractions in [0, 1]; CE is a ratio (1.0 = as bad as AlexNet);
mCE is in percent, as the paper reports it (e.g. 76.7 for a vanilla ResNet50).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from statistics import fmean
from typing import Any

import torch

from evaluation.benchmarks import CATEGORY_OF, IMAGENET_C_CORRUPTIONS

# AlexNet top-1 error on ImageNet-C per corruption, averaged over the 5 severities (the
# paper's mCE baseline).
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}


FULL_SEVERITIES = {1, 2, 3, 4, 5}


@torch.no_grad()
def topk_correct(
    logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[int, int]:
    """Number of samples whose label is among the top-k logits, for each k in ``ks``.

    k is clamped to the number of classes, so top-5 on a 3-class problem counts every sample.
    Keys are the requested ks.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (N, C) and labels (N,), got {logits.shape}, {labels.shape}"
        )
    num_classes = logits.shape[1]
    maxk = min(max(ks), num_classes)
    hits = logits.topk(maxk, dim=1).indices == labels.view(-1, 1).to(logits.device)
    return {k: int(hits[:, : min(k, num_classes)].any(dim=1).sum()) for k in ks}


def _alexnet_error(corruption: str) -> float:
    if corruption not in ALEXNET_ERRORS:
        raise KeyError(
            f"no AlexNet baseline for corruption {corruption!r}: CE/mCE are only defined for the "
            f"15 ImageNet-C corruptions {list(ALEXNET_ERRORS)}"
        )
    return ALEXNET_ERRORS[corruption]


def corruption_error(errors_by_severity: Mapping[int, float], corruption: str) -> float:
    """CE_c = sum_s err_s / sum_s AlexNet_err_s, as a ratio.

    AlexNet's error is known here only averaged over the 5 severities, so the AlexNet sum over
    all 5 severities is exactly 5 * that average. Over a subset of severities we use
    ``len(subset) * average``, an approximation (AlexNet's error grows with severity).
    """
    baseline = _alexnet_error(corruption)
    if not errors_by_severity:
        raise ValueError(f"no severities given for {corruption!r}")
    return sum(errors_by_severity.values()) / (len(errors_by_severity) * baseline)


def mean_corruption_error(ce_by_corruption: Mapping[str, float]) -> float:
    """mCE in percent: 100 * the mean CE over the given ImageNet-C corruptions."""
    if not ce_by_corruption:
        raise ValueError("mCE of no corruptions")
    for corruption in ce_by_corruption:
        _alexnet_error(corruption)
    return 100.0 * fmean(ce_by_corruption.values())


def aggregate_corruption_results(
    rows: Iterable[Mapping[str, Any]], *, benchmark: str | None = None
) -> dict[str, Any]:
    """Aggregates over rows ``{corruption, severity, top1, top5, n[, category]}`` of one model.

    - per-corruption top-1/top-5: unweighted mean over its severities (equal-sized splits);
    - ``mean_accuracy``: mean over the corruptions present (generated suites may cover only some);
    - ``mean_accuracy_without_noise``: the same without the noise category; None when no row
      has a category (MNIST-C);
    - ``mce``: only for ImageNet-C (``benchmark`` "imagenet-c" or None) and only when every
      corruption present has an AlexNet baseline; ``mce_corruptions`` lists what it covers and
      ``mce_complete`` says whether that is all 15 at all 5 severities.
    """
    by_corruption: dict[str, dict[str, Any]] = {}
    for row in rows:
        corruption = str(row["corruption"])
        category = row["category"] if "category" in row else CATEGORY_OF.get(corruption)
        entry = by_corruption.setdefault(corruption, {"category": category, "severities": {}})
        entry["severities"][int(row["severity"])] = (
            float(row["top1"]),
            float(row["top5"]),
            int(row.get("n", 0)),
        )

    per_corruption: dict[str, dict[str, Any]] = {}
    for corruption, entry in by_corruption.items():
        sev = dict(sorted(entry["severities"].items()))
        per_corruption[corruption] = {
            "category": entry["category"],
            "top1": fmean(v[0] for v in sev.values()),
            "top5": fmean(v[1] for v in sev.values()),
            "n": sum(v[2] for v in sev.values()),
            "top1_by_severity": {s: v[0] for s, v in sev.items()},
        }

    def mean_of(key: str, names: list[str]) -> float | None:
        return fmean(per_corruption[c][key] for c in names) if names else None

    names = list(per_corruption)
    has_categories = any(per_corruption[c]["category"] is not None for c in names)
    without_noise = [c for c in names if per_corruption[c]["category"] not in (None, "noise")]
    categories: dict[str, list[str]] = {}
    for c in names:
        if per_corruption[c]["category"] is not None:
            categories.setdefault(per_corruption[c]["category"], []).append(c)

    result: dict[str, Any] = {
        "per_corruption": per_corruption,
        "corruptions": names,
        "mean_accuracy": mean_of("top1", names),
        "mean_top5": mean_of("top5", names),
        "mean_accuracy_without_noise": mean_of("top1", without_noise) if has_categories else None,
        "mean_top5_without_noise": mean_of("top5", without_noise) if has_categories else None,
        "per_category": {cat: mean_of("top1", cs) for cat, cs in categories.items()},
        "ce": {},
        "mce": None,
        "mce_corruptions": [],
        "mce_complete": False,
    }
    if benchmark in (None, "imagenet-c") and names and all(c in ALEXNET_ERRORS for c in names):
        ce = {
            c: corruption_error({s: 1.0 - a for s, a in entry["top1_by_severity"].items()}, c)
            for c, entry in per_corruption.items()
        }
        result.update(
            ce=ce,
            mce=mean_corruption_error(ce),
            mce_corruptions=names,
            mce_complete=set(names) == set(IMAGENET_C_CORRUPTIONS)
            and all(set(e["top1_by_severity"]) == FULL_SEVERITIES for e in per_corruption.values()),
        )
    return result


__all__ = [
    "ALEXNET_ERRORS",
    "aggregate_corruption_results",
    "corruption_error",
    "mean_corruption_error",
    "topk_correct",
]
