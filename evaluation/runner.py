"""One evaluation of one model: clean accuracy, a corruption benchmark, eps*, attacks.

``evaluate`` returns the results dict that ``evaluation.report.write_report`` writes. The
corruption part is cut into splits ``(corruption, severity)``; ``evaluate_splits`` is the pure
per-shard function (model, settings and splits in, rows out) that runs in this process or, for
``num_workers > 1``, in Ray tasks (``orchestrator.eval_runner``: only orchestrator/ calls
``ray.init``, so the fan-out is injected here as ``distribute``).

Data sources:

- files (default): the official benchmark files under ``benchmark_root`` (see
  ``evaluation.benchmarks`` for the layouts), read by ``iter_benchmark``;
- generated (``generated=True``): the clean test set corrupted on the fly with
  ``evaluation.corruptions`` at severities 1..5 (also on MNIST for ``mnist-c``: the generated
  suite, not Mu & Gilmer's). Rows are labelled ``source="generated"``.

Clean accuracy always comes from the clean test set (MNIST for mnist-c, CIFAR-10 for
cifar10-c, ImageNet val for imagenet-c). Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import sys
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from evaluation.benchmarks import (
    BENCHMARKS,
    BenchmarkDataError,
    check_benchmark_files,
    corruption_category,
    iter_benchmark,
)
from evaluation.corruptions.suites import generated_suite
from evaluation.metrics import aggregate_corruption_results, topk_correct
from trainers.data import DataMissingError, load_dataset, resolve_data_root


class EvalInputError(ValueError):
    """Bad evaluation input (option values, model/benchmark mismatch): one line, exit 2."""


Split = tuple[str, int]  # (corruption, severity)

CLEAN_DATASETS: dict[str, str] = {
    "mnist-c": "mnist",
    "cifar10-c": "cifar10",
    "imagenet-c": "imagenet",
}
# Datasets a model may have been trained on to be evaluated on a benchmark (same image shape).
COMPATIBLE_DATASETS: dict[str, tuple[str, ...]] = {
    "mnist-c": ("mnist", "synthetic"),
    "cifar10-c": ("cifar10",),
    "imagenet-c": ("imagenet",),
}
EPS_STAR_DIRECTIONS: tuple[str, ...] = ("gaussian", "uniform", "adversarial")
ATTACKS: tuple[str, ...] = ("pgd", "ddn")

# PGD epsilons in [0, 1] pixel units, per benchmark. MNIST: the usual l2 / linf radii of
# the MNIST robustness literature (Madry et al.: linf 0.3). CIFAR-10: the usual l2 0.25 / 0.5
# and linf 2/255, 8/255. ImageNet: the paper's Table 4 (l2 0.12, linf 0.001; SPEC.md).
DEFAULT_PGD_EPSILONS: dict[str, dict[str, tuple[float, ...]]] = {
    "mnist-c": {"l2": (0.5, 1.0, 2.0), "linf": (0.1, 0.2, 0.3)},
    "cifar10-c": {"l2": (0.25, 0.5), "linf": (2 / 255, 8 / 255)},
    "imagenet-c": {"l2": (0.12,), "linf": (0.001,)},
}
GENERATOR_BATCH_SIZE = 128  # batches the adversarial eps* generators train on


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


# ------------------------------------------------------------------------------ settings


def default_benchmark_root(benchmark: str, data_root: str | Path | None) -> Path:
    """``<data root>`` for mnist-c / cifar10-c (their layouts name a subfolder), else
    ``<data root>/imagenet-c`` (ImageNet-C's layout starts at the corruption folders)."""
    root = resolve_data_root(data_root).path
    return root / "imagenet-c" if benchmark == "imagenet-c" else root


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None: CUDA when visible, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise EvalInputError(f"bad device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EvalInputError(f"device {device} asked for but no CUDA device is visible")
    return dev


def resolve_splits(
    benchmark: str,
    *,
    generated: bool,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
) -> list[Split]:
    """The (corruption, severity) splits to evaluate, validated against the data source."""
    if benchmark not in BENCHMARKS:
        raise EvalInputError(f"unknown benchmark {benchmark!r}; choose from {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[benchmark]
    if generated:
        suite = generated_suite(benchmark)
        allowed, default_sev, what = list(suite.corruptions), suite.severities, "generated"
    else:
        allowed, default_sev, what = list(spec.corruptions), spec.severities, f"{benchmark} files"
    names = list(allowed if corruptions is None else corruptions)
    unknown = [c for c in names if c not in allowed]
    if unknown:
        hint = "" if generated else " (or pass --generated for the generated suite)"
        raise EvalInputError(
            f"unknown corruption(s) {','.join(unknown)} for the {what}; "
            f"choose from {','.join(allowed)}{hint}"
        )
    if not names:
        raise EvalInputError("no corruptions selected")
    sevs = list(default_sev if severities is None else severities)
    bad = [s for s in sevs if s not in default_sev]
    if bad or not sevs:
        raise EvalInputError(
            f"severities {bad or '[]'} not available for the {what}; "
            f"choose from {','.join(map(str, default_sev))}"
        )
    names, sevs = list(dict.fromkeys(names)), sorted(set(sevs))
    return [(c, s) for c in names for s in sevs]


def check_files_present(benchmark: str, root: Path, splits: Sequence[Split]) -> None:
    """Fail fast, naming the missing path, when the benchmark files are not there."""
    top = {"mnist-c": root / "mnist_c", "cifar10-c": root / "CIFAR-10-C"}.get(benchmark, root)
    if not top.is_dir():
        raise BenchmarkDataError(
            f"{benchmark} files not found: missing directory {top} "
            f"(expected layout {BENCHMARKS[benchmark].layout}); "
            "pass --generated to evaluate on corruptions generated on the fly instead"
        )
    check_benchmark_files(
        benchmark,
        root,
        corruptions=list(dict.fromkeys(c for c, _ in splits)),
        severities=sorted({s for _, s in splits}),
    )


# ------------------------------------------------------------------------------ data


def _evenly_spaced(n: int, limit: int | None) -> Sequence[int] | None:
    if limit is None or limit >= n:
        return None
    return [i * n // limit for i in range(limit)]


def clean_subset(dataset: Dataset, limit: int | None, *, strided: bool) -> Dataset:
    """The first ``limit`` items, or an even stride over a class-sorted set (ImageNet val)."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    indices = _evenly_spaced(n, limit) if strided else range(limit)
    return Subset(dataset, indices)  # type: ignore[arg-type]


def load_clean_test_set(settings: EvalSettings, limit: int | None = None) -> Dataset:
    """The clean test set of the benchmark's dataset, cut to ``limit`` items."""
    dataset = load_dataset(
        settings.clean_dataset, resolve_data_root(settings.data_root), train=False
    )
    return clean_subset(dataset, limit, strided=settings.clean_dataset == "imagenet")


def _loader(dataset: Dataset, settings: EvalSettings) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=settings.loader_workers,
    )


def stack_images(dataset: Dataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, label) pairs of a small dataset as two CPU tensors."""
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x.float())
        ys.append(torch.as_tensor(y, dtype=torch.int64))
    if not xs:
        raise EvalInputError("the clean test set is empty")
    return torch.cat(xs), torch.cat(ys)


# ------------------------------------------------------------------------------ inference


def split_seed(seed: int, corruption: str, severity: int, start: int) -> int:
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
        raise EvalInputError("the clean test set is empty")
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
    desc = f"{settings.benchmark} generated, {len(splits)} splits"
    suite = generated_suite(settings.benchmark)
    with _bar(progress, total=total, unit="img", desc=desc) as bar:
        start = 0
        for x, y in _loader(dataset, settings):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for corruption, severity in splits:
                seed = split_seed(settings.seed, corruption, severity, start)
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
    desc = f"{settings.benchmark} files"
    with _bar(progress, total=len(splits), unit="split", desc=desc) as bar:
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
    Generated mode corrupts the clean test set (``clean_set``, else loaded with
    ``settings.limit``) batch by batch, seeded per (seed, corruption, severity, batch start),
    so the rows do not depend on how the splits are sharded (they do on ``batch_size``).
    """
    device = torch.device(settings.device)
    model.to(device).eval()
    if settings.generated:
        dataset = (
            clean_set if clean_set is not None else load_clean_test_set(settings, settings.limit)
        )
        return _generated_rows(model, settings, splits, dataset, device, progress)
    return _file_rows(model, settings, splits, device, progress)


# ------------------------------------------------------------------------------ eps*, attacks


def _parse_choices(values: Iterable[str], allowed: Sequence[str], what: str) -> list[str]:
    chosen = [v.strip() for v in values if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad:
        raise EvalInputError(f"unknown {what} {','.join(bad)}; choose from {','.join(allowed)}")
    return list(dict.fromkeys(chosen))


def _generator_batches(settings: EvalSettings, fallback: Dataset) -> tuple[DataLoader, str]:
    """Shuffled training batches for the adversarial generators (the test set if absent)."""
    try:
        data: Dataset = load_dataset(
            settings.clean_dataset, resolve_data_root(settings.data_root), train=True
        )
        source = "train"
    except DataMissingError:
        data, source = fallback, "test"
    loader = DataLoader(
        data,
        batch_size=GENERATOR_BATCH_SIZE,
        shuffle=True,
        num_workers=settings.loader_workers,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    return loader, source


def run_eps_star(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: Sequence[str],
    settings: EvalSettings,
    *,
    epsilon: float | None,
    generator_kind: str | None,
    adv_seeds: int,
    adv_iterations: int,
    fallback: Dataset,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """eps* per direction on (x, y): median, forwards and per-image values (gaussian, uniform);
    mean +- std over ``adv_seeds`` fresh generators (adversarial)."""
    from evaluation.eps_star import adversarial_eps_star, eps_star

    device = torch.device(settings.device)
    model.to(device).eval()
    out: dict[str, dict[str, Any]] = {}
    for direction in directions:
        if progress:
            print(f"eps* {direction} on {x.shape[0]} images", file=sys.stderr, flush=True)
        if direction == "adversarial":
            if epsilon is None:
                raise EvalInputError("adversarial eps* needs --epsilon (the generator's l2 size)")
            kind = generator_kind or "1x1"
            batches, source = _generator_batches(settings, fallback)
            seeds = [settings.seed + k for k in range(adv_seeds)]
            summary = adversarial_eps_star(
                model,
                batches,
                x,
                y,
                kind=kind,
                epsilon=float(epsilon),
                seeds=seeds,
                iterations=adv_iterations,
                device=device,
                batch_size=settings.batch_size,
            )
            out[direction] = {
                **summary,
                "epsilon": float(epsilon),
                "generator": kind,
                "iterations": adv_iterations,
                "seeds": seeds,
                "generator_data": source,
                "n": int(x.shape[0]),
            }
        else:
            result = eps_star(
                model, x, y, direction=direction, seed=settings.seed, batch_size=settings.batch_size
            )
            out[direction] = {
                "median": result.median,
                "mean_forwards_per_image": result.forwards_per_image,
                "max_forwards_per_image": result.max_forwards_per_image,
                "n": int(x.shape[0]),
                "values": result.per_image.tolist(),
            }
    return out


def run_attacks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[str],
    settings: EvalSettings,
    *,
    pgd_epsilons: Mapping[str, Sequence[float]],
    pgd_steps: int,
    ddn_steps: int,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """PGD accuracy per (norm, epsilon) as ``pgd_<norm>_<eps>`` and DDN's median l2 as ``ddn``."""
    from evaluation.attacks import ddn_median_l2, pgd_accuracy

    device = torch.device(settings.device)
    out: dict[str, dict[str, Any]] = {}
    n = int(x.shape[0])
    for attack in attacks:
        if progress:
            print(f"attack {attack} on {n} images", file=sys.stderr, flush=True)
        if attack == "pgd":
            for norm, epsilons in pgd_epsilons.items():
                if not epsilons:
                    continue
                accuracy = pgd_accuracy(
                    model,
                    x,
                    y,
                    norm=norm,
                    epsilons=epsilons,
                    steps=pgd_steps,
                    batch_size=settings.batch_size,
                    device=device,
                    seed=settings.seed,
                )
                for eps, acc in sorted(accuracy.items()):
                    out[f"pgd_{norm}_{eps:g}"] = {
                        "accuracy": acc,
                        "norm": norm,
                        "epsilon": eps,
                        "steps": pgd_steps,
                        "n": n,
                    }
        else:
            ddn = ddn_median_l2(
                model,
                x,
                y,
                steps=ddn_steps,
                batch_size=settings.batch_size,
                device=device,
                seed=settings.seed,
            )
            out["ddn"] = {
                "median_l2": ddn["median"],
                "steps": ddn_steps,
                "n": n,
                "values": ddn["per_image"].tolist(),  # type: ignore[union-attr]
            }
    return out


# ------------------------------------------------------------------------------ evaluate


def check_model_dataset(benchmark: str, dataset: str | None) -> None:
    """Refuse a model trained on other images than the benchmark's (None: unknown, allowed)."""
    if dataset is not None and dataset not in COMPATIBLE_DATASETS.get(benchmark, (dataset,)):
        need = " or ".join(COMPATIBLE_DATASETS[benchmark])
        raise EvalInputError(
            f"the model was trained on {dataset}; --benchmark {benchmark} needs a {need} model"
        )


def evaluate(
    model: nn.Module,
    *,
    benchmark: str,
    data_root: str | Path | None = None,
    benchmark_root: str | Path | None = None,
    generated: bool = False,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    limit: int | None = None,
    eps_star_directions: Sequence[str] = (),
    eps_star_limit: int = 500,
    epsilon: float | None = None,
    generator_kind: str | None = None,
    adv_seeds: int = 4,
    adv_iterations: int = 1000,
    attacks: Sequence[str] = (),
    attack_limit: int = 500,
    pgd_epsilons: Mapping[str, Sequence[float]] | None = None,
    pgd_steps: int = 50,
    ddn_steps: int = 100,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    num_workers: int = 1,
    distribute: ShardMapper | None = None,
    loader_workers: int = 0,
    clean_dataset: str | None = None,
    model_name: str = "model",
    command: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (inputs in [0, 1]) on a corruption benchmark; the results dict.

    ``limit`` caps the images of the clean set and of every (corruption, severity) split;
    ``eps_star_limit`` / ``attack_limit`` the clean test images used for eps* / attacks (the
    first ones; an even stride over ImageNet val). ``epsilon`` and ``generator_kind`` size the
    adversarial eps* generators (``adv_seeds`` of them, ``adv_iterations`` Adam steps each).
    ``pgd_epsilons``: {"l2": [...], "linf": [...]}, default ``DEFAULT_PGD_EPSILONS``.
    ``num_workers > 1`` runs one shard per split through ``distribute`` (see
    ``orchestrator.eval_runner.evaluate_distributed``); 1 runs everything in this process.

    Raises:
        EvalInputError: bad option values or a model that does not fit the benchmark.
        BenchmarkDataError: benchmark files missing or malformed (files mode).
        DataMissingError: the clean test set is missing.
    """
    splits = resolve_splits(
        benchmark, generated=generated, corruptions=corruptions, severities=severities
    )
    directions = _parse_choices(eps_star_directions, EPS_STAR_DIRECTIONS, "eps* direction(s)")
    attack_names = _parse_choices(attacks, ATTACKS, "attack(s)")
    positive = {
        "limit": limit,
        "eps_star_limit": eps_star_limit,
        "attack_limit": attack_limit,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "adv_seeds": adv_seeds,
        "adv_iterations": adv_iterations,
        "pgd_steps": pgd_steps,
        "ddn_steps": ddn_steps,
    }
    for name, value in positive.items():
        if value is not None and value < 1:
            raise EvalInputError(f"{name.replace('_', '-')} must be >= 1, got {value}")
    if loader_workers < 0:
        raise EvalInputError(f"loader-workers must be >= 0, got {loader_workers}")
    if epsilon is not None and epsilon <= 0:
        raise EvalInputError(f"epsilon must be > 0, got {epsilon}")
    if num_workers > 1 and distribute is None:
        raise ValueError("num_workers > 1 needs distribute= (orchestrator.eval_runner)")
    pgd_eps = dict(DEFAULT_PGD_EPSILONS[benchmark] if pgd_epsilons is None else pgd_epsilons)
    bad_norms = [k for k in pgd_eps if k not in ("l2", "linf")]
    if bad_norms or any(e < 0 for v in pgd_eps.values() for e in v):
        raise EvalInputError(f"bad PGD epsilons {pgd_eps}: norms l2/linf, values >= 0")

    dev = resolve_device(device)
    root = resolve_data_root(data_root)
    bench_root = (
        Path(benchmark_root) if benchmark_root else default_benchmark_root(benchmark, root.path)
    )
    settings = EvalSettings(
        benchmark=benchmark,
        data_root=str(root.path),
        benchmark_root=str(bench_root),
        generated=generated,
        clean_dataset=clean_dataset or CLEAN_DATASETS[benchmark],
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        device=str(dev),
        loader_workers=loader_workers,
    )
    if not generated:
        check_files_present(benchmark, bench_root, splits)  # seconds, not hours, to a bad path

    model.to(dev).eval()
    full_test = load_dataset(settings.clean_dataset, root, train=False)
    strided = settings.clean_dataset == "imagenet"
    clean_set = clean_subset(full_test, limit, strided=strided)
    clean = clean_accuracy(model, clean_set, settings, progress=progress)

    if num_workers > 1:
        assert distribute is not None
        shards = [[split] for split in splits]
        per_shard = distribute(model, settings, shards, num_workers=num_workers, progress=progress)
        rows = [row for shard_rows in per_shard for row in shard_rows]
        model.to(dev).eval()
    else:
        rows = evaluate_splits(model, settings, splits, progress=progress, clean_set=clean_set)
    rows = [{"model": model_name, **row} for row in rows]
    agg = aggregate_corruption_results(rows, benchmark=benchmark)

    eps_results: dict[str, Any] = {}
    if directions:
        x, y = stack_images(clean_subset(full_test, eps_star_limit, strided=strided))
        eps_results = run_eps_star(
            model,
            x,
            y,
            directions,
            settings,
            epsilon=epsilon,
            generator_kind=generator_kind,
            adv_seeds=adv_seeds,
            adv_iterations=adv_iterations,
            fallback=full_test,
            progress=progress,
        )
    attack_results: dict[str, Any] = {}
    if attack_names:
        x, y = stack_images(clean_subset(full_test, attack_limit, strided=strided))
        attack_results = run_attacks(
            model,
            x,
            y,
            attack_names,
            settings,
            pgd_epsilons=pgd_eps,
            pgd_steps=pgd_steps,
            ddn_steps=ddn_steps,
            progress=progress,
        )

    meta: dict[str, Any] = {
        "seed": seed,
        "model": model_name,
        "command": command,
        "data_source": "generated" if generated else "files",
        "benchmark": benchmark,
        "run_id": uuid.uuid4().hex[:12],
        "clean_dataset": settings.clean_dataset,
        "data_root": str(root.path),
        "benchmark_root": None if generated else str(bench_root),
        "corruptions": list(dict.fromkeys(c for c, _ in splits)),
        "severities": sorted({s for _, s in splits}),
        "limit": limit,
        "batch_size": batch_size,
        "device": str(dev),
        "num_workers": num_workers,
        "eps_star_limit": eps_star_limit if directions else None,
        "attack_limit": attack_limit if attack_names else None,
        "settings": asdict(settings),
    }
    meta.update(metadata or {})
    return {
        "clean_accuracy": clean["top1"],
        "clean_top5": clean["top5"],
        "clean_n": clean["n"],
        "mean_accuracy": agg["mean_accuracy"],
        "mean_top5": agg["mean_top5"],
        "mean_accuracy_without_noise": agg["mean_accuracy_without_noise"],
        "mce": agg["mce"],
        "mce_complete": agg["mce_complete"],
        "per_category": agg["per_category"],
        "rows": rows,
        "eps_star": eps_results,
        "attacks": attack_results,
        "metadata": meta,
    }


__all__ = [
    "ATTACKS",
    "CLEAN_DATASETS",
    "DEFAULT_PGD_EPSILONS",
    "EPS_STAR_DIRECTIONS",
    "EvalInputError",
    "EvalSettings",
    "ShardMapper",
    "Split",
    "check_model_dataset",
    "clean_accuracy",
    "default_benchmark_root",
    "evaluate",
    "evaluate_splits",
    "resolve_device",
    "resolve_splits",
    "split_seed",
]
