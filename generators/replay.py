"""Experience replay: a bounded store of generator snapshots (docs/METHOD.md, "Experience replay").

A plain class so it is unit-testable without Ray; the Ray actor in orchestrator/
wraps it with ``put=ray.put`` so snapshots live in the object store, owned by the
store actor (refs survive the generator actors that produced them).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal, TypedDict

Snapshot = dict[str, Any]  # a generator's state_dict (CPU tensors)


class ReplayState(TypedDict):
    """A store's whole content, as checkpoints keep it."""

    items: list[tuple[int, Any]]  # (snapshot id, snapshot), oldest first
    next_id: int
    version: int
    rng: Any  # random.Random.getstate(); None: keep the store's own


class ReplayStore:
    """At most ``capacity`` snapshots; ``fifo`` evicts the oldest, ``random`` a random one."""

    def __init__(
        self,
        capacity: int,
        *,
        eviction: Literal["fifo", "random"] = "fifo",
        seed: int = 0,
        put: Callable[[Snapshot], Any] = lambda value: value,
        get: Callable[[Any], Snapshot] = lambda value: value,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"replay capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self.eviction = eviction
        self._rng = random.Random(seed)
        self._put, self._get = put, get
        self._items: list[tuple[int, Any]] = []  # (snapshot id, stored value or ObjectRef)
        self._next_id = 0
        self.version = 0  # bumps on every change, so readers can cache

    def add(self, snapshot: Snapshot) -> int:
        if len(self._items) >= self.capacity:
            victim = 0 if self.eviction == "fifo" else self._rng.randrange(len(self._items))
            self._items.pop(victim)
        snap_id = self._next_id
        self._next_id += 1
        self._items.append((snap_id, self._put(snapshot)))
        self.version += 1
        return snap_id

    def __len__(self) -> int:
        return len(self._items)

    def entries(self) -> list[tuple[int, Any]]:
        """(id, stored value) pairs: values, or ObjectRefs in the Ray actor."""
        return list(self._items)

    def state(self) -> ReplayState:
        """Everything needed to rebuild the store: snapshots by value, ids, rng."""
        return {
            "items": [(i, self._get(v)) for i, v in self._items],
            "next_id": self._next_id,
            "version": self.version,
            "rng": self._rng.getstate(),
        }

    def load_state(self, state: ReplayState) -> None:
        self._items = [(i, self._put(v)) for i, v in state["items"]][-self.capacity :]
        self._next_id = state["next_id"]
        self.version = state["version"] + 1
        if state.get("rng") is not None:
            self._rng.setstate(state["rng"])
