"""Generator restarts and the replay store as Ray actors, off the critical path.

``GeneratorTrainer`` trains a fresh generator from scratch against the classifier
weights rank 0 publishes (an ObjectRef); ``ReplayStoreActor`` owns the generator
snapshots in the object store (it calls ``ray.put`` itself, so the refs outlive
whoever produced them; RAY_NOTES.md section 8). Both are plain classes, wrapped with
``ray.remote`` where they are launched. ``RayGeneratorService`` is the worker side:
it implements trainers' ``GeneratorService`` without ever blocking a step.
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
from trainers.data import IMAGE_SPECS, load_dataset, resolve_data_root
from trainers.generator_service import ReplayCache, cpu_state
from trainers.models import create_model


class ReplayStoreActor:
    """Bounded snapshot store; snapshots live in the object store as refs it owns."""

    def __init__(self, capacity: int, eviction: str = "fifo", seed: int = 0) -> None:
        # A restarted actor is a new incarnation with an empty store (its objects died
        # with the old process); workers notice and rank 0 refills it from a checkpoint.
        self.incarnation = uuid.uuid4().hex
        self.store = ReplayStore(
            capacity,
            eviction=eviction,
            seed=seed,
            put=ray.put,
            get=ray.get,  # type: ignore[arg-type]
        )

    def add(self, snapshot: Snapshot) -> int:
        return self.store.add(snapshot)

    def index(self) -> tuple[str, int, list[tuple[int, Any]]]:
        """(incarnation, version, [(id, ObjectRef)]): refs travel, values stay put."""
        return self.incarnation, self.store.version, self.store.entries()

    def pid(self) -> int:
        return os.getpid()

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

    def load_state(self, state: dict[str, Any]) -> int:
        self.store.load_state(state)
        return len(self.store)


class GeneratorTrainer:
    """Trains fresh generators against published classifier weights (SPEC: Adam 5e-4,
    1000 iterations), on its own resources and its own copy of the training data."""

    def __init__(self, config: dict[str, Any], data_root: str | None, threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.cfg = config
        data, model, ant = config["data"], config["model"], config["ant"]
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        root = resolve_data_root(data_root or data["root"])
        dataset = load_dataset(data["dataset"], root, train=True, limit=data["limit_train"])
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
            self.classifier.eval(),
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


class RayGeneratorService:
    """Worker side of restarts and replay. Rank 0 requests restarts and snapshots;
    every rank samples replay generators from a local cache of the store."""

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
    ) -> None:
        self.refresh_every = refresh_every  # steps between asking the store for its index
        self.trainer, self.store, self.rank, self.seed = trainer, store, rank, seed
        self.cache = ReplayCache(kind, channels, device, seed + rank)
        self.pending: ray.ObjectRef | None = None
        self.pending_since = 0.0
        self.steps = 0
        self.known_version = -1
        self.known_incarnation: str | None = None
        self.last_saved: dict[str, Any] | None = None  # replay state of the last checkpoint
        self.store_recoveries = 0
        self.restarts_requested = 0
        self.restarts_adopted = 0
        self.restarts_skipped = 0  # requested while one was still running
        self.restart_failures = 0
        self.steps_while_restarting = 0
        self.longest_poll_s = 0.0

    def request_restart(self, classifier: nn.Module, *, step: int) -> None:
        if self.pending is not None:
            self.restarts_skipped += 1  # never queue: the running one is fresh enough
            return
        self.restarts_requested += 1
        weights = ray.put(cpu_state(classifier))
        self.pending = self.trainer.train.remote(weights, self.seed + 1000 + step)
        self.pending_since = time.perf_counter()

    def poll_restart(self) -> Snapshot | None:
        if self.pending is None:
            return None
        t0 = time.perf_counter()
        ready, _ = ray.wait([self.pending], timeout=0)
        self.longest_poll_s = max(self.longest_poll_s, time.perf_counter() - t0)
        if not ready:
            self.steps_while_restarting += 1
            return None
        ref, self.pending = self.pending, None
        try:
            state = ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:
            # A lost actor costs a restart, never the run: keep the current generator.
            self.restart_failures += 1
            print(f"generator restart failed ({type(exc).__name__}); keeping the current one")
            return None
        self.restarts_adopted += 1
        return state

    def add_snapshot(self, generator: nn.Module) -> None:
        self.store.add.remote(cpu_state(generator))  # fire and forget: no step waits

    def sample_replay(self, k: int) -> list[NoiseGenerator]:
        if self.steps % self.refresh_every == 0:
            self._refresh()
        self.steps += 1
        return self.cache.sample(k)

    def _refresh(self) -> None:
        try:
            incarnation, version, entries = ray.get(self.store.index.remote(), timeout=30)
        except (ray.exceptions.RayError, OSError):
            return  # store briefly unavailable (restarting): keep the cached history
        if self.known_incarnation not in (None, incarnation):
            self._recover_store(entries)
            try:
                incarnation, version, entries = ray.get(self.store.index.remote(), timeout=30)
            except (ray.exceptions.RayError, OSError):
                return
        self.known_incarnation = incarnation
        if version == self.known_version:
            return
        refs = dict(entries)
        self.cache.sync(refs, lambda ids: ray.get([refs[i] for i in ids]))
        self.known_version = version

    def _recover_store(self, entries: list) -> None:
        """The store restarted empty: rank 0 refills it from the last checkpoint's replay
        state, or else from the snapshots this worker still holds in its cache."""
        if self.rank != 0 or entries:
            return
        state = self.last_saved
        if state is None and self.cache.modules:
            state = {
                "items": [(i, cpu_state(m)) for i, m in sorted(self.cache.modules.items())],
                "next_id": max(self.cache.modules) + 1,
                "version": 0,
                "rng": None,
            }
        if state is not None:
            ray.get(self.store.load_state.remote(state), timeout=60)
            self.store_recoveries += 1
            print(f"replay store restarted; refilled {len(state['items'])} snapshots")

    def replay_size(self) -> int:
        if self.rank == 0:  # the store itself (after this rank's own queued snapshots)
            try:
                return int(ray.get(self.store.size.remote(), timeout=30))
            except (ray.exceptions.RayError, OSError):
                pass
        return len(self.cache.modules)

    def state(self) -> dict[str, Any]:
        self.last_saved = ray.get(self.store.state.remote())
        return {
            "replay": self.last_saved,
            "requested": self.restarts_requested,
            "adopted": self.restarts_adopted,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.last_saved = state["replay"]
        if self.rank == 0:
            ray.get(self.store.load_state.remote(state["replay"]))
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
            "store_recoveries": float(self.store_recoveries),
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
