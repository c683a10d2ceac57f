"""The per-worker training loop: reads like the algorithm in SPEC.md.

for each batch:  adopt a finished restart -> (ANT) generator step -> mixed-batch
classifier step -> progress.  Every interval: replay snapshot, generator restart.
Every epoch: quick validation, report with a checkpoint.

The surroundings (one process or a Ray Train worker) come in as a ``WorkerEnv``,
restarts and replay as a ``GeneratorService``; this file never imports Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from generators.networks import create_generator
from generators.samplers import GaussianNoise, SpeckleNoise
from trainers.data import IMAGE_SPECS, load_dataset, load_stylized, resolve_data_root
from trainers.device import Precision
from trainers.generator_service import GeneratorService, cpu_state
from trainers.mixing import Shares
from trainers.models import create_model
from trainers.progress import ProgressMeter
from trainers.steps import ant_step, bare, noise_step, vanilla_step
from trainers.validation import quick_validation
from trainers.worker_env import WorkerEnv

ServiceFactory = Callable[..., GeneratorService]


def build_optimizer(cfg: Any, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.optimizer == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def run_worker(
    cfg: Any,
    env: WorkerEnv,
    *,
    make_service: ServiceFactory | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Train from a resolved config on this worker; returns the final metrics.

    ``cfg`` is an ``orchestrator.config.ExperimentConfig`` (duck-typed here so that
    trainers/ does not depend on orchestrator/).
    """
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
    spec = IMAGE_SPECS[cfg.data.dataset]
    root = resolve_data_root(data_root or cfg.data.root)
    train_set = load_dataset(
        cfg.data.dataset, root, train=True, limit=cfg.data.limit_train, seed=seed
    )
    test_set = load_dataset(
        cfg.data.dataset, root, train=False, limit=cfg.data.limit_test, seed=seed
    )
    loader = env.prepare_loader(
        DataLoader(
            train_set,
            batch_size=cfg.data.batch_size,
            shuffle=True,
            drop_last=len(train_set) >= cfg.data.batch_size,  # type: ignore[arg-type]
            num_workers=cfg.data.loader_workers,
            pin_memory=precision.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )
    )
    test_loader = DataLoader(test_set, batch_size=cfg.data.eval_batch_size)
    stylized_batches = None
    if mode_uses_stylized(cfg):
        # ANT+SIN: a separate Stylized-ImageNet stream with the same labels, cycled.
        stylized_loader = env.prepare_loader(
            DataLoader(
                load_stylized(root, cfg.data.stylized_root),
                batch_size=cfg.data.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=cfg.data.loader_workers,
            )
        )
        stylized_batches = _cycle(stylized_loader)

    model = create_model(
        cfg.model.name, num_classes=cfg.model.num_classes, weights_path=cfg.model.weights_path
    )
    model = env.prepare_model(precision.model(model))
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.optim.step_size_epochs, gamma=cfg.optim.gamma
    )

    mode = cfg.noise.mode
    shares = Shares(**cfg.noise.shares.model_dump())
    generator = generator_optimizer = service = None
    if mode == "ant":
        generator = env.prepare_model(
            create_generator(cfg.ant.generator, channels=spec.channels).to(precision.device)
        )
        generator_optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.ant.generator_lr)
        if make_service is None:
            raise ValueError("mode ant needs a generator service")
        service = make_service(cfg=cfg, loader=loader, precision=precision, rank=env.rank)
    sampler = None
    if mode == "gnt":
        sampler = GaussianNoise(cfg.noise.sigmas)
    elif mode == "speckle":
        sampler = SpeckleNoise(cfg.noise.speckle_levels)

    start_epoch, step = 0, 0
    state = env.load_checkpoint()
    if state is not None:
        bare(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if generator is not None and state.get("generator") is not None:
            bare(generator).load_state_dict(state["generator"])
            generator_optimizer.load_state_dict(state["generator_optimizer"])  # type: ignore[union-attr]
        if service is not None and state.get("service") is not None:
            service.load_state(state["service"])
        _apply_new_lr(optimizer, scheduler, cfg.optim.lr, state["config"]["optim"]["lr"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        if env.rank == 0:
            print(f"resumed at epoch {start_epoch + 1} (step {step})", flush=True)

    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * cfg.optim.epochs
    if cfg.optim.max_steps is not None:
        total_steps = min(total_steps, cfg.optim.max_steps)
    final: dict[str, Any] = {}
    every_epoch_restart = mode == "ant" and cfg.ant.restart_every_steps is None
    every_epoch_snapshot = mode == "ant" and cfg.ant.snapshot_every_steps is None

    interrupted = False
    for epoch in range(start_epoch, cfg.optim.epochs):
        if step >= total_steps:
            break
        env.set_epoch(loader, epoch)
        meter = ProgressMeter(
            total_steps,
            every=cfg.runtime.log_every_steps,
            enabled=env.rank == 0,
            prefix=f"epoch {epoch + 1}/{cfg.optim.epochs} ",
        )
        sums: dict[str, float] = {}
        longest_step = 0.0
        step_at_epoch_start = step
        adopted_before = service.restarts_adopted if service else 0
        replay_at_start = service.replay_size() if service else 0
        for x, y in loader:
            t0 = time.perf_counter()
            ready, interrupted = _step_boundary(env, service, step, ant=mode == "ant")
            if interrupted:
                break
            if ready is not None:
                _adopt(generator, generator_optimizer, ready)
            if mode == "ant":
                metrics = ant_step(
                    model,
                    optimizer,
                    x,
                    y,
                    generator=generator,  # type: ignore[arg-type]
                    generator_optimizer=generator_optimizer,  # type: ignore[arg-type]
                    replay=service.sample_replay(cfg.ant.replay_generators_per_batch),  # type: ignore[union-attr]
                    epsilon=cfg.ant.epsilon,
                    shares=shares,
                    precision=precision,
                    stylized=next(stylized_batches) if stylized_batches else None,
                )
            elif sampler is not None:
                metrics = noise_step(
                    model,
                    optimizer,
                    x,
                    y,
                    sampler=sampler,
                    clean_share=shares.clean,
                    precision=precision,
                )
            else:
                metrics = vanilla_step(model, optimizer, x, y, precision=precision)
            if not math.isfinite(metrics["loss"]):
                # Stop cleanly on every rank (no retry would help) and keep the last
                # good checkpoint: nothing is reported with state from here on.
                message = (
                    f"loss is {metrics['loss']} at epoch {epoch + 1} step {step + 1}; "
                    "the last good checkpoint is kept"
                )
                if env.rank == 0:
                    print(f"antray: {message}", flush=True)
                if service is not None:
                    service.close()
                return {"error": "nonfinite_loss", "message": message, "step": float(step)}
            step += 1
            longest_step = max(longest_step, time.perf_counter() - t0)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            sums["steps"] = sums.get("steps", 0.0) + 1
            meter.update(step, int(metrics["images"]), metrics["loss"])
            if mode == "ant" and env.rank == 0:
                _interval_events(cfg, step, service, generator, model)
            if step >= total_steps:
                break
        steps_rate, steps_time = meter.rate(), time.perf_counter() - meter.start
        if not interrupted:
            scheduler.step()
            if env.rank == 0 and every_epoch_snapshot:
                service.add_snapshot(bare(generator))  # type: ignore[union-attr]
            if env.rank == 0 and every_epoch_restart and cfg.ant.restart_iterations > 0:
                service.request_restart(bare(model), step=step)  # type: ignore[union-attr]

        epoch_metrics = _summarise(sums, epoch, step, steps_rate, longest_step)
        epoch_metrics["epoch_time_s"] = steps_time  # the step loop only, not validation
        if service is not None:
            epoch_metrics["restarts_adopted"] = float(service.restarts_adopted)
            epoch_metrics["restarts_adopted_epoch"] = float(
                service.restarts_adopted - adopted_before
            )
            epoch_metrics["replay_size"] = float(service.replay_size())
            epoch_metrics["replay_size_at_start"] = float(replay_at_start)
            epoch_metrics.update(service.stats())
        if interrupted:
            epoch_metrics["interrupted"] = 1.0
        elif env.rank == 0:
            epoch_metrics.update(
                quick_validation(
                    bare(model),
                    test_loader,
                    precision,
                    generator=bare(generator) if generator is not None else None,
                    epsilon=cfg.ant.epsilon if generator is not None else None,
                )
            )
            print(_epoch_line(epoch_metrics, cfg.optim.epochs), flush=True)
        checkpoint = None
        last = epoch + 1 == cfg.optim.epochs or step >= total_steps
        due = (epoch + 1) % cfg.runtime.checkpoint_every_epochs == 0 or last or interrupted
        if env.rank == 0 and due:
            checkpoint = {
                # An interrupted epoch is redone on resume (from its first batch, with
                # the weights as they are now): record the last *complete* epoch.
                "epoch": epoch - 1 if interrupted else epoch,
                "step": step_at_epoch_start if interrupted else step,
                "steps_done": step,
                "interrupted": interrupted,
                "config": cfg.to_dict(),
                "model": cpu_state(bare(model)),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": cpu_state(bare(generator)) if generator is not None else None,
                "generator_optimizer": generator_optimizer.state_dict()
                if generator_optimizer
                else None,
                "service": service.state() if service is not None else None,
                "metrics": epoch_metrics,
            }
        env.report(epoch_metrics, checkpoint)
        final = epoch_metrics
        if interrupted:
            if env.rank == 0:
                print(f"interrupted in epoch {epoch + 1} at step {step}; checkpoint saved")
            break
    if service is not None:
        service.close()
    return final


STOP_CHECK_EVERY_STEPS = 10


def mode_uses_stylized(cfg: Any) -> bool:
    return cfg.noise.mode == "ant" and cfg.noise.shares.stylized > 0


def _cycle(loader):
    while True:
        yield from loader


def _apply_new_lr(optimizer, scheduler, lr: float, saved_lr: float) -> None:
    """Resuming with ``--set optim.lr=...`` changes the base lr; otherwise the restored
    optimizer and schedule continue exactly where they were."""
    if lr == saved_lr:
        return
    factor = lr / saved_lr
    for group in optimizer.param_groups:
        group["lr"] *= factor
        group["initial_lr"] = lr
    scheduler.base_lrs = [lr for _ in scheduler.base_lrs]


def _step_boundary(env, service, step: int, *, ant: bool) -> tuple[Any, bool]:
    """Rank 0 decides, all ranks follow: a finished fresh generator to adopt (ANT,
    checked every step, never waited for) and whether a stop was requested."""
    check_stop = step % STOP_CHECK_EVERY_STEPS == 0
    if not ant and not check_stop:
        return None, False
    ready = service.poll_restart() if ant and env.rank == 0 else None
    stop = env.stop_requested() if check_stop and env.rank == 0 else False
    if env.world_size > 1:
        ready, stop = env.broadcast((ready, stop))  # every rank acts at the same step
        if ready is not None and env.rank != 0:
            service.restarts_adopted += 1
    return ready, stop


def _adopt(generator, generator_optimizer, ready) -> None:
    bare(generator).load_state_dict(ready)
    # A fresh generator starts with fresh Adam moments (the old ones belong to another net).
    generator_optimizer.state.clear()


def _interval_events(cfg, step: int, service, generator, model) -> None:
    if cfg.ant.snapshot_every_steps and step % cfg.ant.snapshot_every_steps == 0:
        service.add_snapshot(bare(generator))
    if (
        cfg.ant.restart_every_steps
        and cfg.ant.restart_iterations > 0
        and step % cfg.ant.restart_every_steps == 0
    ):
        service.request_restart(bare(model), step=step)


def _summarise(sums: dict[str, float], epoch: int, step: int, rate: float, longest: float):
    steps = max(sums.get("steps", 1.0), 1.0)
    out: dict[str, float] = {
        "epoch": float(epoch + 1),
        "step": float(step),
        "train_loss": sums.get("loss", 0.0) / steps,
        "images_per_s": rate,
        "longest_step_s": longest,
    }
    for part in ("clean", "noise", "current", "replay", "stylized"):
        count = sums.get(f"{part}_count", 0.0)
        if count:
            out[f"train_{part}_loss"] = sums[f"{part}_loss_sum"] / count
            out[f"train_{part}_acc"] = sums[f"{part}_correct"] / count
    if "generator_ce" in sums:
        out["generator_ce"] = sums["generator_ce"] / steps
    return out


def _epoch_line(m: dict[str, float], epochs: int) -> str:
    keys = (
        "train_loss",
        "val_clean_acc",
        "val_gaussian_acc",
        "val_generator_acc",
        "images_per_s",
        "replay_size",
        "restarts_adopted",
    )
    shown = " ".join(f"{k}={m[k]:.4g}" for k in keys if k in m)
    return f"epoch {int(m['epoch'])}/{epochs} {shown}"
