"""Check on the driver what every worker and actor will need, before Ray starts and
before a run directory exists: dataset files, model name, device, storage, resources.

Without this a new user's mistake surfaces as a traceback from inside a Ray actor (exit
1), a KeyError in a worker, or a run that waits for ever for a GPU the machine does not
have, each leaving a half-made run directory behind. Every failure here is a
``UserError``: one line, exit 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from orchestrator.capacity import (
    ClusterShape,
    Resources,
    autoscaler_launches,
    connected_shape,
    describe_bundles,
    fits,
    local_shape,
)
from orchestrator.errors import UserError
from orchestrator.ray_instance import HEAD_SLIVER, ensure_ray, joins_cluster
from orchestrator.storage import RunLocation, probe_storage


def check_model(cfg: Any) -> None:
    from trainers.models import MODELS

    if cfg.model.name not in MODELS:
        raise UserError(f"model.name: unknown model {cfg.model.name!r}; known: {sorted(MODELS)}")
    if cfg.model.weights_path and not Path(cfg.model.weights_path).is_file():
        raise UserError(f"model.weights_path: no file at {cfg.model.weights_path}")


def check_epsilon(cfg: Any) -> None:
    """Validation refuses an unreachable ``ant.epsilon``; a config changed since without it
    (``model_copy(update=...)`` in a script) is refused here, before anything starts."""
    from trainers.data import unreachable_epsilon

    problem = unreachable_epsilon(cfg.ant.epsilon, cfg.data.dataset)
    if problem:
        raise UserError(f"ant.epsilon={problem} (data.dataset={cfg.data.dataset})")


def check_run(
    cfg: Any,
    location: RunLocation,
    *,
    backend: str,
    data_root: str | None,
    address: str | None,
    num_cpus: int | None,
    bundles: list[Resources],
    what: str,
) -> None:
    """All checks for one training (or one Tune search), in the order that keeps them
    cheap: config-only ones, then the data and storage, then (Ray) join or start Ray and,
    on a cluster, what can only be checked there."""
    from orchestrator.data_sync import check_uri, is_uri
    from trainers.data import resolve_data_root

    check_model(cfg)
    check_epsilon(cfg)
    wanted = data_root or cfg.data.root
    in_store = is_uri(wanted)
    if in_store and backend == "local":
        raise UserError("--backend local reads a local --data-root, not a URI")
    if in_store:  # copied to each node when first needed; here: that it is there
        check_uri(wanted, cfg.runtime.storage_endpoint)
    root = None if in_store else resolve_data_root(wanted)

    def data_here() -> None:
        if root is not None:
            check_data(cfg.to_dict(), str(root.path), may_download=root.may_download)

    if backend == "local":
        check_device(cfg, backend="local", joining=False)
        data_here()
        return
    joining = joins_cluster(address)
    check_device(cfg, backend="ray", joining=joining)
    configured = bool(cfg.runtime.storage)
    if not joining:  # antray's own instance: everything is on this machine
        data_here()
        check_fits(bundles, local_capacity(num_cpus, cfg.runtime.head_resource), what)
        check_storage(location, configured=configured, joining=False)
    ensure_ray(address, num_cpus=num_cpus, head_resource=cfg.runtime.head_resource)
    if joining:
        check_cluster_fits(bundles, what, cfg.runtime.startup_timeout_s)
        check_storage(location, configured=configured, joining=True)
        if root is not None:
            check_data_on_cluster(cfg, str(root.path), timeout_s=cfg.runtime.startup_timeout_s)


def check_data(cfg: dict[str, Any], root: str, *, may_download: bool = False) -> None:
    """Raise ``DataMissingError`` (exit 2) when the data the run reads is missing: the
    training images (the validation split is carved from them), never the test images,
    which only ``antray eval`` reads.

    A plain function of a config dict, so it can also run as a Ray task on the node type
    the workers use. MNIST and CIFAR-10 are read (seconds); for ImageNet-style folders
    only the layout is checked (a full scan of a million files would take minutes)."""
    from trainers.data import GENERATED, DataMissingError, DataRoot, load_split

    data = cfg["data"]
    name = data["dataset"]
    data_root = DataRoot(Path(root), may_download=may_download)
    if name == "imagenet":
        _class_folders(Path(root) / "imagenet" / "train", "ImageNet")
    elif name not in GENERATED:
        try:
            load_split(
                name,
                data_root,
                "train",
                val_size=data["val_size"],
                split_seed=data["split_seed"],
                limit=data["limit_train"],
            )
        except ValueError as exc:  # e.g. val_size larger than the training set
            raise DataMissingError(f"data: {exc}") from None
    noise, shares = cfg["noise"], cfg["noise"]["shares"]
    if noise["mode"] == "ant" and shares["stylized"] > 0:
        stylized = data["stylized_root"] or str(Path(root) / "stylized-imagenet" / "train")
        _class_folders(Path(stylized), "Stylized-ImageNet")


def _class_folders(path: Path, what: str) -> None:
    from trainers.data import DataMissingError

    if path.is_dir():
        with os.scandir(path) as entries:
            if any(entry.is_dir() for entry in entries):
                return
    raise DataMissingError(
        f"{what} folder missing or empty: {path} must hold one subfolder per class"
    )


def check_device(cfg: Any, *, backend: str, joining: bool) -> None:
    """A device the run cannot get is an error now, not a hang in a worker."""
    import torch

    rt = cfg.runtime
    if backend == "local":
        if rt.device == "cuda" and not torch.cuda.is_available():
            raise UserError(
                "runtime.device is cuda but no CUDA device is visible "
                "(use --set runtime.device=cpu, or auto)"
            )
        return
    if rt.device == "cuda" and rt.gpus_per_worker <= 0:
        raise UserError(
            "runtime.device=cuda on the Ray backend needs runtime.gpus_per_worker > 0 "
            "(Ray hides GPUs from workers that did not ask for one)"
        )
    if not joining and (rt.device == "cuda" or rt.gpus_per_worker > 0) and not _local_gpus():
        raise UserError(
            "this machine has no GPU for runtime.device=cuda / runtime.gpus_per_worker "
            "(use --set runtime.device=cpu --set runtime.gpus_per_worker=0, "
            "or --address a cluster with GPUs)"
        )


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_bundles(
    cfg: Any,
    *,
    workers: int | None = None,
    trial_cpus: float = 0.0,
    head_resource: str | None = None,
) -> list[Resources]:
    """What one training holds at once, one bundle per process that needs a node: each
    Train worker (``workers``, else the least an elastic group runs with), the generator
    actor (ANT) and (Tune) the trial driver, which sits on the head when
    ``head_resource`` is offered. The store and stop flag use no CPU."""
    rt = cfg.runtime
    count = rt.min_workers if workers is None else workers
    bundles = [_nonzero({"CPU": rt.cpus_per_worker, "GPU": rt.gpus_per_worker})] * count
    if cfg.noise.mode == "ant":
        bundles.append(_nonzero({"CPU": rt.generator_actor_cpus, "GPU": rt.generator_actor_gpus}))
    if trial_cpus > 0:  # as tune_runner.trial_resources places it
        bundles.append({head_resource: HEAD_SLIVER} if head_resource else {"CPU": trial_cpus})
    return bundles


def _nonzero(resources: Resources) -> Resources:
    return {k: v for k, v in resources.items() if v > 0}


def check_fits(bundles: list[Resources], shape: ClusterShape, what: str) -> None:
    if not fits(bundles, shape):
        raise UserError(
            f"{what} needs {describe_bundles(bundles)} ({len(bundles)} processes) but the "
            f"Ray cluster can hold at most {shape.describe()} (from {shape.source}); lower "
            "runtime.num_workers, runtime.*_per_worker or runtime.generator_actor_*"
        )


def local_capacity(num_cpus: int | None, head_resource: str) -> ClusterShape:
    """What the local Ray instance antray starts will offer."""
    return local_shape(num_cpus, _local_gpus(), head_resource)


def check_cluster_fits(bundles: list[Resources], what: str, timeout_s: float) -> None:
    """On a joined cluster: refuse a run no shape of the cluster can hold; where the
    autoscaler's node types are not visible from here, say so and let the run wait."""
    shape = connected_shape()
    if shape is not None:
        check_fits(bundles, shape, what)
        return
    print(
        f"[antray] an autoscaler serves this cluster but its node types are not visible "
        f"from here: {what} ({describe_bundles(bundles)}) starts and waits up to "
        f"{timeout_s:.0f} s (runtime.startup_timeout_s) for the nodes it needs",
        file=sys.stderr,
        flush=True,
    )


