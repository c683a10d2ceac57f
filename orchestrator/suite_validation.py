"""The generated corruption suite on the validation split, measured after every epoch.

``data.val_suite`` (e.g. ``mnist-c``) turns it on: rank 0 corrupts the first
``data.val_suite_images`` validation images (carved from the training images, never the test
set) with the suite's generated corruptions and reports

- ``val_corruption_acc``: the mean top-1 over the suite's (corruption, severity) splits, the
  figure that chooses sigma, epsilon and the other defaults, and that ``antray tune`` ranks
  trials by;
- ``val_corruption_<name>_acc``: each corruption's top-1 (averaged over its severities).

It is ``evaluation.corruption_loop.evaluate_splits`` with the settings ``antray eval
--benchmark <suite> --generated --split val --limit <images>`` uses (its default seed and
batch size, on which the corruption seeds depend), so a checkpoint evaluated that way prints
the same mean. The training loop gets it through ``make_suite_validation`` (trainers/ never
imports evaluation/). It leaves the training's random streams alone: a run measures the same
training with the suite on or off.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from evaluation.corruption_loop import EvalSettings, eval_subset, evaluate_splits, load_eval_set
from evaluation.corruptions.suites import generated_suite
from evaluation.request import CLEAN_DATASETS, EvalRequest
from trainers.data import resolve_data_root
from trainers.validation import SuiteValidation

# antray eval's defaults: the corruption seeds depend on both.
EVAL_SEED: int = EvalRequest.model_fields["seed"].default
EVAL_BATCH_SIZE: int = EvalRequest.model_fields["batch_size"].default
MEAN_KEY = "val_corruption_acc"


def corruption_key(corruption: str) -> str:
    return f"val_corruption_{corruption}_acc"


def suite_metrics(benchmark: str) -> tuple[str, ...]:
    """Every metric name the suite reports: the mean, then one per corruption."""
    return (MEAN_KEY, *(corruption_key(c) for c in generated_suite(benchmark).corruptions))


def make_suite_validation(
    cfg: Any, data_root: str | None, device: torch.device
) -> SuiteValidation | None:
    """The epoch-end measurement for ``cfg.data.val_suite``, or None when it is ``none``.

    The clean validation images are loaded once here; each call corrupts them afresh with the
    same seeds, so epochs and trials are compared on the same corrupted images."""
    benchmark = cfg.data.val_suite
    if benchmark == "none":
        return None
    settings = EvalSettings(
        benchmark=benchmark,
        data_root=str(resolve_data_root(data_root or cfg.data.root).path),
        benchmark_root="",
        generated=True,
        clean_dataset=CLEAN_DATASETS[benchmark],
        limit=cfg.data.val_suite_images,
        seed=EVAL_SEED,
        batch_size=EVAL_BATCH_SIZE,
        device=str(device),
        split="val",
        val_size=cfg.data.val_size,
        split_seed=cfg.data.split_seed,
    )
    clean = eval_subset(settings, load_eval_set(settings), settings.limit)
    suite = generated_suite(benchmark)
    splits = [(c, s) for c in suite.corruptions for s in suite.severities]

    def measure(model: nn.Module) -> dict[str, float]:
        # The evaluation's DataLoader draws its base seed from the global RNG, which the
        # training's noise also draws from: fork it, or the suite would change the training.
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            rows = evaluate_splits(model, settings, splits, clean_set=clean)
        metrics = {MEAN_KEY: sum(r["top1"] for r in rows) / len(rows)}
        for corruption in suite.corruptions:
            mine = [r["top1"] for r in rows if r["corruption"] == corruption]
            metrics[corruption_key(corruption)] = sum(mine) / len(mine)
        return metrics

    return measure
