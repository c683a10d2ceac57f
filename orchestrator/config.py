"""Typed, frozen experiment configs loaded from YAML.

Unknown keys and wrong types are errors that name the key and the file; ``--set
a.b=value`` overrides any leaf. Defaults reproduce the paper's reference settings
where the paper gives one (docs/METHOD.md); MNIST-specific values live in configs/*.yaml.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evaluation.benchmarks import BENCHMARKS, Benchmark
from generators.samplers import IMAGENET_C_SPECKLE_LEVELS
from generators.training import FROM_SCRATCH_ITERATIONS, FROM_SCRATCH_LR, JOINT_LR
from orchestrator.errors import UserError
from trainers.data import IMAGE_SPECS, unreachable_epsilon
from trainers.steps import Mode

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class ExperimentSection(_Frozen):
    name: str = "antray"
    seed: int = 0


class DataSection(_Frozen):
    # synthetic / synthetic-imagenet: generated tensors for tests and throughput benchmarks
    dataset: Literal["mnist", "cifar10", "imagenet", "synthetic", "synthetic-imagenet"] = "mnist"
    root: str | None = None  # else --data-root, ANTRAY_DATA_ROOT, ./data
    stylized_root: str | None = None  # Stylized-ImageNet folder for ANT+SIN
    # The batch of one classifier update over all workers (the paper: 70), whatever the
    # number of data-parallel workers: each takes batch_size / workers images, or (where
    # that does not divide) shares that differ by one image, weighted so that the update
    # is the mean over the whole batch (trainers/order.py).
    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt = 512
    loader_workers: NonNegInt = 0
    # Validation split carved from the training images (seeded by split_seed, so every
    # model and Tune trial sees the same one); None: the dataset's default, 0: none.
    val_size: NonNegInt | None = None
    split_seed: NonNegInt = 0
    limit_train: PositiveInt | None = None  # first N training images (tests, smoke runs)
    limit_val: PositiveInt | None = None  # first N validation images
    # The generated corruption suite on the validation split, measured after every epoch:
    # ``val_corruption_acc`` (mean top-1 over the suite's splits on the first
    # val_suite_images validation images), what ``antray tune`` ranks trials by. "none": off.
    val_suite: Benchmark | Literal["none"] = "none"
    val_suite_images: PositiveInt = 1000


class ModelSection(_Frozen):
    name: str = "madry_cnn"
    num_classes: PositiveInt = 10
    weights_path: str | None = None  # local pretrained weights (resnet50)


class OptimSection(_Frozen):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    epochs: PositiveInt = 1
    max_steps: PositiveInt | None = None  # stop early after this many classifier steps
    step_size_epochs: PositiveInt = 60  # StepLR, reference: 60 epochs, gamma 0.1
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    # > 0: validation and the checkpoint's served classifier use an exponential moving
    # average of the weights (decay per step); training itself is unchanged. 0: off.
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Which epoch's classifier the run serves (model.pt, antray eval): "last", or
    # "best_val", the epoch with the highest validation score (the corruption suite's mean
    # when data.val_suite is on, else clean accuracy): early stopping chosen on the
    # validation split, never on test images. Training is the same either way.
    select_epoch: Literal["last", "best_val"] = "last"


class SharesSection(_Frozen):
    """Fractions of each classifier batch. ANT: 50 % clean, 30 % current generator, 20 %
    replayed generators. ANT+SIN (the paper): 25 % clean, 30 % stylized, 45 % generator
    noise, of which the current generator keeps 30 % and replay the other 15 % (the
    reference's ``generate_noisy_data`` replays in ANT+SIN too). GNT/Speckle: ``clean``
    stays clean, the rest is noised."""

    clean: Share = 0.5
    current: Share = 0.3
    replay: Share = 0.2
    stylized: Share = 0.0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SharesSection:
        total = self.clean + self.current + self.replay + self.stylized
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"shares must sum to 1, got {total:.6g}")
        return self


class NoiseSection(_Frozen):
    mode: Mode = "ant"
    sigmas: tuple[Annotated[float, Field(ge=0)], ...] = (0.5,)  # GNT: one, or a set per image
    speckle_levels: tuple[Annotated[float, Field(ge=0)], ...] = IMAGENET_C_SPECKLE_LEVELS
    shares: SharesSection = SharesSection()

    @model_validator(mode="after")
    def _levels(self) -> NoiseSection:
        if not self.sigmas:
            raise ValueError("sigmas must not be empty")
        if not self.speckle_levels:
            raise ValueError("speckle_levels must not be empty")
        if self.mode != "ant" and self.shares.stylized > 0:
            raise ValueError(f"shares.stylized > 0 is ANT+SIN: it needs mode ant, not {self.mode}")
        return self


class AntSection(_Frozen):
    # alternating: a generator step, then the classifier's step (the reference); fused: one
    # forward and backward of the classifier trains both, the generator through a gradient
    # reversal on its share of the batch (docs/METHOD.md, "The fused step").
    step: Literal["alternating", "fused"] = "alternating"
    generator: Literal["1x1", "3x3"] = "1x1"
    # The l2 size of each perturbation over the whole image, in [0, 1] pixel units: the one
    # unit of every epsilon antray takes (--set, tune's --grid, eval's --eps-star-epsilon).
    # It must stay below the dataset's largest distance, sqrt(number of coordinates).
    # None: ImageNet's 135 at the dataset's image size (9.74 MNIST, 19.3 CIFAR-10), filled
    # in when the config is validated, so a resolved config always holds a number.
    epsilon: Annotated[float, Field(gt=0)] | None = None
    generator_lr: Annotated[float, Field(gt=0)] = JOINT_LR
    restart_lr: Annotated[float, Field(gt=0)] = FROM_SCRATCH_LR
    restart_iterations: NonNegInt = FROM_SCRATCH_ITERATIONS  # 0 disables restarts
    # Restart at step 0 and then every N steps; None: at every epoch start, the first
    # included (reference). trainers/generator_life.py has the whole schedule.
    restart_every_steps: PositiveInt | None = None
    # Snapshot the current generator every N steps; None: each adopted restarted generator
    # enters the replay history (reference), or without restarts the current one per epoch.
    snapshot_every_steps: PositiveInt | None = None
    replay_capacity: PositiveInt = 64
    replay_eviction: Literal["fifo", "random"] = "fifo"
    replay_generators_per_batch: PositiveInt = 2  # reference: 0.1 of the batch per old generator
    replay_refresh_every_steps: PositiveInt = 20  # Ray: how often workers re-index the store


class RuntimeSection(_Frozen):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bf16 autocast on CUDA
    channels_last: bool = False
    # Ray Train data-parallel workers: a number, or [min, max] for an elastic group that
    # runs with as many as the cluster holds (spot nodes lost and back) and never fewer
    # than min. The global batch and the updates per epoch are the same at every size.
    num_workers: int | tuple[int, int] = 1
    # Elastic groups: how often Train looks for room to grow back (seconds).
    elastic_resize_interval_s: Annotated[float, Field(gt=0)] = 60.0
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0
    generator_actor_cpus: Annotated[float, Field(gt=0)] = 1.0
    generator_actor_gpus: Annotated[float, Field(ge=0)] = 0.0
    # Collective backend of the Train workers: auto = nccl with GPUs, else gloo.
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"
    torch_threads: NonNegInt = 0  # 0 leaves torch's default
    log_every_steps: PositiveInt = 50
    checkpoint_every_epochs: PositiveInt = 1
    # Also checkpoint every N classifier steps inside an epoch (spot workers lose less).
    checkpoint_every_steps: PositiveInt | None = None
    # Worker-group failures Train recovers from (from the last checkpoint); -1: no limit.
    # Preemptions Ray recognises as such are counted separately and never run out.
    max_failures: Annotated[int, Field(ge=-1)] = 5
    checkpoints_to_keep: PositiveInt = 2
    # Where Train and Tune keep checkpoints: a local path (one node, or a mount every
    # node sees: NFS/EFS), s3://bucket/prefix or gs://bucket/prefix. None: <run dir>/ray.
    storage: str | None = None
    # S3-compatible endpoint (MinIO, a test server) for s3:// storage and s3:// data;
    # credentials come from the standard AWS environment/instance profile, never from
    # the config.
    storage_endpoint: str | None = None
    # Custom resource that marks the head node: the replay store, the stop flag and Tune's
    # trial drivers ask for a sliver of it, so losing a (spot) worker node never takes
    # them away. antray's own local Ray instance has it; cluster.yaml sets it.
    head_resource: str = "antray_head"
    # How long the driver waits for its actors, Train for its workers (and a cold GPU
    # node an autoscaler launches) before giving up.
    startup_timeout_s: PositiveInt = 1800

    @field_validator("num_workers", mode="before")
    @classmethod
    def _worker_range(cls, value: Any) -> int | tuple[int, int]:
        """A whole number >= 1, or [min, max] with 1 <= min <= max."""
        if isinstance(value, list | tuple):
            if len(value) != 2 or not all(_whole(v) for v in value):
                raise ValueError(f"expected a number or [min, max], got {list(value)}")
            low, high = int(value[0]), int(value[1])
            if low < 1:
                raise ValueError(f"[min, max] needs min >= 1, got [{low}, {high}]")
            if low > high:
                raise ValueError(f"[min, max] needs min <= max, got [{low}, {high}]")
            return (low, high)
        if not _whole(value) or int(value) < 1:
            raise ValueError(f"expected a whole number >= 1 or [min, max], got {value!r}")
        return int(value)

    @property
    def worker_range(self) -> tuple[int, int]:
        """(min, max) data-parallel workers; equal for a fixed group."""
        n = self.num_workers
        return (n, n) if isinstance(n, int) else (n[0], n[1])

    @property
    def min_workers(self) -> int:
        return self.worker_range[0]

    @property
    def max_workers(self) -> int:
        return self.worker_range[1]

    @property
    def elastic(self) -> bool:
        return not isinstance(self.num_workers, int)


class TrackingSection(_Frozen):
    mlflow_uri: str | None = None  # else MLFLOW_TRACKING_URI, else sqlite under the run dir
    experiment: str = "antray"


class ExperimentConfig(_Frozen):
    experiment: ExperimentSection = ExperimentSection()
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    optim: OptimSection = OptimSection()
    noise: NoiseSection = NoiseSection()
    ant: AntSection = AntSection()
    runtime: RuntimeSection = RuntimeSection()
    tracking: TrackingSection = TrackingSection()

    @model_validator(mode="before")
    @classmethod
    def _dataset_defaults(cls, raw: Any) -> Any:
        """``ant.epsilon`` left out: the dataset's default size (``ImageSpec.default_epsilon``)."""
        if not isinstance(raw, dict):
            return raw
        data, ant = raw.get("data") or {}, raw.get("ant") or {}
        default = DataSection.model_fields["dataset"].default
        if isinstance(data, dict):
            dataset = data.get("dataset", default)
        else:
            dataset = getattr(data, "dataset", None)
        epsilon = ant.get("epsilon") if isinstance(ant, dict) else getattr(ant, "epsilon", None)
        if epsilon is not None or not isinstance(dataset, str) or dataset not in IMAGE_SPECS:
            return raw  # (a bad section or name is reported by its own field)
        size = IMAGE_SPECS[dataset].default_epsilon
        if isinstance(ant, dict):
            return {**raw, "ant": {**ant, "epsilon": size}}
        if isinstance(ant, AntSection):
            return {**raw, "ant": ant.model_copy(update={"epsilon": size})}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        problem = unreachable_epsilon(self.ant.epsilon, self.data.dataset)  # type: ignore[arg-type]
        if problem:
            raise ValueError(f"ant.epsilon={problem} (data.dataset={self.data.dataset})")
        workers = self.runtime.max_workers
        if self.data.batch_size < workers:
            raise ValueError(
                f"data.batch_size={self.data.batch_size} cannot be split over {workers} "
                f"workers (runtime.num_workers={_shown(self.runtime.num_workers)}): it is the "
                "global batch of one update and every worker needs at least one image of it"
            )
        suite = self.data.val_suite
        if suite != "none" and BENCHMARKS[suite].clean_dataset != self.data.dataset:
            raise ValueError(
                f"data.val_suite={suite} corrupts {BENCHMARKS[suite].clean_dataset} images, "
                f"but data.dataset={self.data.dataset}"
            )
        needs_validation = [
            setting
            for setting, on in (
                (f"data.val_suite={suite}", suite != "none"),
                ("optim.select_epoch=best_val", self.optim.select_epoch == "best_val"),
            )
            if on
        ]
        if needs_validation and self.data.val_size == 0:
            raise ValueError(f"{needs_validation[0]} needs a validation split, but data.val_size=0")
        if self.ant.step == "fused" and self.noise.shares.current == 0:
            raise ValueError(
                "ant.step=fused trains the generator on its own share of each batch: "
                "it needs noise.shares.current > 0"
            )
        if self.noise.shares.stylized > 0 and self.data.dataset != "imagenet":
            raise ValueError(
                "noise.shares.stylized > 0 (ANT+SIN) needs data.dataset=imagenet "
                f"(Stylized-ImageNet has ImageNet's classes), not {self.data.dataset}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def sizes(self) -> str:
        """The sizes above in both units, as YAML comments (``antray config show``): an l2
        size over N coordinates is ``sqrt(N)`` times its per-coordinate RMS size."""
        spec = IMAGE_SPECS[self.data.dataset]
        n, root = spec.num_coordinates, math.sqrt(spec.num_coordinates)
        eps = self.ant.epsilon or 0.0
        sigmas = ", ".join(f"{s:g}" for s in self.noise.sigmas)
        sigmas_l2 = ", ".join(f"{s * root:.4g}" for s in self.noise.sigmas)
        return "\n".join(
            [
                f"# sizes on {self.data.dataset}'s {spec.shape} images, N = {n} coordinates "
                f"(docs/METHOD.md, 'Images and sizes'):",
                f"#   ant.epsilon {eps:.4g} (l2) = {eps / root:.4g} per coordinate (RMS, l2 / "
                f"sqrt(N)); below {spec.largest_distance:.4g}, the largest l2 distance",
                f"#   noise.sigmas {sigmas} (per coordinate): l2 about {sigmas_l2} before clipping",
                "",
            ]
        )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return f"[{value[0]}, {value[1]}]" if isinstance(value, tuple) else str(value)


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "value_error":  # our validators' own words, without pydantic's prefix
        msg = str(first["ctx"]["error"])
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    where = f"{key}: " if key else ""  # a check across sections names its keys itself
    return f"config error in {source}: {where}{msg}{extra}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML: numbers, bools, lists)."""
    if "=" not in text:
        raise UserError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise UserError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


# Keys earlier versions had, with the value their resolved config.yaml holds by default
# (so a run directory saved then still resumes) and why the key went.
RETIRED_KEYS: dict[tuple[str, str], tuple[Any, str]] = {
    ("data", "limit_test"): (None, "training never reads the test images (antray eval --limit)"),
}


def _drop_retired(raw: dict[str, Any], source: str) -> dict[str, Any]:
    out = dict(raw)
    for (section, key), (default, why) in RETIRED_KEYS.items():
        values = out.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        if values[key] != default:
            raise UserError(f"config error in {source}: {section}.{key}: no longer a key: {why}")
        out[section] = {k: v for k, v in values.items() if k != key}
    return out


def validate_config(raw: dict[str, Any], *, source: str = "<config>") -> ExperimentConfig:
    raw = _drop_retired(raw, source)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_error(err, source)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment (or the defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(
                f"config error in {path}: invalid YAML: {exc}".splitlines()[0]
            ) from None
        if not isinstance(raw, dict):
            raise UserError(f"config error in {path}: top level must be a mapping")
    if overrides:
        raw = apply_overrides(raw, overrides)
        source += " (with --set)"
    return validate_config(raw, source=source)
