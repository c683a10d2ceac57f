"""``antray train`` on Ray: a TorchTrainer for data-parallel classifier updates, a
GeneratorTrainer actor for restarts and a named ReplayStore actor for replay.

Resume follows Train V2: rerun the same ``RunConfig(name, storage_path)`` and the
workers get the latest checkpoint from ``ray.train.get_checkpoint()``. The storage is
whatever ``runtime.storage`` names (local, a shared mount, S3, GCS): see storage.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig, validate_config
from orchestrator.ray_instance import (
    OUTSIDE_ANY_PLACEMENT_GROUP,
    ensure_ray,
    head_options,
)
from orchestrator.storage import RunLocation
from orchestrator.tracking import TrackingTarget


def _quiet_report_log() -> None:
    """Train V2 logs every report's whole metrics dict at INFO, under a logger named after
    its source file; our epoch line says enough. Cosmetic, so a moved module is ignored."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Runs on every Ray Train worker: the same loop as single-process training."""
    import torch

    from orchestrator.data_sync import is_uri, local_copy
    from orchestrator.generator_client import RayGeneratorService, ReplayFollower, RestartClient
    from orchestrator.suite_validation import make_suite_validation
    from trainers.data import IMAGE_SPECS
    from trainers.generator_service import ReplayCache
    from trainers.loop import run_worker
    from trainers.ray_env import RayTrainEnv

    _quiet_report_log()
    cfg = validate_config(loop_config["config"], source="<ray worker>")
    env = RayTrainEnv(stop_flag=loop_config["stop_flag"], device=cfg.runtime.device)

    def make_service(*, cfg, loader, precision, rank: int) -> RayGeneratorService:
        seed, channels = cfg.experiment.seed, IMAGE_SPECS[cfg.data.dataset].channels
        cache = ReplayCache(cfg.ant.generator, channels, precision.device, seed + rank)
        return RayGeneratorService(
            RestartClient(loop_config["generator_trainer"], seed=seed),
            ReplayFollower(
                loop_config["replay_store"],
                cache,
                rank=rank,
                refresh_every=cfg.ant.replay_refresh_every_steps,
            ),
        )

    if cfg.runtime.torch_threads:
        torch.set_num_threads(cfg.runtime.torch_threads)
    data_root = loop_config["data_root"]
    if is_uri(data_root):  # once per node, shared by the workers on it
        data_root = local_copy(data_root, cfg.runtime.storage_endpoint)
    return run_worker(
        cfg,
        env,
        make_service=make_service,
        data_root=data_root,
        make_suite_validation=make_suite_validation,
    )


def _report_callback(target: TrackingTarget | None, epochs: int):
    from ray.train import UserCallback

    from trainers.progress import format_duration

    class EpochReport(UserCallback):
        """On the Train controller: print rank 0's epoch line and log it to MLflow."""

        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.reports = 0

        def after_report(self, run_context, metrics, checkpoint) -> None:
            m = metrics[0] if metrics else {}
            if not m or m.get("mid_epoch"):
                return  # a mid-epoch checkpoint (runtime.checkpoint_every_steps): no line
            elapsed = time.perf_counter() - self.start
            epoch = int(m.get("epoch", 0))
            self.reports += 1  # epochs run by this fit() (a resumed run starts later)
            eta = (epochs - epoch) * elapsed / self.reports
            print(
                f"[antray] epoch {epoch}/{epochs} "
                f"loss {m.get('train_loss', float('nan')):.4f} "
                f"val_clean {m.get('val_clean_acc', float('nan')):.4f} "
                f"{m.get('images_per_s', 0):.0f} img/s "
                f"elapsed {format_duration(elapsed)} ETA {format_duration(eta)}",
                flush=True,
            )
            if target is not None:
                from orchestrator.tracking import log_epoch

                try:
                    log_epoch(target, m)
                except Exception as exc:  # tracking trouble never stops training
                    print(f"[antray] MLflow logging failed: {type(exc).__name__}: {exc}")

    return EpochReport()


@dataclass(frozen=True)
class RunActors:
    """The actors one training uses beside its Train workers; killed after ``fit()``."""

    stop_flag: Any
    store: Any = None
    generator: Any = None

    def named(self) -> dict[str, Any]:
        out = {"the stop flag (head node)": self.stop_flag}
        if self.store is not None:
            out["the replay store (head node)"] = self.store
        if self.generator is not None:
            out["the generator actor"] = self.generator
        return {what: actor for what, actor in out.items()}

    def all(self) -> list[Any]:
        return list(self.named().values())


