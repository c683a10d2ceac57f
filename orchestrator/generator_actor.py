"""Generator restarts off the critical path: ``GeneratorTrainer`` trains a fresh generator
from scratch against the classifier weights rank 0 publishes (an ObjectRef), on its own
resources and its own copy of the training split. A plain class, wrapped with
``ray.remote`` where it is launched (``ray_runner.py``); the workers ask it through
``generator_client.RestartClient``.
"""

from __future__ import annotations

import os
from typing import Any

import ray
import torch

from generators.replay import Snapshot
from generators.training import train_generator_from_scratch
from orchestrator.data_sync import is_uri, local_copy
from trainers.data import load_split, resolve_data_root
from trainers.generator_service import cpu_state
from trainers.models import create_model


def actor_device() -> torch.device:
    """The GPU Ray assigned to this actor, else the CPU. Never a GPU it did not ask for:
    with ``num_gpus=0`` a CUDA device may still be visible on a GPU node, but it belongs
    to the Train worker that reserved it."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU
    return torch.device("cpu")


class GeneratorTrainer:
    """Trains fresh generators against published classifier weights (Adam 5e-4, 1000
    iterations: docs/METHOD.md, "Restarts")."""

    def __init__(self, config: dict[str, Any], data_root: str | None, threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)
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
            val_size=data["val_size"],
            split_seed=data["split_seed"],
            limit=data["limit_train"],
        )
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=data["batch_size"], shuffle=True, drop_last=True
        )
        self.classifier = create_model(model["name"], num_classes=model["num_classes"])
        self.kind, self.epsilon = ant["generator"], ant["epsilon"]
        self.iterations, self.lr = ant["restart_iterations"], ant["restart_lr"]
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
