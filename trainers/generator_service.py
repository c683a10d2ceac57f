"""Where the ANT loop gets fresh generators (restarts) and old ones (replay).

The loop only talks to this interface. ``InlineGeneratorService`` is the paper's
reference behaviour in one process: a restart blocks while a generator is trained
from scratch. The Ray implementation (orchestrator/generator_client.py) trains on a
separate actor and never blocks a step.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

from generators.networks import NoiseGenerator, create_generator
from generators.replay import ReplayStore, Snapshot
from generators.training import train_generator_from_scratch


def cpu_state(module: nn.Module) -> Snapshot:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class GeneratorService(Protocol):
    restarts_requested: int
    restarts_adopted: int

    def request_restart(self, classifier: nn.Module, *, step: int) -> None:
        """Start training a fresh generator against ``classifier`` (rank 0)."""

    def poll_restart(self) -> Snapshot | None:
        """A finished fresh generator's state, once; None if none is ready (never waits)."""

    def add_snapshot(self, generator: nn.Module) -> None:
        """Put the current generator into the replay history (rank 0)."""

    def sample_replay(self, k: int) -> list[NoiseGenerator]:
        """Up to ``k`` old generators for this batch (any rank)."""

    def replay_size(self) -> int: ...

    def stats(self) -> dict[str, float]:
        """Counters for the epoch report (restarts requested, skipped, failed ...)."""

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class ReplayCache:
    """Local modules for replay snapshots, keyed by snapshot id, so each snapshot is
    fetched and deserialised once per worker, not once per step."""

    def __init__(self, kind: str, channels: int, device: torch.device, seed: int = 0) -> None:
        self.kind, self.channels, self.device = kind, channels, device
        self.modules: dict[int, NoiseGenerator] = {}
        self.rng = random.Random(seed)

    def sync(self, ids: Iterable[int], fetch: Callable[[list[int]], list[Snapshot]]) -> None:
        ids = list(ids)
        missing = self.missing(ids)
        for snap_id, state in zip(missing, fetch(missing) if missing else [], strict=True):
            self.add(snap_id, state)
        self.retain(ids)

    def missing(self, ids: Iterable[int]) -> list[int]:
        return [i for i in ids if i not in self.modules]

    def add(self, snap_id: int, state: Snapshot) -> None:
        module = create_generator(self.kind, channels=self.channels)
        module.load_state_dict(state)
        self.modules[snap_id] = module.to(self.device).eval().requires_grad_(False)

    def retain(self, ids: Iterable[int]) -> None:
        """Drop the snapshots the store no longer holds (evicted)."""
        keep = set(ids)
        for gone in set(self.modules) - keep:
            del self.modules[gone]

    def sample(self, k: int) -> list[NoiseGenerator]:
        keys = sorted(self.modules)
        return [self.modules[i] for i in self.rng.sample(keys, min(k, len(keys)))]


class InlineGeneratorService:
    """Single process: restarts run synchronously (blocking, like the reference)."""

    def __init__(
        self,
        *,
        kind: str,
        channels: int,
        epsilon: float,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        iterations: int,
        lr: float,
        capacity: int,
        eviction: str,
        device: torch.device,
        seed: int = 0,
    ) -> None:
        self.kind, self.epsilon, self.batches = kind, epsilon, batches
        self.iterations, self.lr, self.device, self.seed = iterations, lr, device, seed
        self.store = ReplayStore(capacity, eviction=eviction, seed=seed)  # type: ignore[arg-type]
        self.cache = ReplayCache(kind, channels, device, seed)
        self._ready: Snapshot | None = None
        self.restarts_requested = 0
        self.restarts_adopted = 0

    def request_restart(self, classifier: nn.Module, *, step: int) -> None:
        self.restarts_requested += 1
        frozen_copy = copy.deepcopy(classifier).eval()
        generator, _ = train_generator_from_scratch(
            frozen_copy,
            self.batches,
            kind=self.kind,
            epsilon=self.epsilon,
            iterations=self.iterations,
            lr=self.lr,
            seed=self.seed + 1000 + step,
            device=self.device,
        )
        self._ready = cpu_state(generator)

    def poll_restart(self) -> Snapshot | None:
        ready, self._ready = self._ready, None
        if ready is not None:
            self.restarts_adopted += 1
        return ready

    def add_snapshot(self, generator: nn.Module) -> None:
        self.store.add(cpu_state(generator))

    def sample_replay(self, k: int) -> list[NoiseGenerator]:
        entries = dict(self.store.entries())
        self.cache.sync(entries, lambda ids: [entries[i] for i in ids])
        return self.cache.sample(k)

    def replay_size(self) -> int:
        return len(self.store)

    def stats(self) -> dict[str, float]:
        return {"restarts_requested": float(self.restarts_requested)}

    def state(self) -> dict[str, Any]:
        return {
            "replay": self.store.state(),
            "requested": self.restarts_requested,
            "adopted": self.restarts_adopted,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.store.load_state(state["replay"])
        self.restarts_requested = state.get("requested", 0)
        self.restarts_adopted = state.get("adopted", 0)

    def close(self) -> None:
        pass