def build_trainer(
    cfg: ExperimentConfig,
    *,
    data_root: str | None,
    location: RunLocation,
    callbacks: list | None = None,
    generator_strategy: Any = OUTSIDE_ANY_PLACEMENT_GROUP,
) -> tuple[Any, RunActors]:
    """A TorchTrainer for ``cfg`` plus the actors it uses (generator trainer, replay
    store, stop flag). Shared by train and tune; Tune places the generator actor in its
    trial's placement group through ``generator_strategy``."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from orchestrator.data_sync import is_uri
    from orchestrator.generator_actor import GeneratorTrainer
    from orchestrator.replay_actor import ReplayStoreActor
    from orchestrator.stop_flag import StopFlag
    from trainers.data import resolve_data_root

    rt = cfg.runtime
    config = cfg.to_dict()
    if not rt.elastic:
        # A fixed worker group on an autoscaling cluster waits for nodes to boot: give it
        # the run's startup budget instead of Train's 60 s (Train hands the driver's value
        # to its controller). An elastic group starts only with workers whose resources
        # are there already, and a short timeout lets it re-decide its size soon after a
        # stale decision (a node just lost), so Train's default stays. A value the user
        # set is kept.
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(rt.startup_timeout_s))
    root = data_root or cfg.data.root
    if not is_uri(root):  # absolute: Ray workers chdir into their session directory
        root = str(resolve_data_root(root).path)
    on_head = head_options(rt.head_resource)

    store = generator = None
    if cfg.noise.mode == "ant":
        # Non-detached named actors: they die with this driver, and a resumed run
        # refills the store from the checkpoint. max_restarts: a lost actor comes back.
        store = (
            ray.remote(ReplayStoreActor)
            .options(
                name=f"antray-replay-{location.name}-{uuid.uuid4().hex[:8]}",
                num_cpus=0,
                max_restarts=-1,
                max_task_retries=-1,
                **on_head,
            )
            .remote(cfg.ant.replay_capacity, cfg.ant.replay_eviction, cfg.experiment.seed)
        )
        generator = (
            ray.remote(GeneratorTrainer)
            .options(
                num_cpus=rt.generator_actor_cpus,
                num_gpus=rt.generator_actor_gpus,
                max_restarts=-1,
                max_task_retries=1,
                scheduling_strategy=generator_strategy,
            )
            .remote(config, root, rt.torch_threads)
        )
    stop_flag = ray.remote(StopFlag).options(num_cpus=0, max_restarts=-1, **on_head).remote()
    resources = {"CPU": rt.cpus_per_worker}
    if rt.gpus_per_worker > 0:
        resources["GPU"] = rt.gpus_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config,
            "data_root": root,
            "replay_store": store,
            "generator_trainer": generator,
            "stop_flag": stop_flag,
        },
        torch_config=TorchConfig(backend=None if rt.dist_backend == "auto" else rt.dist_backend),
        scaling_config=ScalingConfig(
            # [min, max]: Train V2's elastic group, sized to what the cluster holds at
            # every (re)start; each worker's share of the batch follows (trainers/run.py).
            num_workers=rt.worker_range if rt.elastic else rt.num_workers,
            use_gpu=rt.gpus_per_worker > 0,
            resources_per_worker=resources,
            elastic_resize_monitor_interval_s=rt.elastic_resize_interval_s,
        ),
        run_config=RunConfig(
            name=location.name,
            **location.storage.run_config_args(),
            checkpoint_config=CheckpointConfig(num_to_keep=rt.checkpoints_to_keep),
            failure_config=FailureConfig(max_failures=rt.max_failures),
            callbacks=callbacks or [],
        ),
    )
    return trainer, RunActors(stop_flag=stop_flag, store=store, generator=generator)


def fit_in_thread(trainer: Any) -> Any:
    """``trainer.fit()`` off the main thread: Train V2 then leaves SIGINT to us (it installs
    its own abort-the-run handler only on the main thread), so the first Ctrl-C can stop
    the workers cleanly at a step boundary with a checkpoint instead."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:  # re-raised on the calling thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="antray-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)  # short waits keep the main thread responsive to signals
    if "error" in box:
        raise box["error"]
    return box["result"]


def wait_until_ready(actors: RunActors, cfg: ExperimentConfig) -> None:
    """Let the actors finish constructing (imports, loading data, and on a cluster the
    node that hosts them booting) before training starts, so the first restart is not
    delayed by the generator actor's start-up."""
    import ray

    from orchestrator.waiting import wait_for_refs

    rt = cfg.runtime
    named = {what: actor.ping.remote() for what, actor in actors.named().items()}
    demand = None
    if actors.generator is not None:
        demand = {"CPU": rt.generator_actor_cpus, "GPU": rt.generator_actor_gpus}
    wait_for_refs(named, timeout_s=rt.startup_timeout_s, demand=demand)
    ray.get(list(named.values()))


def kill_actors(actors: RunActors) -> None:
    import ray

    for actor in actors.all():
        ray.kill(actor)


def train_ray(
    cfg: ExperimentConfig,
    run_dir: Path,
    *,
    location: RunLocation,
    data_root: str | None,
    address: str | None,
    tracking: TrackingTarget | None = None,
    num_cpus: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run the TorchTrainer; returns (final metrics, final checkpoint state).

    Resuming needs nothing here: the same ``location`` means the same
    ``RunConfig(name, storage_path)``, and Train V2 hands workers its latest checkpoint."""
    from orchestrator.signals import stop_on_signals
    from trainers.checkpoint_format import load_state

    ensure_ray(address, num_cpus=num_cpus, head_resource=cfg.runtime.head_resource)
    trainer, actors = build_trainer(
        cfg,
        data_root=data_root,
        location=location,
        callbacks=[_report_callback(tracking, cfg.optim.epochs)],
    )
    try:
        wait_until_ready(actors, cfg)
        with stop_on_signals(lambda: actors.stop_flag.set.remote()):
            result = fit_in_thread(trainer)
    finally:
        kill_actors(actors)
    state = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as directory:
            state = load_state(Path(directory))
    metrics = result.return_value or (state or {}).get("metrics") or {}
    return dict(metrics), state
