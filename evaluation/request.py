"""What one evaluation is asked to do: a frozen, validated request that owns the defaults.

``antray eval`` only parses flags into :meth:`EvalRequest.build`; tests and scripts build the
same object. Every bad value is an :class:`EvalInputError` (one line, exit 2) raised while
the request is built, before any data is read or anything is written. Defaults that depend
on the benchmark are filled in here, so the report records the values actually used:

- ``clean_dataset``: the benchmark's clean images (MNIST for mnist-c, CIFAR-10, ImageNet);
- ``val_size``: the dataset's default validation size (``trainers.data``); ``antray eval``
  passes the checkpoint's ``data.val_size`` / ``data.split_seed`` instead when it has them;
- ``eps_star_epsilon``: the adversarial eps* generators' l2 size, one per benchmark for every
  model compared: the paper's 135 at 224x224x3 carried to the image size at a constant
  per-coordinate size (``135 * sqrt(N / 150528)``: 9.74 for MNIST, 19.3 for CIFAR-10);
- ``pgd_l2`` / ``pgd_linf``: ``DEFAULT_PGD_EPSILONS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluation.benchmarks import BENCHMARKS, Benchmark
from evaluation.corruptions.suites import generated_suite
from trainers.data import IMAGE_SPECS, default_val_size, resolve_data_root, unreachable_epsilon


class EvalInputError(ValueError):
    """Bad evaluation input (option values, model/benchmark mismatch): one line, exit 2."""


Split = tuple[str, int]  # (corruption, severity)
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]

CLEAN_DATASETS: dict[str, str] = {name: spec.clean_dataset for name, spec in BENCHMARKS.items()}
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
# and linf 2/255, 8/255. ImageNet: the paper's Table 4 (l2 0.12, linf 0.001).
DEFAULT_PGD_EPSILONS: dict[str, dict[str, tuple[float, ...]]] = {
    "mnist-c": {"l2": (0.5, 1.0, 2.0), "linf": (0.1, 0.2, 0.3)},
    "cifar10-c": {"l2": (0.25, 0.5), "linf": (2 / 255, 8 / 255)},
    "imagenet-c": {"l2": (0.12,), "linf": (0.001,)},
}


def default_eps_star_epsilon(dataset: str) -> float:
    """The paper's generator size at the dataset's image size, keeping the per-coordinate
    size (docs/METHOD.md, "Images and sizes"): the default ``ant.epsilon`` too."""
    return IMAGE_SPECS[dataset].default_epsilon


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
    if generated:
        suite = generated_suite(benchmark)
        allowed, default_sev, what = list(suite.corruptions), suite.severities, "generated"
    else:
        spec = BENCHMARKS[benchmark]
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


def check_model_dataset(benchmark: str, dataset: str | None) -> None:
    """Refuse a model trained on other images than the benchmark's (None: unknown, allowed)."""
    if dataset is not None and dataset not in COMPATIBLE_DATASETS.get(benchmark, (dataset,)):
        need = " or ".join(COMPATIBLE_DATASETS[benchmark])
        raise EvalInputError(
            f"the model was trained on {dataset}; --benchmark {benchmark} needs a {need} model"
        )


