"""The worker side of restarts and replay on Ray: trainers' ``GeneratorService`` over the
generator actor (``generator_actor.py``) and the replay store (``replay_actor.py``).

A step never waits for either: every remote result is polled with ``ray.wait(timeout=0)``
and picked up at a later step once it has arrived, and every call that can hang has a
deadline. ``RestartClient`` (rank 0) asks for fresh generators; ``ReplayFollower`` (every
rank) keeps a local cache of the store's snapshots; ``RayGeneratorService`` is the two
behind the one interface the training loop talks to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import ray
from torch import nn

from generators.networks import NoiseGenerator
from generators.replay import ReplayState, Snapshot
from trainers.generator_service import ReplayCache, cpu_state

Clock = Callable[[], float]


class Calls(Protocol):
    def ready(self, refs: list[Any]) -> bool: ...

    def get(self, refs: list[Any]) -> list[Any]: ...


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


@dataclass(frozen=True)
class Sent:
    """A remote call on its way: its ObjectRef and when it went out."""

    ref: Any
    at: float


@dataclass(frozen=True)
class SnapshotFetch:
    """The snapshots an index answer named that this worker lacks, on their way."""

    version: int  # the store's version in that answer
    refs: dict[int, Any]  # every snapshot the answer named: id -> ObjectRef
    ids: list[int]  # the missing ones, in the order of ``objects``
    objects: list[Any]
    since: float


def empty_history() -> ReplayState:
    return {"items": [], "next_id": 0, "version": 0, "rng": None}


class RestartClient:
    """Rank 0's side of restarts: one fresh generator at a time, asked of the generator
    actor against the current classifier and picked up once it has finished."""

    RESTART_TIMEOUT_S = 3600.0  # a restart that never finishes frees the slot

    def __init__(
        self, trainer: Any, *, seed: int, calls: Calls = RayCalls, clock: Clock = time.monotonic
    ) -> None:
        self.trainer, self.seed, self.calls, self.clock = trainer, seed, calls, clock
        self.running: Sent | None = None
        self.requested = 0
        self.adopted = 0
        self.skipped = 0  # requested while one was still running
        self.failures = 0
        self.steps_waited = 0  # polls that found the running one unfinished
        self.longest_poll_s = 0.0

    def request(self, classifier: nn.Module, *, step: int) -> None:
        if self.running is not None:
            if self.clock() - self.running.at < self.RESTART_TIMEOUT_S:
                self.skipped += 1  # never queue: the running one is fresh enough
                return
            self.failures += 1  # it hung: give up on it
            self.running = None
        self.requested += 1
        weights = ray.put(cpu_state(classifier))
        self.running = Sent(
            self.trainer.train.remote(weights, self.seed + 1000 + step), self.clock()
        )

    def poll(self) -> Snapshot | None:
        if self.running is None:
            return None
        t0 = time.perf_counter()
        ready = self.calls.ready([self.running.ref])
        self.longest_poll_s = max(self.longest_poll_s, time.perf_counter() - t0)
        if not ready:
            self.steps_waited += 1
            return None
        ref, self.running = self.running.ref, None
        try:
            (state,) = self.calls.get([ref])
        except REMOTE_ERRORS as exc:
            # A lost actor costs a restart, never the run: keep the current generator.
            self.failures += 1
            print(f"generator restart failed ({type(exc).__name__}); keeping the current one")
            return None
        self.adopted += 1
        return state

    def stats(self) -> dict[str, float]:
        return {
            "restarts_requested": float(self.requested),
            "restarts_skipped": float(self.skipped),
            "restart_failures": float(self.failures),
            "steps_while_restarting": float(self.steps_waited),
            "longest_restart_poll_s": self.longest_poll_s,
        }


class ReplayFollower:
    """This worker's copy of the replay store, followed in the background: every
    ``refresh_every`` samples an index request goes out; its answer, and then the
    snapshots it names, are picked up at later steps once they have arrived. Rank 0
    also writes snapshots and refills a store that restarted and lost its history."""

    INDEX_TIMEOUT_S = 60.0  # an index or snapshot fetch older than this is abandoned
    FETCH_TIMEOUT_S = 120.0
    CALL_TIMEOUT_S = 30.0  # blocking calls at epoch boundaries (checkpoint, resume)

    def __init__(
        self,
        store: Any,
        cache: ReplayCache,
        *,
        rank: int,
        refresh_every: int = 20,
        calls: Calls = RayCalls,
        clock: Clock = time.monotonic,
    ) -> None:
        self.store, self.cache, self.rank = store, cache, rank
        self.refresh_every = refresh_every  # samples between asking the store for its index
        self.calls, self.clock = calls, clock
        self.index_request: Sent | None = None
        self.fetch: SnapshotFetch | None = None
        self.samples = 0
        self.known_version = -1
        self.known_incarnation: str | None = None
        self.needs_refill = False  # rank 0: the store may lack history we hold
        self.last_saved: ReplayState | None = None  # the replay state of the last checkpoint
        self.store_recoveries = 0
        self.refresh_failures = 0
        self.longest_sample_s = 0.0

    def add(self, generator: nn.Module) -> None:
        self.store.add.remote(cpu_state(generator))  # fire and forget: no step waits

    def sample(self, k: int) -> list[NoiseGenerator]:
        t0 = time.perf_counter()
        if self.samples % self.refresh_every == 0 and self.index_request is None:
            self._request_index()
        self.samples += 1
        self._advance()
        self.longest_sample_s = max(self.longest_sample_s, time.perf_counter() - t0)
        return self.cache.sample(k)

    def _request_index(self) -> None:
        try:
            self.index_request = Sent(self.store.index.remote(), self.clock())
        except REMOTE_ERRORS:
            self.refresh_failures += 1

    def _advance(self) -> None:
        """Pick up whatever has arrived: an index answer, then the snapshots it names."""
        if self.fetch is not None:
            self._advance_fetch(self.fetch)
        request = self.index_request
        if request is None:
            return
        if not self.calls.ready([request.ref]):
            if self.clock() - request.at > self.INDEX_TIMEOUT_S:
                self.index_request = None  # store stuck or gone: ask again next interval
                self.refresh_failures += 1
            return
        self.index_request = None
        try:
            (answer,) = self.calls.get([request.ref])
        except REMOTE_ERRORS:
            self.refresh_failures += 1  # restarting: keep the cached history
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
        self.fetch = SnapshotFetch(version, refs, missing, [refs[i] for i in missing], self.clock())
        self._advance_fetch(self.fetch)

    def _advance_fetch(self, fetch: SnapshotFetch) -> None:
        if not self.calls.ready(fetch.objects):
            if self.clock() - fetch.since > self.FETCH_TIMEOUT_S:
                self.fetch = None
                self.refresh_failures += 1
                self._request_index()
            return
        self.fetch = None
        try:
            states = self.calls.get(fetch.objects)
        except REMOTE_ERRORS:
            # The owner of a snapshot died (the store restarted): a fresh index names
            # what exists now. Costs a refresh, not the worker.
            self.refresh_failures += 1
            self._request_index()
            return
        for snap_id, state in zip(fetch.ids, states, strict=True):
            self.cache.add(snap_id, state)
        self.cache.retain(fetch.refs)
        self.known_version = fetch.version

    def _history(self) -> ReplayState | None:
        """The newer of the last checkpoint's replay state and this worker's cache (by
        the newest snapshot id each holds)."""
        saved = self.last_saved
        cached: ReplayState | None = None
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
        state = self._history() or empty_history()
        try:
            self.store.refill.remote(state)  # ordered before the next index request
        except REMOTE_ERRORS:
            self.needs_refill = True
            return
        self.needs_refill = False
        self.store_recoveries += 1
        print(f"replay store restarted; refilling {len(state['items'])} snapshots", flush=True)

    def size(self) -> int:
        if self.rank == 0:  # the store itself (after this rank's own queued snapshots)
            try:
                return int(ray.get(self.store.size.remote(), timeout=self.CALL_TIMEOUT_S))
            except REMOTE_ERRORS:
                pass
        return len(self.cache.modules)

    def state(self) -> ReplayState:
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
            replay = self._history() or empty_history()
        self.last_saved = replay
        return replay

    def load_state(self, replay: ReplayState) -> None:
        self.last_saved = replay
        if self.rank == 0:
            try:
                ray.get(self.store.load_state.remote(replay), timeout=self.CALL_TIMEOUT_S)
            except REMOTE_ERRORS:
                self.needs_refill = True  # refilled at the first index answer instead
        self.samples = 0  # refresh on the next sample

    def stats(self) -> dict[str, float]:
        return {
            "longest_replay_s": self.longest_sample_s,
            "store_recoveries": float(self.store_recoveries),
            "replay_refresh_failures": float(self.refresh_failures),
        }


class RayGeneratorService:
    """trainers' ``GeneratorService`` on Ray: restarts from ``restarts`` (rank 0),
    replay from ``replay`` (every rank)."""

    def __init__(self, restarts: RestartClient, replay: ReplayFollower) -> None:
        self.restarts, self.replay = restarts, replay

    @property
    def restarts_requested(self) -> int:
        return self.restarts.requested

    @property
    def restarts_adopted(self) -> int:
        return self.restarts.adopted

    @restarts_adopted.setter
    def restarts_adopted(self, value: int) -> None:  # other ranks count rank 0's adoptions
        self.restarts.adopted = value

    def request_restart(self, classifier: nn.Module, *, step: int) -> None:
        self.restarts.request(classifier, step=step)

    def poll_restart(self) -> Snapshot | None:
        return self.restarts.poll()

    def add_snapshot(self, generator: nn.Module) -> None:
        self.replay.add(generator)

    def sample_replay(self, k: int) -> list[NoiseGenerator]:
        return self.replay.sample(k)

    def replay_size(self) -> int:
        return self.replay.size()

    def stats(self) -> dict[str, float]:
        return {**self.restarts.stats(), **self.replay.stats()}

    def state(self) -> dict[str, Any]:
        return {
            "replay": self.replay.state(),
            "requested": self.restarts.requested,
            "adopted": self.restarts.adopted,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.replay.load_state(state["replay"])
        self.restarts.requested = state.get("requested", 0)
        self.restarts.adopted = state.get("adopted", 0)

    def close(self) -> None:
        pass
