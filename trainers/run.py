"""Everything a training run needs before its first step, in one object.

``setup_run`` builds this worker's data (the training split; the validation split on
rank 0; never the test set), the classifier and its optimizer, the mode's step function,
the ANT generator's life, and restores a checkpoint; ``checkpoint_state`` is the inverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from generators.networks import create_generator
from generators.optim import adam, load_optimizer_state, sgd
from trainers.averaging import WeightAverage, create_average
from trainers.best_epoch import BestEpoch, selection_metric
from trainers.checkpoint_format import BEST_VAL_KEY
from trainers.data import (
    IMAGE_SPECS,
    DataRoot,
    default_val_size,
    load_split,
    load_stylized,
    resolve_data_root,
)
from trainers.device import Precision
from trainers.generator_life import GeneratorLife, Schedule
from trainers.generator_service import GeneratorService, cpu_state
from trainers.mixing import Shares, split_batch
from trainers.models import create_model
from trainers.order import EpochOrder, UpdateOrder, worker_shares
from trainers.steps import StepFn, StepParts, bare, create_step
from trainers.train_config import TrainConfig
from trainers.validation import SuiteValidation
from trainers.worker_env import WorkerEnv


class ServiceFactory(Protocol):
    """Builds this worker's generator service (``orchestrator``: inline or on Ray)."""

    def __call__(
        self, *, cfg: TrainConfig, loader: DataLoader, precision: Precision, rank: int
    ) -> GeneratorService: ...


@dataclass
class Classifier:
    """The classifier being trained, with its optimiser and schedule, and on rank 0 what
    validation measures and a checkpoint serves."""

    model: nn.Module  # DDP-wrapped on Ray
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    # rank 0, optim.ema_decay > 0: the averaged weights that validation and eval read
    average: WeightAverage | None = None
    # rank 0, optim.select_epoch=best_val: the served weights of the best epoch so far
    best: BestEpoch | None = None

    def served(self) -> nn.Module:
        """The classifier that validation measures and a checkpoint serves to eval."""
        return self.average.model if self.average is not None else bare(self.model)


@dataclass(frozen=True)
class Batches:
    """This worker's training batches, in the run's seeded order, and rank 0's validation."""

    loader: DataLoader
    order: UpdateOrder
    size: int  # this worker's share of data.batch_size
    val_loader: DataLoader | None  # rank 0, unless data.val_size is 0


@dataclass
class Progress:
    """Where the run is: updates done, and where a resumed run starts."""

    steps_per_epoch: int
    total_steps: int
    step: int = 0  # classifier updates done
    start_epoch: int = 0
    resume_at: int = 0  # batches of start_epoch already trained (mid-epoch checkpoint)


@dataclass
class Run:
    cfg: TrainConfig
    env: WorkerEnv
    precision: Precision
    classifier: Classifier
    batches: Batches
    train_step: StepFn
    life: GeneratorLife | None  # ANT only
    progress: Progress
    # rank 0: the generated corruption suite on the validation split (data.val_suite)
    suite_validation: SuiteValidation | None = None


