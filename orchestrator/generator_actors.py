"""Generator restarts and the replay store as Ray actors, off the critical path.

``GeneratorTrainer`` trains a fresh generator from scratch against the classifier
weights rank 0 publishes (an ObjectRef); ``ReplayStoreActor`` owns the generator
snapshots in the object store (it calls ``ray.put`` itself: the process that puts an
object owns it, so the refs outlive whoever produced them). Both are plain classes,
wrapped with ``ray.remote`` where they are launched. ``RayGeneratorService`` is the worker side:
it implements trainers' ``GeneratorService`` and never blocks a step: every remote
result is polled with ``ray.wait(timeout=0)`` and every call that can hang has a
deadline.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import ray
import torch
from torch import nn

from generators.networks import NoiseGenerator
from generators.replay import ReplayStore, Snapshot
from generators.training import train_generator_from_scratch
from orchestrator.data_sync import is_uri, local_copy
from trainers.data import IMAGE_SPECS, load_split, resolve_data_root
from trainers.generator_service import ReplayCache, cpu_state
from trainers.models import create_model


class ReplayStoreActor:
    """Bounded snapshot store; snapshots live in the object store as refs it owns."""

    def __init__(self, capacity: int, eviction: str = "fifo", seed: int = 0) -> None:
        # A restarted actor is a new incarnation with an empty store (its objects died
        # with the old process); workers notice and rank 0 refills it.
        self.incarnation = uuid.uuid4().hex
        self.awaiting_refill = _restarted()
        self.store = ReplayStore(
            capacity,
            eviction=eviction,
            seed=seed,
            put=ray.put,
            get=ray.get,  # type: ignore[arg-type]
        )

    def add(self, snapshot: Snapshot) -> int:
        return self.store.add(snapshot)

    def index(self) -> tuple[str, int, list[tuple[int, Any]], bool]:
        """(incarnation, version, [(id, ObjectRef)], awaiting refill): refs travel,
        values stay put."""
        return self.incarnation, self.store.version, self.store.entries(), self.awaiting_refill

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def sample(self, k: int) -> list[tuple[int, Any]]:
        """Up to ``k`` (id, ObjectRef) pairs. Workers prefer ``index()`` plus a local cache,
        which fetches each snapshot once instead of once per step."""
        return self.store.sample(k)

    def size(self) -> int:
        return len(self.store)

    def ping(self) -> int:
        return len(self.store)

    def state(self) -> dict[str, Any]:
        return self.store.state()

    def checkpoint_state(self) -> tuple[bool, dict[str, Any]]:
        """(complete, state): a store that restarted and is not yet refilled holds only
        part of the history, and the worker then checkpoints what it knows instead."""
        return not self.awaiting_refill, self.store.state()

    def load_state(self, state: dict[str, Any]) -> int:
        self.store.load_state(state)
        self.awaiting_refill = False
        return len(self.store)

    def refill(self, state: dict[str, Any]) -> int:
        """Put back history this store lacks. After a restart its ids began again at 0:
        what arrived since is renumbered after the history (it is newer). Otherwise ids
        agree with the worker's, and the two are merged by id."""
        current = self.store.state()
        if self.awaiting_refill:
            base = state["next_id"]
            items = list(state["items"]) + [
                (base + i, value) for i, (_, value) in enumerate(current["items"])
            ]
            next_id = base + len(current["items"])
        else:
            items = sorted({**dict(state["items"]), **dict(current["items"])}.items())
            next_id = max(state["next_id"], current["next_id"])
        self.store.load_state(
            {
                "items": items,
                "next_id": next_id,
                "version": max(state.get("version", 0), self.store.version),
                "rng": state.get("rng") or current["rng"],
            }
        )
        self.awaiting_refill = False
        return len(self.store)


def _restarted() -> bool:
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # outside an actor (unit tests): a first start
        return False


