"""One evaluation of one model: clean accuracy, a corruption benchmark, eps*, attacks.

``evaluate(model, request)`` runs what an :class:`evaluation.request.EvalRequest` asks for
and returns the results dict that ``evaluation.report.write_report`` writes. The pieces live
beside it: the corruption loop (``evaluation.corruption_loop``, whose per-shard function
runs in Ray tasks for ``num_workers > 1``: only orchestrator/ calls ``ray.init``, so the
fan-out is injected here as ``distribute``), eps* (``evaluation.eps_star_adapter``) and the
attacks (``evaluation.attack_adapter``).

The clean accuracy, the corrupted images (generated mode), eps* and the attacks all read the
request's split: the test images, or the validation split carved from the training images
(``--split val``, what tuning and choosing defaults use). Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from torch import nn

from evaluation.attack_adapter import run_attacks
from evaluation.benchmarks import BENCHMARKS, BenchmarkDataError, check_benchmark_files
from evaluation.corruption_loop import (
    EvalSettings,
    ShardMapper,
    clean_accuracy,
    eval_subset,
    evaluate_splits,
    load_eval_set,
    stack_images,
)
from evaluation.eps_star_adapter import prepare_adversarial, run_eps_star
from evaluation.metrics import aggregate_corruption_results
from evaluation.request import EvalInputError, EvalRequest, Split


def settings_for(request: EvalRequest) -> EvalSettings:
    """The picklable per-shard settings of a request (paths resolved)."""
    assert request.clean_dataset is not None  # filled in by EvalRequest
    return EvalSettings(
        benchmark=request.benchmark,
        data_root=str(request.resolved_data_root()),
        benchmark_root=str(request.resolved_benchmark_root()),
        generated=request.generated,
        clean_dataset=request.clean_dataset,
        limit=request.limit,
        seed=request.seed,
        batch_size=request.batch_size,
        device=request.device,
        loader_workers=request.loader_workers,
        split=request.split,
        val_size=request.val_size,
        split_seed=request.split_seed,
    )


def check_files_present(request: EvalRequest, splits: list[Split]) -> None:
    """Fail fast, naming the missing path, when the benchmark files are not there."""
    benchmark, root = request.benchmark, request.resolved_benchmark_root()
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


def evaluate(
    model: nn.Module,
    request: EvalRequest,
    *,
    distribute: ShardMapper | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (inputs in [0, 1]) as ``request`` asks; the results dict.

    ``distribute`` runs the corruption splits, one shard each, when ``request.num_workers >
    1`` (see ``orchestrator.eval_runner.ray_shard_mapper``). ``metadata`` is merged into the
    results' metadata.

    Raises:
        EvalInputError: an epsilon the eps* generators cannot reach, an empty or too small
            split, or ``num_workers > 1`` without ``distribute``.
        BenchmarkDataError: benchmark files missing or malformed (files mode).
        DataMissingError: the clean images (or, for adversarial eps*, the training images)
            are missing.
    """
    if request.num_workers > 1 and distribute is None:
        raise EvalInputError("--num-workers > 1 needs a Ray shard mapper (run `antray eval`)")
    splits = request.splits
    settings = settings_for(request)
    # Everything that can fail on a path or a value fails here, before hours of work.
    if not request.generated:
        check_files_present(request, splits)
    full = load_eval_set(settings)
    adversarial = None
    if "adversarial" in request.eps_star:
        adversarial = prepare_adversarial(request, settings)

    model.to(settings.device).eval()
    clean_set = eval_subset(settings, full, request.limit)
    clean = clean_accuracy(model, clean_set, settings, progress=request.progress)
    if request.num_workers > 1:
        assert distribute is not None
        shards = [[split] for split in splits]
        per_shard = distribute(
            model, settings, shards, num_workers=request.num_workers, progress=request.progress
        )
        rows = [row for shard_rows in per_shard for row in shard_rows]
        model.to(settings.device).eval()
    else:
        rows = evaluate_splits(
            model, settings, splits, progress=request.progress, clean_set=clean_set
        )
    rows = [{"model": request.model_name, **row} for row in rows]
    agg = aggregate_corruption_results(rows, benchmark=request.benchmark)

    eps_results: dict[str, Any] = {}
    if request.eps_star:
        x, y = stack_images(eval_subset(settings, full, request.eps_star_limit))
        eps_results = run_eps_star(model, x, y, request, settings, adversarial=adversarial)
    attack_results: dict[str, Any] = {}
    if request.attacks:
        x, y = stack_images(eval_subset(settings, full, request.attack_limit))
        attack_results = run_attacks(model, x, y, request)

    meta: dict[str, Any] = {
        "seed": request.seed,
        "model": request.model_name,
        "command": request.command,
        "data_source": "generated" if request.generated else "files",
        "benchmark": request.benchmark,
        "split": request.split,
        "run_id": uuid.uuid4().hex[:12],
        "clean_dataset": request.clean_dataset,
        "data_root": settings.data_root,
        "benchmark_root": None if request.generated else settings.benchmark_root,
        "corruptions": list(dict.fromkeys(c for c, _ in splits)),
        "severities": sorted({s for _, s in splits}),
        "limit": request.limit,
        "batch_size": request.batch_size,
        "device": request.device,
        "num_workers": request.num_workers,
        "eps_star_limit": request.eps_star_limit if request.eps_star else None,
        "attack_limit": request.attack_limit if request.attacks else None,
        "request": request.model_dump(mode="json"),
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
    "EvalInputError",
    "EvalRequest",
    "EvalSettings",
    "ShardMapper",
    "Split",
    "evaluate",
    "evaluate_splits",
    "settings_for",
]