def cluster_is_multi_node() -> bool:
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    return len(alive) > 1 or autoscaler_launches()


def check_storage(location: RunLocation, *, configured: bool, joining: bool) -> None:
    """Checkpoints must go where every node can write them: on a multi-node cluster a
    local directory on the driver's node is not (Train V2 fails at the first checkpoint)."""
    if joining and not configured and not location.storage.is_remote and cluster_is_multi_node():
        raise UserError(
            "runtime.storage is needed on a multi-node cluster: checkpoints must go where "
            "every node reaches them (--set runtime.storage=s3://bucket/prefix, or a "
            "shared mount such as /mnt/efs/antray)"
        )
    if configured or location.storage.is_remote:
        # (The default, <run dir>/ray, is made with the run directory, after all checks.)
        probe_storage(location.storage)


def check_data_on_cluster(cfg: Any, root: str, *, timeout_s: float) -> None:
    """Run :func:`check_data` as a Ray task on a node like the Train workers' (GPU nodes
    get their data at boot; the driver's node may hold none)."""
    import ray

    from orchestrator.waiting import wait_for_refs

    rt = cfg.runtime
    task = ray.remote(check_data).options(
        num_cpus=min(rt.cpus_per_worker, 1.0), num_gpus=rt.gpus_per_worker, max_retries=0
    )
    ref = task.remote(cfg.to_dict(), root)
    try:
        wait_for_refs(
            {"the data check on a Train worker's node": ref},
            timeout_s=timeout_s,
            demand={"CPU": min(rt.cpus_per_worker, 1.0), "GPU": rt.gpus_per_worker},
        )
        ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None) or exc
        first = (str(cause).splitlines() or [type(cause).__name__])[0]
        raise UserError(f"on a worker node: {first}") from None