def actor_device() -> torch.device:
    """The GPU Ray assigned to this actor, else the CPU. Never a GPU it did not ask for:
    with ``num_gpus=0`` a CUDA device may still be visible on a GPU node, but it belongs
    to the Train worker that reserved it."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU
    return torch.device("cpu")


class GeneratorTrainer:
    """Trains fresh generators against published classifier weights (Adam 5e-4, 1000
    iterations: docs/METHOD.md, "Restarts"), on its own resources and its own copy of the
    training split."""

    def __init__(self, config: dict[str, Any], data_root: str | None, threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.cfg = config
        data, model, ant = config["data"], config["model"], config["ant"]
        self.device = actor_device()
        where = data_root or data["root"]
        if is_uri(where):  # an object store: this node's local copy
            where = local_copy(where, config["runtime"]["storage_endpoint"])
        root = resolve_data_root(where)
        # Training images only: the validation split judges the classifier and must
        # never shape the noise it is trained against.
        dataset = load_split(
            data["dataset"],
            root,
            "train",
            val_size=data.get("val_size"),
            split_seed=data.get("split_seed", 0),
            limit=data["limit_train"],
        )
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=data["batch_size"], shuffle=True, drop_last=True
        )
        self.classifier = create_model(model["name"], num_classes=model["num_classes"])
        self.kind, self.epsilon = ant["generator"], ant["epsilon"]
        self.iterations, self.lr = ant["restart_iterations"], ant["restart_lr"]
        self.channels = IMAGE_SPECS[data["dataset"]].channels
        self.trained = 0

    def train(self, classifier_state: Snapshot, seed: int) -> Snapshot:
        """A fresh generator's state_dict. ``classifier_state`` arrives resolved (Ray
        resolves top-level ObjectRef arguments of a task)."""
        self.classifier.load_state_dict(classifier_state)
        generator, _ = train_generator_from_scratch(
            self.classifier.to(self.device).eval(),
            self.loader,
            kind=self.kind,
            epsilon=self.epsilon,
            iterations=self.iterations,
            lr=self.lr,
            seed=seed,
            device=self.device,
        )
        self.trained += 1
        return cpu_state(generator)

    def ping(self) -> int:
        return self.trained

    def pid(self) -> int:
        return os.getpid()

    def placement(self) -> dict[str, Any]:
        """Where it runs and on what: node, Ray's GPU ids, the torch device it uses."""
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "device": str(self.device),
        }


class RayCalls:
    """The two things the worker side asks of Ray about a pending result; a seam so the
    never-block logic is unit-testable with fakes."""

    @staticmethod
    def ready(refs: list[Any]) -> bool:
        """All of ``refs`` finished (values or errors) and local; never waits."""
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return len(done) == len(refs)

    @staticmethod
    def get(refs: list[Any]) -> list[Any]:
        return ray.get(refs, timeout=0)


# Failures of these are what a lost or restarting actor/owner looks like.
REMOTE_ERRORS: tuple[type[BaseException], ...] = (ray.exceptions.RayError, OSError)


