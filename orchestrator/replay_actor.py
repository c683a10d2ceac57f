"""The replay store as a Ray actor (docs/METHOD.md, "Experience replay").

``ReplayStoreActor`` owns the generator snapshots in the object store: it calls ``ray.put``
itself, and the process that puts an object owns it, so the refs outlive whoever produced
them. A plain class, wrapped with ``ray.remote`` where it is launched (``ray_runner.py``);
the workers follow it through ``generator_client.ReplayFollower``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import ray

from generators.replay import ReplayState, ReplayStore, Snapshot


class ReplayStoreActor:
    """Bounded snapshot store; snapshots live in the object store as refs it owns."""

    def __init__(self, capacity: int, eviction: str = "fifo", seed: int = 0) -> None:
        # A restarted actor is a new incarnation with an empty store (its objects died
        # with the old process); workers notice and rank 0 refills it.
        self.incarnation = uuid.uuid4().hex
        self.awaiting_refill = _restarted()
        self.store = ReplayStore(
            capacity,
            eviction=eviction,  # type: ignore[arg-type]
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

    def size(self) -> int:
        return len(self.store)

    def ping(self) -> int:
        return len(self.store)

    def checkpoint_state(self) -> tuple[bool, ReplayState]:
        """(complete, state): a store that restarted and is not yet refilled holds only
        part of the history, and the worker then checkpoints what it knows instead."""
        return not self.awaiting_refill, self.store.state()

    def load_state(self, state: ReplayState) -> int:
        self.store.load_state(state)
        self.awaiting_refill = False
        return len(self.store)

    def refill(self, state: ReplayState) -> int:
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
    """Whether this process is a restarted incarnation of its actor. What Ray's
    ``was_current_actor_reconstructed`` asks the GCS, without reading the deprecated
    ``runtime_context.actor_id`` (a ``RayDeprecationWarning`` in every run's output)."""
    if not ray.is_initialized():
        return False  # a plain object (unit tests): a first start; never start Ray here
    actor_id = ray.get_runtime_context().get_actor_id()
    if actor_id is None:
        return False
    from ray._private.state import actors

    info = actors(actor_id=actor_id)
    return bool(info) and info["NumRestarts"] != 0
