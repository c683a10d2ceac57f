"""The corruption loop: clean accuracy and one row per (corruption, severity) split.

``evaluate_splits`` is the pure per-shard function (model, settings and splits in, rows out)
that runs in this process or, for ``num_workers > 1``, in Ray tasks
(``orchestrator.eval_runner``). Data sources:

- files: the official benchmark files under ``benchmark_root`` (``evaluation.benchmarks``),
  test images only;
- generated: the clean images of the chosen split (``test``, or ``val`` carved from the
  training images) corrupted on the fly by the benchmark's generated suite
  (``evaluation.corruptions.suites.generated_suite``). Rows say ``source="generated"``.

Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from evaluation.benchmarks import corruption_category, iter_benchmark
from evaluation.corruptions.suites import generated_suite
from evaluation.metrics import topk_correct
from evaluation.request import EvalInputError, Split
from trainers.data import load_split, resolve_data_root


@dataclass(frozen=True)
class EvalSettings:
    """Everything a shard needs besides the model; plain values, so it pickles to Ray tasks."""

    benchmark: str
    data_root: str  # resolved: --data-root, $ANTRAY_DATA_ROOT, else ./data (trainers.data)
    benchmark_root: str  # where the benchmark files live (files mode)
    generated: bool
    clean_dataset: str
    limit: int | None
    seed: int
    batch_size: int
    device: str
    loader_workers: int = 0
    split: str = "test"  # "test", or "val": carved from the training images
    val_size: int | None = None  # None: the dataset's default (trainers.data)
    split_seed: int = 0


class ShardMapper(Protocol):
    """Runs ``evaluate_splits`` for each shard (e.g. as Ray tasks); rows per shard, in order."""

    def __call__(
        self,
        model: nn.Module,
        settings: EvalSettings,
        shards: Sequence[Sequence[Split]],
        *,
        num_workers: int,
        progress: bool,
    ) -> list[list[dict[str, Any]]]: ...


# ------------------------------------------------------------------------------ data


def clean_subset(dataset: Dataset, limit: int | None, *, strided: bool) -> Dataset:
    """The first ``limit`` items, or an even stride over a class-sorted set (ImageNet)."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    indices = [i * n // limit for i in range(limit)] if strided else range(limit)
    return Subset(dataset, indices)  # type: ignore[arg-type]


def load_eval_set(settings: EvalSettings, split: str | None = None) -> Dataset:
    """The clean images of ``split`` (default: the settings'), uncut.

    ``val`` and ``train`` are the seeded partition of the training images
    (``trainers.data.load_split`` with the settings' ``val_size`` / ``split_seed``), so the
    validation images are never trained on and never the test set.
    """
    try:
        return load_split(
            settings.clean_dataset,  # type: ignore[arg-type]
            resolve_data_root(settings.data_root),
            split or settings.split,  # type: ignore[arg-type]
            val_size=settings.val_size,
            split_seed=settings.split_seed,
        )
    except ValueError as exc:  # a val_size the training set cannot hold
        raise EvalInputError(f"{settings.clean_dataset} {split or settings.split}: {exc}") from None


def eval_subset(settings: EvalSettings, dataset: Dataset, limit: int | None) -> Dataset:
    """``limit`` images of the evaluation set: ImageNet folders are class-sorted, so strided."""
    return clean_subset(dataset, limit, strided=settings.clean_dataset == "imagenet")


