"""``antray train`` on Ray: a TorchTrainer for data-parallel classifier updates, a
GeneratorTrainer actor for restarts and a named ReplayStore actor for replay.

Resume follows Train V2: rerun the same ``RunConfig(name, storage_path)`` and the
workers get the latest checkpoint from ``ray.train.get_checkpoint()``. The storage is
whatever ``runtime.storage`` names (local, a shared mount, S3, GCS): see storage.py.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig, validate_config
from orchestrator.errors import UserError
from orchestrator.preflight import HEAD_RESOURCE_AMOUNT, HEAD_SLIVER
from orchestrator.storage import RunLocation
from orchestrator.tracking import TrackingTarget

# Inside a Tune trial, actors would otherwise be captured by the trial's placement group.
OUTSIDE_ANY_PLACEMENT_GROUP = "DEFAULT"
DEFAULT_HEAD_RESOURCE = "antray_head"

PROBE_TIMEOUT_S = 5.0
STATE_API_TIMEOUT_S = 60.0


def probe_address(address: str) -> None:
    """Fail in seconds, not minutes, when ``host:port`` or ``ray://host:port`` does not
    answer (``ray.init`` retries an unreachable GCS for a long time)."""
    if address == "auto":
        return  # ray.init finds the local cluster file or raises at once
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def joins_cluster(address: str | None) -> bool:
    """True when antray connects to a running Ray (``--address``, or ``RAY_ADDRESS`` as
    set for a job started with ``ray job submit``) instead of starting its own."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


def ensure_ray(
    address: str | None,
    *,
    num_cpus: int | None = None,
    head_resource: str = DEFAULT_HEAD_RESOURCE,
    wait_state_api: bool = True,
) -> None:
    """Start a local Ray (the machine's CPUs) or join ``address`` (auto, ray://host:port).

    ``wait_state_api``: wait until the State API answers (``wait_for_state_api``), which
    Train needs to free a dead run's placement groups; work without a Train run (evaluation
    tasks) skips the wait.

    Token authentication: a cluster uses whatever it was started with, and Ray itself
    finds the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)
    when ``RAY_AUTH_MODE=token``; antray never touches either. Only the private local
    instance antray starts for itself runs without (unless RAY_AUTH_MODE says otherwise)."""
    import ray

    if address:
        probe_address(address)
    if ray.is_initialized():
        return
    # Train V2 re-routes worker print() through a logger and, because Ray wraps stdout,
    # also tees it: every progress line would reach the driver twice.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    joining = joins_cluster(address)
    try:
        if joining:
            ray.init(address=address, namespace="antray", log_to_driver=True)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # One machine: no node of it can be drained or preempted, so Train V2's
            # preemption watcher (an actor polling the drain state every 5 s, ~0.6 % of a
            # core by experiments/mnist/ray_background_cpu.py) has nothing to watch. Set in this
            # instance's job environment, not in os.environ: Train copies the driver's
            # os.environ to every later run, which may be on a cluster. A value the user
            # set is left to Train.
            watcher = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
            env_vars = {} if watcher in os.environ else {watcher: "0"}
            ray.init(
                # "local": always a new instance. Without it ray.init() joins whatever
                # /tmp/ray/ray_current_cluster names (another antray run, a test cluster,
                # or a stale address), sharing or failing on someone else's Ray.
                address="local",
                num_cpus=num_cpus,
                namespace="antray",
                log_to_driver=True,
                # This one node is the head: the store, stop flag and trial drivers
                # find the marker they ask for on a cluster.
                resources={head_resource: HEAD_RESOURCE_AMOUNT},
                runtime_env={"env_vars": env_vars} if env_vars else None,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        raise UserError(f"cannot reach Ray at {where}: {str(exc).splitlines()[0]}") from None
    if wait_state_api and not (address or "").startswith("ray://"):  # a client has none
        wait_for_state_api()


def wait_for_state_api(timeout_s: float = STATE_API_TIMEOUT_S) -> bool:
    """Wait until Ray's State API answers (the dashboard has put its address in the GCS);
    False, with a warning, when it does not within ``timeout_s`` or Ray has no dashboard.

    Train V2's placement-group cleaner asks the State API whether a run's controller is
    alive, and frees the run's worker placement group once it is not (a Tune trial that
    ASHA stopped, a driver that died). In Ray 2.60 the cleaner's monitor thread dies on the
    first ``ConnectionError`` ("Could not read 'dashboard' from GCS", raised after 40 s
    without a dashboard), and from then on nothing frees those placement groups: the next
    trial waits for their GPUs for ever. A dashboard that is still starting is what makes
    the first query fail, so runs start only once it answers."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (what Ray needs to run a dashboard)
    except ImportError:
        _warn_once(
            "[antray] Ray runs without its dashboard (install ray[default]): Train cannot "
            "free the resources of a run whose controller dies, e.g. a trial Tune stopped"
        )
        return False
    from ray.util.state import list_nodes

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            list_nodes(limit=1, timeout=5)
            return True
        except Exception as exc:  # ConnectionError while it starts, RayStateApiException
            if time.monotonic() >= deadline:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                _warn_once(
                    f"[antray] Ray's State API did not answer within {timeout_s:.0f} s "
                    f"({first}): resources of a stopped trial or a dead run may stay reserved"
                )
                return False
            time.sleep(0.5)


def head_options(head_resource: str) -> dict[str, Any]:
    """Actor options that keep an actor on the head node, so that a spot worker's loss
    never takes the replay store, the stop flag or a trial driver with it."""
    import ray

    if ray.cluster_resources().get(head_resource, 0) > 0:
        return {
            "resources": {head_resource: HEAD_SLIVER},
            "scheduling_strategy": OUTSIDE_ANY_PLACEMENT_GROUP,
        }
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    _warn_once(
        f"[antray] the cluster has no {head_resource!r} resource (see docs/cluster.md); "
        "the replay store and stop flag stay on the driver's node"
    )
    return {
        "scheduling_strategy": NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        )
    }


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr, flush=True)


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
    from orchestrator.generator_actors import RayGeneratorService
    from orchestrator.suite_validation import make_suite_validation
    from trainers.data import IMAGE_SPECS
    from trainers.loop import run_worker
    from trainers.ray_env import RayTrainEnv

    _quiet_report_log()
    cfg = validate_config(loop_config["config"], source="<ray worker>")
    env = RayTrainEnv(stop_flag=loop_config.get("stop_flag"), device=cfg.runtime.device)

    def make_service(*, cfg, loader, precision, rank: int) -> RayGeneratorService:
        return RayGeneratorService(
            trainer=loop_config["generator_trainer"],
            store=loop_config["replay_store"],
            kind=cfg.ant.generator,
            channels=IMAGE_SPECS[cfg.data.dataset].channels,
            device=precision.device,
            seed=cfg.experiment.seed,
            rank=rank,
            refresh_every=cfg.ant.replay_refresh_every_steps,
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
    from orchestrator.generator_actors import GeneratorTrainer, ReplayStoreActor, StopFlag
    from trainers.data import resolve_data_root

    rt = cfg.runtime
    config = cfg.to_dict()
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
            num_workers=rt.num_workers,
            use_gpu=rt.gpus_per_worker > 0,
            resources_per_worker=resources,
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
    from orchestrator.signals import stop_on_sigint
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
        with stop_on_sigint(lambda: actors.stop_flag.set.remote()):
            result = fit_in_thread(trainer)
    finally:
        kill_actors(actors)
    state = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as directory:
            state = load_state(Path(directory))
    metrics = result.return_value or (state or {}).get("metrics") or {}
    return dict(metrics), state