class RayGeneratorService:
    """Worker side of restarts and replay. Rank 0 requests restarts and snapshots;
    every rank samples replay generators from a local cache of the store.

    The cache follows the store in the background: every ``refresh_every`` steps an
    index request goes out; its answer, and then the snapshots it names, are picked up
    at later steps once they have arrived. A step never waits for the store."""

    INDEX_TIMEOUT_S = 60.0  # an index or snapshot fetch older than this is abandoned
    FETCH_TIMEOUT_S = 120.0
    RESTART_TIMEOUT_S = 3600.0  # a restart that never finishes frees the slot
    CALL_TIMEOUT_S = 30.0  # blocking calls at epoch boundaries (checkpoint, resume)

    def __init__(
        self,
        *,
        trainer: Any,
        store: Any,
        kind: str,
        channels: int,
        device: torch.device,
        seed: int,
        rank: int,
        refresh_every: int = 20,
        calls: Any = RayCalls,
        clock: Any = time.monotonic,
    ) -> None:
        self.refresh_every = refresh_every  # steps between asking the store for its index
        self.trainer, self.store, self.rank, self.seed = trainer, store, rank, seed
        self.calls, self.clock = calls, clock
        self.cache = ReplayCache(kind, channels, device, seed + rank)
        self.pending: Any = None  # a running restart
        self.pending_since = 0.0
        self.index_request: tuple[Any, float] | None = None  # (ref, sent at)
        self.fetch: dict[str, Any] | None = None  # snapshots on their way
        self.steps = 0
        self.known_version = -1
        self.known_incarnation: str | None = None
        self.needs_refill = False  # rank 0: the store may lack history we hold
        self.last_saved: dict[str, Any] | None = None  # replay state of the last checkpoint
        self.store_recoveries = 0
        self.replay_refresh_failures = 0
        self.restarts_requested = 0
        self.restarts_adopted = 0
        self.restarts_skipped = 0  # requested while one was still running
        self.restart_failures = 0
        self.steps_while_restarting = 0
        self.longest_poll_s = 0.0
        self.longest_replay_s = 0.0

    # --- restarts ------------------------------------------------------------------
    def request_restart(self, classifier: nn.Module, *, step: int) -> None:
        if self.pending is not None:
            if self.clock() - self.pending_since < self.RESTART_TIMEOUT_S:
                self.restarts_skipped += 1  # never queue: the running one is fresh enough
                return
            self.restart_failures += 1  # it hung: give up on it
            self.pending = None
        self.restarts_requested += 1
        weights = ray.put(cpu_state(classifier))
        self.pending = self.trainer.train.remote(weights, self.seed + 1000 + step)
        self.pending_since = self.clock()

    def poll_restart(self) -> Snapshot | None:
        if self.pending is None:
            return None
        t0 = time.perf_counter()
        ready = self.calls.ready([self.pending])
        self.longest_poll_s = max(self.longest_poll_s, time.perf_counter() - t0)
        if not ready:
            self.steps_while_restarting += 1
            return None
        ref, self.pending = self.pending, None
        try:
            (state,) = self.calls.get([ref])
        except REMOTE_ERRORS as exc:
            # A lost actor costs a restart, never the run: keep the current generator.
            self.restart_failures += 1
            print(f"generator restart failed ({type(exc).__name__}); keeping the current one")
            return None
        self.restarts_adopted += 1
        return state

    # --- replay --------------------------------------------------------------------
    def add_snapshot(self, generator: nn.Module) -> None:
        self.store.add.remote(cpu_state(generator))  # fire and forget: no step waits

    def sample_replay(self, k: int) -> list[NoiseGenerator]:
        t0 = time.perf_counter()
        if self.steps % self.refresh_every == 0 and self.index_request is None:
            self._request_index()
        self.steps += 1
        self._advance()
        self.longest_replay_s = max(self.longest_replay_s, time.perf_counter() - t0)
        return self.cache.sample(k)

    def _request_index(self) -> None:
        try:
            self.index_request = (self.store.index.remote(), self.clock())
        except REMOTE_ERRORS:
            self.replay_refresh_failures += 1

    def _advance(self) -> None:
        """Pick up whatever has arrived: an index answer, then the snapshots it names."""
        if self.fetch is not None:
            self._advance_fetch()
        if self.index_request is None:
            return
        ref, sent = self.index_request
        if not self.calls.ready([ref]):
            if self.clock() - sent > self.INDEX_TIMEOUT_S:
                self.index_request = None  # store stuck or gone: ask again next interval
                self.replay_refresh_failures += 1
            return
        self.index_request = None
        try:
            (answer,) = self.calls.get([ref])
        except REMOTE_ERRORS:
            self.replay_refresh_failures += 1  # restarting: keep the cached history
            return
        self._on_index(*answer)

    def _on_index(self, incarnation: str, version: int, entries: list, awaiting: bool) -> None:
        changed = self.known_incarnation not in (None, incarnation)
        if self.rank == 0 and (changed or awaiting or self.needs_refill):
            self._refill()
            self.known_incarnation = incarnation
            self._request_index()  # look again once the refill has landed
            return
        if awaiting:
            return  # the others keep their cache until rank 0 has refilled the store
        if changed:
            self.known_version = -1  # versions of another incarnation say nothing
        self.known_incarnation = incarnation
        if version == self.known_version or self.fetch is not None:
            return
        refs = dict(entries)
        missing = self.cache.missing(refs)
        if not missing:
            self.cache.retain(refs)
            self.known_version = version
            return
        self.fetch = {
            "version": version,
            "refs": refs,
            "ids": missing,
            "objects": [refs[i] for i in missing],
            "since": self.clock(),
        }
        self._advance_fetch()

    def _advance_fetch(self) -> None:
        fetch = self.fetch
        assert fetch is not None
        if not self.calls.ready(fetch["objects"]):
            if self.clock() - fetch["since"] > self.FETCH_TIMEOUT_S:
                self.fetch = None
                self.replay_refresh_failures += 1
                self._request_index()
            return
        self.fetch = None
        try:
            states = self.calls.get(fetch["objects"])
        except REMOTE_ERRORS:
            # The owner of a snapshot died (the store restarted): a fresh index names
            # what exists now. Costs a refresh, not the worker.
            self.replay_refresh_failures += 1
            self._request_index()
            return
        for snap_id, state in zip(fetch["ids"], states, strict=True):
            self.cache.add(snap_id, state)
        self.cache.retain(fetch["refs"])
        self.known_version = fetch["version"]

    def _history(self) -> dict[str, Any] | None:
        """The newer of the last checkpoint's replay state and this worker's cache (by
        the newest snapshot id each holds)."""
        saved = self.last_saved
        cached = None
        if self.cache.modules:
            cached = {
                "items": [(i, cpu_state(m)) for i, m in sorted(self.cache.modules.items())],
                "next_id": max(self.cache.modules) + 1,
                "version": 0,
                "rng": None,
            }
        if saved is None or not saved["items"]:
            return cached or saved
        if cached is None:
            return saved
        saved_newest = max(i for i, _ in saved["items"])
        if max(self.cache.modules) > saved_newest:
            cached["rng"], cached["version"] = saved.get("rng"), saved.get("version", 0)
            cached["next_id"] = max(cached["next_id"], saved["next_id"])
            return cached
        return saved

    def _refill(self) -> None:
        state = self._history() or {"items": [], "next_id": 0, "version": 0, "rng": None}
        try:
            self.store.refill.remote(state)  # ordered before the next index request
        except REMOTE_ERRORS:
            self.needs_refill = True
            return
        self.needs_refill = False
        self.store_recoveries += 1
        print(f"replay store restarted; refilling {len(state['items'])} snapshots", flush=True)

    def replay_size(self) -> int:
        if self.rank == 0:  # the store itself (after this rank's own queued snapshots)
            try:
                return int(ray.get(self.store.size.remote(), timeout=self.CALL_TIMEOUT_S))
            except REMOTE_ERRORS:
                pass
        return len(self.cache.modules)

    def state(self) -> dict[str, Any]:
        """Checkpoint content. A store that cannot answer in time, or lost its history
        and is not yet refilled, is replaced by what this worker knows."""
        replay = None
        try:
            complete, replay = ray.get(
                self.store.checkpoint_state.remote(), timeout=self.CALL_TIMEOUT_S
            )
            if not complete:
                replay = None
        except REMOTE_ERRORS:
            replay = None
        if replay is None:
            self.needs_refill = True
            replay = self._history() or {"items": [], "next_id": 0, "version": 0, "rng": None}
        self.last_saved = replay
        return {
            "replay": replay,
            "requested": self.restarts_requested,
            "adopted": self.restarts_adopted,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.last_saved = state["replay"]
        if self.rank == 0:
            try:
                ray.get(self.store.load_state.remote(state["replay"]), timeout=self.CALL_TIMEOUT_S)
            except REMOTE_ERRORS:
                self.needs_refill = True  # refilled at the first index answer instead
        self.restarts_requested = state.get("requested", 0)
        self.restarts_adopted = state.get("adopted", 0)
        self.steps = 0  # refresh on the next sample

    def stats(self) -> dict[str, float]:
        return {
            "restarts_requested": float(self.restarts_requested),
            "restarts_skipped": float(self.restarts_skipped),
            "restart_failures": float(self.restart_failures),
            "steps_while_restarting": float(self.steps_while_restarting),
            "longest_restart_poll_s": self.longest_poll_s,
            "longest_replay_s": self.longest_replay_s,
            "store_recoveries": float(self.store_recoveries),
            "replay_refresh_failures": float(self.replay_refresh_failures),
        }

    def close(self) -> None:
        pass


class StopFlag:
    """Set by the driver on Ctrl-C; rank 0 polls it every few steps."""

    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag

    def ping(self) -> bool:
        return self.flag