def stack_images(dataset: Dataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, label) pairs of a small dataset as two CPU tensors."""
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x.float())
        ys.append(torch.as_tensor(y, dtype=torch.int64))
    if not xs:
        raise EvalInputError("the evaluation set is empty")
    return torch.cat(xs), torch.cat(ys)


def _loader(dataset: Dataset, settings: EvalSettings) -> DataLoader:
    return DataLoader(
        dataset, batch_size=settings.batch_size, shuffle=False, num_workers=settings.loader_workers
    )


# ------------------------------------------------------------------------------ inference


def corruption_seed(seed: int, corruption: str, severity: int, start: int) -> int:
    """Seed of the corruption noise of one batch: stable across processes and shardings."""
    return zlib.crc32(f"{seed}/{corruption}/{severity}/{start}".encode())


class _Counts:
    def __init__(self) -> None:
        self.top1 = self.top5 = self.n = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        hits = topk_correct(logits, labels, ks=(1, 5))
        self.top1 += hits[1]
        self.top5 += hits[5]
        self.n += labels.shape[0]

    def row(
        self, corruption: str, severity: int, category: str | None, settings: EvalSettings
    ) -> dict[str, Any]:
        if self.n == 0:
            raise EvalInputError(f"no images in split {corruption} severity {severity}")
        return {
            "benchmark": settings.benchmark,
            "corruption": corruption,
            "category": category,
            "severity": severity,
            "top1": self.top1 / self.n,
            "top5": self.top5 / self.n,
            "n": self.n,
            "source": "generated" if settings.generated else "files",
        }


def _bar(enabled: bool, **kwargs: Any) -> tqdm:
    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


@torch.inference_mode()
def clean_accuracy(
    model: nn.Module, dataset: Dataset, settings: EvalSettings, *, progress: bool = False
) -> dict[str, float | int]:
    """Top-1 / top-5 (fractions) and the image count on a clean dataset."""
    device = torch.device(settings.device)
    model.to(device).eval()
    counts = _Counts()
    with _bar(progress, total=len(dataset), unit="img", desc="clean") as bar:  # type: ignore[arg-type]
        for x, y in _loader(dataset, settings):
            counts.add(model(x.to(device)), y.to(device))
            bar.update(y.shape[0])
    if counts.n == 0:
        raise EvalInputError("the evaluation set is empty")
    return {"top1": counts.top1 / counts.n, "top5": counts.top5 / counts.n, "n": counts.n}


def _generated_rows(
    model: nn.Module,
    settings: EvalSettings,
    splits: Sequence[Split],
    dataset: Dataset,
    device: torch.device,
    progress: bool,
) -> list[dict[str, Any]]:
    # Batch-outer: every clean batch is read (and decoded, for ImageNet) once for all splits.
    counts = {split: _Counts() for split in splits}
    total = len(dataset) * len(splits)  # type: ignore[arg-type]
    desc = f"{settings.benchmark} generated ({settings.split}), {len(splits)} splits"
    suite = generated_suite(settings.benchmark)
    with _bar(progress, total=total, unit="img", desc=desc) as bar:
        start = 0
        for x, y in _loader(dataset, settings):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for corruption, severity in splits:
                seed = corruption_seed(settings.seed, corruption, severity, start)
                xc = suite.apply(x, corruption, severity, seed=seed)
                counts[(corruption, severity)].add(model(xc), y)
                bar.set_postfix_str(f"{corruption} s{severity}", refresh=False)
                bar.update(y.shape[0])
            start += y.shape[0]
    return [counts[s].row(s[0], s[1], suite.category(s[0]), settings) for s in splits]


def _file_rows(
    model: nn.Module,
    settings: EvalSettings,
    splits: Sequence[Split],
    device: torch.device,
    progress: bool,
) -> list[dict[str, Any]]:
    by_corruption: dict[str, list[int]] = {}
    for corruption, severity in splits:
        by_corruption.setdefault(corruption, []).append(severity)
    rows: dict[Split, dict[str, Any]] = {}
    with _bar(progress, total=len(splits), unit="split", desc=f"{settings.benchmark} files") as bar:
        for corruption, severities in by_corruption.items():
            for name, severity, batches in iter_benchmark(
                settings.benchmark,
                settings.benchmark_root,
                batch_size=settings.batch_size,
                corruptions=[corruption],
                severities=severities,
                limit=settings.limit,
                num_workers=settings.loader_workers,
                check=False,
            ):
                bar.set_postfix_str(f"{name} s{severity}")
                counts = _Counts()
                for x, y in batches:
                    counts.add(model(x.to(device, non_blocking=True)), y.to(device))
                category = corruption_category(name, settings.benchmark)
                rows[(name, severity)] = counts.row(name, severity, category, settings)
                bar.update(1)
    return [rows[s] for s in splits]


@torch.inference_mode()
def evaluate_splits(
    model: nn.Module,
    settings: EvalSettings,
    splits: Sequence[Split],
    *,
    progress: bool = False,
    clean_set: Dataset | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{benchmark, corruption, category, severity, top1, top5, n, source}`` of splits.

    The pure per-shard function: runs in any process that sees the data (Ray tasks included).
    Generated mode corrupts the clean images (``clean_set``, else the settings' split cut to
    ``settings.limit``) batch by batch, seeded per (seed, corruption, severity, batch start),
    so the rows do not depend on how the splits are sharded (they do on ``batch_size``).
    """
    device = torch.device(settings.device)
    model.to(device).eval()
    if settings.generated:
        if clean_set is None:
            clean_set = eval_subset(settings, load_eval_set(settings), settings.limit)
        return _generated_rows(model, settings, splits, clean_set, device, progress)
    if settings.split != "test":
        raise EvalInputError("benchmark files hold test images only: use --generated for val")
    return _file_rows(model, settings, splits, device, progress)


__all__ = [
    "EvalSettings",
    "ShardMapper",
    "clean_accuracy",
    "clean_subset",
    "corruption_seed",
    "eval_subset",
    "evaluate_splits",
    "load_eval_set",
    "stack_images",
]