def _choices(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    chosen = [v.strip() for v in values if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {','.join(bad)}; choose from {','.join(allowed)}")
    return tuple(dict.fromkeys(chosen))


class EvalRequest(BaseModel):
    """One evaluation of one model; field names are the ``antray eval`` flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark: Benchmark
    # Which images: "test" (the benchmark's test images, files or generated) or "val"
    # (generated corruptions of the validation split carved from the training images:
    # what tuning and choosing defaults read).
    split: Literal["val", "test"] = "test"
    val_size: NonNegInt | None = None  # filled in: the dataset's default
    split_seed: NonNegInt = 0
    data_root: str | None = None
    benchmark_root: str | None = None
    generated: bool = False
    corruptions: tuple[str, ...] | None = None
    severities: tuple[int, ...] | None = None
    limit: PositiveInt | None = None  # images of the clean set and of every split
    eps_star: tuple[str, ...] = ()
    eps_star_limit: PositiveInt = 500
    eps_star_epsilon: Annotated[float, Field(gt=0.0)] | None = None  # filled in per benchmark
    generator: Literal["1x1", "3x3"] = "1x1"
    adv_seeds: PositiveInt = 4
    adv_iterations: PositiveInt = 1000
    attacks: tuple[str, ...] = ()
    attack_limit: PositiveInt = 500
    pgd_l2: tuple[NonNegFloat, ...] | None = None  # filled in per benchmark
    pgd_linf: tuple[NonNegFloat, ...] | None = None
    pgd_steps: PositiveInt = 50
    ddn_steps: PositiveInt = 100
    seed: int = 0
    batch_size: PositiveInt = 256
    device: str = "auto"  # resolved: cpu, cuda, cuda:1
    num_workers: PositiveInt = 1  # Ray tasks at a time (1: in this process)
    loader_workers: NonNegInt = 0
    clean_dataset: Literal["mnist", "cifar10", "imagenet", "synthetic"] | None = None
    progress: bool = True
    model_name: str = "model"
    command: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("benchmark") not in CLEAN_DATASETS:
            return data  # field validation reports the bad benchmark
        data = {k: v for k, v in data.items() if v is not None}
        benchmark = data["benchmark"]
        clean = data.setdefault("clean_dataset", CLEAN_DATASETS[benchmark])
        if clean in IMAGE_SPECS:
            data.setdefault("val_size", default_val_size(clean))
            data.setdefault("eps_star_epsilon", default_eps_star_epsilon(clean))
        data.setdefault("pgd_l2", DEFAULT_PGD_EPSILONS[benchmark]["l2"])
        data.setdefault("pgd_linf", DEFAULT_PGD_EPSILONS[benchmark]["linf"])
        data["device"] = str(resolve_device(data.get("device", "auto")))
        for key, allowed, what in (
            ("eps_star", EPS_STAR_DIRECTIONS, "eps* direction(s)"),
            ("attacks", ATTACKS, "attack(s)"),
        ):
            if key in data:
                data[key] = _choices(data[key], allowed, what)
        return data

    @model_validator(mode="after")
    def _check(self) -> EvalRequest:
        if self.split == "val":
            if not self.generated:
                raise ValueError(
                    "--split val needs --generated: the benchmark files hold corrupted test "
                    "images only, the validation images are corrupted on the fly"
                )
            if self.val_size == 0:
                raise ValueError(
                    "--split val needs a validation split but val_size is 0 "
                    "(the checkpoint's data.val_size); pass --val-size N"
                )
        resolve_splits(
            self.benchmark,
            generated=self.generated,
            corruptions=self.corruptions,
            severities=self.severities,
        )
        check_model_dataset(self.benchmark, self.clean_dataset)
        if self.eps_star_epsilon is not None and self.clean_dataset in IMAGE_SPECS:
            problem = unreachable_epsilon(self.eps_star_epsilon, self.clean_dataset)
            if problem:
                raise ValueError(f"--eps-star-epsilon {problem}")
        return self

    @classmethod
    def build(cls, **values: Any) -> EvalRequest:
        """The request, or an :class:`EvalInputError` naming the first bad value."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise EvalInputError(_one_line(exc)) from None

    @property
    def splits(self) -> list[Split]:
        return resolve_splits(
            self.benchmark,
            generated=self.generated,
            corruptions=self.corruptions,
            severities=self.severities,
        )

    @property
    def pgd_epsilons(self) -> dict[str, tuple[float, ...]]:
        return {"l2": self.pgd_l2 or (), "linf": self.pgd_linf or ()}

    def resolved_data_root(self) -> Path:
        return resolve_data_root(self.data_root).path

    def resolved_benchmark_root(self) -> Path:
        if self.benchmark_root:
            return Path(self.benchmark_root)
        return default_benchmark_root(self.benchmark, self.resolved_data_root())


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = "-".join(str(p) for p in error["loc"] if isinstance(p, str)).replace("_", "-")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("greater_than", "greater_than_equal"):
        ctx = error.get("ctx", {})
        bound = f"> {ctx['gt']}" if "gt" in ctx else f">= {ctx.get('ge')}"
        return f"--{where} must be {bound}, got {error['input']!r}"
    if error["type"] == "value_error" or not where:
        return message
    return f"--{where}: {message} (got {error['input']!r})"


__all__ = [
    "ATTACKS",
    "CLEAN_DATASETS",
    "COMPATIBLE_DATASETS",
    "DEFAULT_PGD_EPSILONS",
    "EPS_STAR_DIRECTIONS",
    "EvalInputError",
    "EvalRequest",
    "Split",
    "check_model_dataset",
    "default_benchmark_root",
    "default_eps_star_epsilon",
    "resolve_device",
    "resolve_splits",
]
