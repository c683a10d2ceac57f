"""``antray eval --num-workers N``: the corruption splits as Ray tasks, one per shard.

Each task runs the pure per-shard function ``evaluation.corruption_loop.evaluate_splits`` on one
(corruption, severity) split and returns its rows; clean accuracy, eps* and attacks stay in
the calling process. Tasks read the data themselves, so ``--data-root`` and the benchmark
files must be visible at the same path on every node (as for training). Only orchestrator/
calls ``ray.init``: this module joins ``address`` (or starts a local instance) if Ray is not
initialised yet, and leaves an instance it did not start running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from evaluation.corruption_loop import EvalSettings, ShardMapper, evaluate_splits
from evaluation.request import Split


def run_shard(
    model: nn.Module, settings: EvalSettings, shard: Sequence[Split], threads: int = 1
) -> list[dict[str, Any]]:
    """Body of one Ray task: the rows of ``shard`` (CPU when the node has no CUDA device)."""
    torch.set_num_threads(max(1, threads))
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        settings = dataclasses.replace(settings, device="cpu")
    return evaluate_splits(model, settings, shard, progress=False)


def _init_ray(address: str | None) -> None:
    """The same start-or-join as ``antray train`` (probe first, one-line errors), without
    waiting for the State API: evaluation runs plain tasks, no Train run to clean up."""
    from orchestrator.ray_instance import ensure_ray

    ensure_ray(address, wait_state_api=False)


def ray_shard_mapper(
    *, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float | None = None
) -> ShardMapper:
    """A ``ShardMapper`` running each shard as a Ray task, at most ``num_workers`` at a time.

    ``gpus_per_task`` defaults to an equal share of the cluster's GPUs (at most 1) when the
    settings ask for CUDA, else 0.
    """

    def mapper(
        model: nn.Module,
        settings: EvalSettings,
        shards: Sequence[Sequence[Split]],
        *,
        num_workers: int,
        progress: bool,
    ) -> list[list[dict[str, Any]]]:
        import ray

        _init_ray(address)
        gpus = gpus_per_task
        if gpus is None:
            total = float(ray.cluster_resources().get("GPU", 0.0))
            wants_cuda = settings.device.startswith("cuda")
            gpus = min(1.0, total / num_workers) if wants_cuda and total > 0 else 0.0
        task = ray.remote(run_shard).options(num_cpus=cpus_per_task, num_gpus=gpus)
        model_ref = ray.put(model.to("cpu"))
        threads = max(1, int(cpus_per_task))
        results: dict[int, list[dict[str, Any]]] = {}
        pending: dict[Any, int] = {}
        queue = list(enumerate(shards))
        bar = tqdm(
            total=len(shards),
            unit="split",
            desc=f"{settings.benchmark} on Ray",
            disable=not progress,
        )
        try:
            while queue or pending:
                while queue and len(pending) < num_workers:
                    index, shard = queue.pop(0)
                    pending[task.remote(model_ref, settings, list(shard), threads)] = index
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    results[pending.pop(ref)] = ray.get(ref)
                    bar.update(1)
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref)
        return [results[i] for i in range(len(shards))]

    return mapper


__all__ = ["ray_shard_mapper", "run_shard"]