def weight_unequal_shares(model: nn.Module, share: int, global_batch: int) -> None:
    """Make DDP's gradient the mean over the whole global batch when the workers' shares
    differ by one image (``worker_shares``): each rank's gradient of its own mean loss is
    weighted by ``share / global_batch`` and the weighted gradients are summed, instead of
    DDP's plain average. With equal shares the weights are ``1 / world_size`` and DDP's
    default hook is kept, so nothing changes there."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(model, DistributedDataParallel):
        return
    if global_batch % model.process_group.size() == 0:
        return
    model.register_comm_hook(share / global_batch, _weighted_sum_hook)


def _weighted_sum_hook(weight: float, bucket):
    # No annotations on bucket and return: DDP compares them with dist.GradBucket and
    # Future[Tensor] as objects, and this module's annotations are strings.
    import torch.distributed as dist

    tensor = bucket.buffer().mul_(weight)
    reduced = dist.all_reduce(tensor, async_op=True).get_future()
    return reduced.then(lambda done: done.value()[0])


def build_optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.optimizer == "adam":
        return adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return sgd(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def setup_run(
    cfg: TrainConfig,
    env: WorkerEnv,
    *,
    make_service: ServiceFactory | None = None,
    data_root: str | None = None,
) -> Run:
    seed = cfg.experiment.seed
    torch.manual_seed(seed + env.rank)
    if cfg.runtime.torch_threads:
        torch.set_num_threads(cfg.runtime.torch_threads)
    assigned = env.device()
    precision = Precision.create(
        str(assigned) if assigned is not None else cfg.runtime.device,
        amp=cfg.runtime.amp,
        channels_last=cfg.runtime.channels_last,
    )
    root = resolve_data_root(data_root or cfg.data.root)
    batches = _batches(cfg, env, root, precision)
    classifier = _classifier(cfg, env, precision, batches.size)
    shares = Shares(
        clean=cfg.noise.shares.clean,
        current=cfg.noise.shares.current,
        replay=cfg.noise.shares.replay,
        stylized=cfg.noise.shares.stylized,
    )
    life = None
    if cfg.noise.mode == "ant":
        if make_service is None:
            raise ValueError("mode ant needs a generator service")
        service = make_service(cfg=cfg, loader=batches.loader, precision=precision, rank=env.rank)
        life = _generator_life(cfg, env, classifier.model, precision, service)
    parts = StepParts(
        classifier=classifier.model,
        optimizer=classifier.optimizer,
        precision=precision,
        shares=shares,
        sigmas=cfg.noise.sigmas,
        speckle_levels=cfg.noise.speckle_levels,
        epsilon=cfg.ant.epsilon,
        generator=life.generator if life else None,
        generator_optimizer=life.optimizer if life else None,
        replay=life.replay if life else None,
        stylized=_stylized_batches(cfg, env, root, batches.size, shares) if life else None,
        ant_step=cfg.ant.step,
    )
    steps_per_epoch = len(batches.loader)
    total_steps = steps_per_epoch * cfg.optim.epochs
    if cfg.optim.max_steps is not None:
        total_steps = min(total_steps, cfg.optim.max_steps)
    run = Run(
        cfg=cfg,
        env=env,
        precision=precision,
        classifier=classifier,
        batches=batches,
        train_step=create_step(cfg.noise.mode, parts),
        life=life,
        progress=Progress(steps_per_epoch, total_steps),
    )
    state = env.load_checkpoint()
    if state is not None:
        restore(run, state)
    return run


def _batches(cfg: TrainConfig, env: WorkerEnv, root: DataRoot, precision: Precision) -> Batches:
    """This worker's share of each update, from the group's size now: an elastic group
    restarted at another size recomputes it (trainers/order.py)."""
    seed = cfg.experiment.seed
    share = worker_shares(cfg.data.batch_size, env.world_size)[env.rank]
    train_set = load_split(
        cfg.data.dataset,
        root,
        "train",
        val_size=val_size(cfg),
        split_seed=cfg.data.split_seed,
        limit=cfg.data.limit_train,
        seed=seed,
    )
    order = UpdateOrder(
        train_set,
        global_batch=cfg.data.batch_size,
        num_replicas=env.world_size,
        rank=env.rank,
        seed=seed,
    )
    loader = env.prepare_loader(
        DataLoader(
            train_set,
            batch_size=share,
            sampler=order,
            num_workers=cfg.data.loader_workers,
            pin_memory=precision.device.type == "cuda",
        )
    )
    val_loader = _val_loader(cfg, root, seed) if env.rank == 0 else None
    return Batches(loader, order, share, val_loader)


def _classifier(cfg: TrainConfig, env: WorkerEnv, precision: Precision, share: int) -> Classifier:
    model = create_model(
        cfg.model.name, num_classes=cfg.model.num_classes, weights_path=cfg.model.weights_path
    )
    model = env.prepare_model(precision.model(model))
    weight_unequal_shares(model, share, cfg.data.batch_size)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.optim.step_size_epochs, gamma=cfg.optim.gamma
    )
    classifier = Classifier(model, optimizer, scheduler)
    if env.rank == 0:
        classifier.average = create_average(bare(model), cfg.optim.ema_decay)
        if cfg.optim.select_epoch == "best_val":
            classifier.best = BestEpoch(selection_metric(cfg.data.val_suite))
    return classifier


def val_size(cfg: TrainConfig) -> int:
    return default_val_size(cfg.data.dataset) if cfg.data.val_size is None else cfg.data.val_size


def _val_loader(cfg: TrainConfig, root: DataRoot, seed: int) -> DataLoader | None:
    """Per-epoch validation reads the split carved from the training images (the test set
    is for ``antray eval`` only); ``data.val_size: 0`` means none."""
    size = val_size(cfg)
    if size == 0:
        return None
    val_set = load_split(
        cfg.data.dataset,
        root,
        "val",
        val_size=size,
        split_seed=cfg.data.split_seed,
        limit=cfg.data.limit_val,
        seed=seed,
    )
    return DataLoader(val_set, batch_size=cfg.data.eval_batch_size)


def _generator_life(
    cfg: TrainConfig,
    env: WorkerEnv,
    model: nn.Module,
    precision: Precision,
    service: GeneratorService,
) -> GeneratorLife:
    spec = IMAGE_SPECS[cfg.data.dataset]
    generator = env.prepare_model(
        create_generator(cfg.ant.generator, channels=spec.channels).to(precision.device)
    )
    return GeneratorLife(
        generator,
        adam(generator.parameters(), lr=cfg.ant.generator_lr),
        service,
        Schedule.from_config(cfg.ant),
        classifier=bare(model),
        rank=env.rank,
        broadcast=env.broadcast,
    )


def _stylized_batches(
    cfg: TrainConfig, env: WorkerEnv, root: DataRoot, batch: int, shares: Shares
) -> Iterator | None:
    """ANT+SIN: a Stylized-ImageNet stream (same labels) with exactly the stylized share
    of each batch, cycled over its own seeded epochs."""
    count = split_batch(batch, shares, has_history=True)["stylized"]
    if count == 0:
        return None
    stylized = load_stylized(root, cfg.data.stylized_root)
    seed = cfg.experiment.seed + 1
    order = EpochOrder(stylized, num_replicas=env.world_size, rank=env.rank, seed=seed)
    loader = env.prepare_loader(
        DataLoader(
            stylized,
            batch_size=count,
            sampler=order,
            drop_last=True,
            num_workers=cfg.data.loader_workers,
        )
    )

    def cycle() -> Iterator:
        epoch = 0
        while True:
            order.set_epoch(epoch)
            yield from loader
            epoch += 1

    return cycle()


# --- checkpoints -------------------------------------------------------------------


def checkpoint_state(
    run: Run,
    *,
    epoch: int,
    epoch_step: int,
    metrics: dict[str, float],
    mid_epoch: bool = False,
    interrupted: bool = False,
) -> dict[str, Any]:
    """Rank 0's checkpoint. ``epoch_step``: batches of ``epoch`` done so far.

    A mid-epoch checkpoint resumes at its step of the same epoch. An interrupted epoch is
    redone on resume from its first batch (with the weights as they are now), so it
    records the last *complete* epoch."""
    life = run.life.state() if run.life else {}
    step, c = run.progress.step, run.classifier
    return {
        "epoch": epoch - 1 if interrupted else epoch,
        "step": step - epoch_step if interrupted else step,
        "steps_done": step,
        "epoch_step": epoch_step,
        "mid_epoch": mid_epoch,
        "interrupted": interrupted,
        "config": run.cfg.to_dict(),
        "model": cpu_state(bare(c.model)),  # the live weights: training resumes from them
        # optim.ema_decay > 0: the averaged weights, which antray eval serves
        "averaged_model": c.average.state() if c.average is not None else None,
        # optim.select_epoch=best_val: the best epoch's served weights, which eval serves
        BEST_VAL_KEY: c.best.state() if c.best is not None else None,
        "optimizer": c.optimizer.state_dict(),
        "scheduler": c.scheduler.state_dict(),
        "generator": life.get("generator"),
        "generator_optimizer": life.get("generator_optimizer"),
        "service": life.get("service"),
        "restart_running": life.get("restart_running", False),
        "metrics": metrics,
    }


def restore(run: Run, state: dict[str, Any]) -> None:
    c, at = run.classifier, run.progress
    bare(c.model).load_state_dict(state["model"])
    load_optimizer_state(c.optimizer, state["optimizer"])
    c.scheduler.load_state_dict(state["scheduler"])
    if c.average is not None:
        averaged = state.get("averaged_model")
        if averaged is not None:
            c.average.load_state(averaged)
        else:  # a checkpoint from a run without the average: start it from here
            c.average.update(bare(c.model))
    if c.best is not None:
        c.best.load_state(state.get(BEST_VAL_KEY))
    if run.life is not None:
        run.life.load_state(state)
    _apply_new_lr(c.optimizer, c.scheduler, run.cfg.optim.lr, state["config"]["optim"]["lr"])
    at.step = state["step"]
    if state.get("mid_epoch"):
        at.start_epoch, at.resume_at = state["epoch"], state["epoch_step"]
    else:
        at.start_epoch, at.resume_at = state["epoch"] + 1, 0
    if run.env.rank == 0:
        where = f" batch {at.resume_at + 1}" if at.resume_at else ""
        print(f"resumed at epoch {at.start_epoch + 1}{where} (step {at.step})", flush=True)


def _apply_new_lr(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    lr: float,
    saved_lr: float,
) -> None:
    """Resuming with ``--set optim.lr=...`` changes the base lr; otherwise the restored
    optimizer and schedule continue exactly where they were."""
    if lr == saved_lr:
        return
    factor = lr / saved_lr
    for group in optimizer.param_groups:
        group["lr"] *= factor
        group["initial_lr"] = lr
    scheduler.base_lrs = [lr for _ in scheduler.base_lrs]
