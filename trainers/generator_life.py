"""The ANT generator's life in one place: restart, adopt, snapshot into replay.

What the reference does (bethgelab/game-of-noise, ``main.py`` at commit 27e2600, the
training loop added in 29625d2): every epoch, the first included, begins with
``retrain_ng_and_evaluate``, which trains a new generator from scratch against the current
classifier (Adam 5e-4, about 1000 iterations); it replaces the current generator (with a
fresh Adam for joint training), and ``save_models`` then writes *that freshly restarted
generator* to ``Noise_model_epoch_<epoch>.pth`` before the epoch's joint training.
``generate_noisy_data`` (``utils.py``) replays generators loaded at random from those
files. So the history holds one restarted generator per epoch, never a jointly trained one.

Here, by default:

- restart: requested at the first step of every epoch (so at step 0 too), or every
  ``ant.restart_every_steps`` steps. In one process it blocks and is adopted at once, as
  in the reference; on Ray it trains on an actor and is adopted at the first step boundary
  after it finished, never waited for (a request while one runs is skipped and counted);
- adopt: every rank loads the fresh generator at the same step, with fresh Adam moments;
- snapshot: the adopted generator enters the replay history at adoption. With
  ``ant.snapshot_every_steps`` the current (jointly trained) generator is snapshotted every
  N steps instead; without restarts, the current generator at every epoch start.

One deliberate difference: the reference puts the whole noisy half on the current
generator during epoch 0 and replays from epoch 1; here replay starts as soon as the
history holds a generator, so a one-epoch run already replays its restarted generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from generators.networks import NoiseGenerator
from generators.optim import load_optimizer_state
from trainers.generator_service import GeneratorService, cpu_state
from trainers.steps import bare
from trainers.train_config import AntKeys

# Service counters that are also reported per epoch (as ``<name>_epoch``).
EPOCH_COUNTERS = (
    "restarts_requested",
    "restarts_skipped",
    "restart_failures",
    "steps_while_restarting",
)


@dataclass(frozen=True)
class Schedule:
    restarts: bool  # ant.restart_iterations > 0
    restart_every_steps: int | None  # None: at every epoch start
    snapshot_every_steps: int | None  # None: each adopted restart (or epoch start)
    replay_per_batch: int

    @classmethod
    def from_config(cls, ant: AntKeys) -> Schedule:
        return cls(
            restarts=ant.restart_iterations > 0,
            restart_every_steps=ant.restart_every_steps,
            snapshot_every_steps=ant.snapshot_every_steps,
            replay_per_batch=ant.replay_generators_per_batch,
        )


class GeneratorLife:
    """Owns the current generator, its optimizer and the service behind restarts/replay.

    Rank 0 requests restarts and writes snapshots; every rank adopts at the same step
    (the loop agrees on ``before_step``'s answer across ranks, then calls ``adopt``).
    """

    def __init__(
        self,
        generator: nn.Module,
        optimizer: torch.optim.Optimizer,
        service: GeneratorService,
        schedule: Schedule,
        *,
        classifier: nn.Module,
        rank: int,
        broadcast: Callable[[Any], Any],
    ) -> None:
        self.generator, self.optimizer, self.service = generator, optimizer, service
        self.schedule, self.classifier, self.rank = schedule, classifier, rank
        self.broadcast = broadcast
        self._ready: dict[str, torch.Tensor] | None = None
        self._running = False  # rank 0: a requested restart has not come back yet
        self._resubmit = False  # a restart was running when the resumed checkpoint was saved
        self._epoch_start: dict[str, float] = {}

    # --- at a step boundary --------------------------------------------------------
    def before_step(self, step: int, *, epoch_start: bool) -> bool:
        """Rank 0: request a due restart, then check (never wait) for a finished one.
        Returns whether a fresh generator is ready to adopt (rank 0's view)."""
        if self.rank != 0:
            return False
        s = self.schedule
        if not s.restarts:
            if epoch_start and s.snapshot_every_steps is None:
                self.service.add_snapshot(bare(self.generator))
            return False
        due = epoch_start if s.restart_every_steps is None else step % s.restart_every_steps == 0
        if due or self._resubmit:
            self._resubmit = False
            self.service.request_restart(self.classifier, step=step)
            self._running = True
        if not self._running:
            return False
        failed_before = self._failures()
        self._ready = self.service.poll_restart()
        if self._ready is not None or self._failures() > failed_before:
            self._running = False
        return self._ready is not None

    def adopt(self) -> None:
        """Every rank, at the same step: the fresh generator replaces the current one."""
        state = self.broadcast(self._ready)
        self._ready = None
        bare(self.generator).load_state_dict(state)
        # A fresh generator starts with fresh Adam moments (the old ones belong to another net).
        self.optimizer.state.clear()
        if self.rank != 0:
            self.service.restarts_adopted += 1  # rank 0's poll counted it there
        elif self.schedule.snapshot_every_steps is None:
            self.service.add_snapshot(bare(self.generator))  # the reference's history entry

    def after_step(self, step: int) -> None:
        every = self.schedule.snapshot_every_steps
        if self.rank == 0 and every and step % every == 0:
            self.service.add_snapshot(bare(self.generator))

    def replay(self) -> list[NoiseGenerator]:
        """The old generators that noise this batch's replay share (empty: no history yet)."""
        return self.service.sample_replay(self.schedule.replay_per_batch)

    # --- per epoch -----------------------------------------------------------------
    def begin_epoch(self) -> None:
        self._epoch_start = {
            **self._counters(),
            "restarts_adopted": float(self.service.restarts_adopted),
            "replay_size": float(self.service.replay_size()),
        }

    def epoch_metrics(self) -> dict[str, float]:
        """Cumulative counters, and per epoch (``*_epoch``) the differences since
        ``begin_epoch``: restarts requested, skipped, failed, steps run while restarting."""
        start, counters = self._epoch_start, self._counters()
        adopted = float(self.service.restarts_adopted)
        out = {
            **self.service.stats(),
            "restarts_adopted": adopted,
            "restarts_adopted_epoch": adopted - start.get("restarts_adopted", 0.0),
            "replay_size": float(self.service.replay_size()),
            "replay_size_at_start": start.get("replay_size", 0.0),
        }
        for name in EPOCH_COUNTERS:
            out[name] = counters[name]
            out[f"{name}_epoch"] = counters[name] - start.get(name, 0.0)
        return out

    def _failures(self) -> float:
        return float(self.service.stats().get("restart_failures", 0.0))

    def _counters(self) -> dict[str, float]:
        stats = self.service.stats()
        return {name: float(stats.get(name, 0.0)) for name in EPOCH_COUNTERS}

    # --- checkpoints ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "generator": cpu_state(bare(self.generator)),
            "generator_optimizer": self.optimizer.state_dict(),
            "service": self.service.state(),
            "restart_running": self._running,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("generator") is not None:
            bare(self.generator).load_state_dict(state["generator"])
            load_optimizer_state(self.optimizer, state["generator_optimizer"])
        if state.get("service") is not None:
            self.service.load_state(state["service"])
        # A restart in flight died with the old workers: ask again at the first step.
        self._resubmit = bool(state.get("restart_running"))

    def close(self) -> None:
        self.service.close()
