"""Fixtures of the unit tests: fast, one process, never Ray (checked after every test)."""

import sys

import pytest
import torch

from orchestrator.config import load_config
from trainers.worker_env import LocalEnv

# A short run on synthetic images: one epoch of 8 updates of 32, ANT at a reachable size.
TINY = [
    "data.dataset=synthetic",
    "data.limit_train=256",  # 8 steps of 32
    "data.limit_val=64",
    "data.batch_size=32",
    "optim.epochs=1",
    "ant.epsilon=6.0",
    "ant.restart_iterations=3",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
]


class Preempted(Exception):
    """Stands in for a spot node going away right after a checkpoint was written."""


class FakeEnv(LocalEnv):
    """``LocalEnv`` as rank 0 of ``world_size``, recording what the loop asks of it: the
    loaders it prepared, what it broadcast, and each epoch's metrics with a copy of the
    live weights its checkpoint held."""

    Preempted = Preempted

    def __init__(self, run_dir, *, world_size=1, resume=False, preempt_mid_epoch=False):
        super().__init__(run_dir, resume=resume)
        self.world_size = world_size
        self.preempt_mid_epoch = preempt_mid_epoch
        self.loaders, self.broadcasts, self.epochs = [], [], []

    def prepare_loader(self, loader):
        self.loaders.append(loader)
        return loader

    def broadcast(self, obj):
        self.broadcasts.append(obj)
        return obj

    def report(self, metrics, state):
        if state is not None and not metrics.get("mid_epoch"):
            live = {k: v.clone() for k, v in state["model"].items()}
            self.epochs.append((dict(metrics), live))
        super().report(metrics, state)
        if self.preempt_mid_epoch and metrics.get("mid_epoch"):
            raise Preempted


@pytest.fixture
def fake_env() -> type[FakeEnv]:
    """The ``FakeEnv`` class: a test builds one per run (``fake_env(tmp_path)``) and
    catches ``fake_env.Preempted``."""
    return FakeEnv


@pytest.fixture
def tiny():
    """``tiny(*overrides)``: the config of a short run on synthetic images (``TINY``)."""

    def build(*extra: str):
        return load_config(None, [*TINY, *extra])

    return build


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin contention on shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def never_ray():
    """A unit test that starts Ray belongs in tests/integration."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        pytest.fail("this unit test started Ray: move it to tests/integration")
