"""The per-worker training loop: reads like the algorithm in docs/METHOD.md.

    for each epoch:
        for each batch:
            step boundary: the generator's life (restart due? a fresh one ready? adopt it,
                           it enters the replay history) and stop (Ctrl-C), agreed by all ranks
            train_step:    (ANT) one generator step, then one classifier step on the mixed
                           batch: clean / current generator / replayed generators
        validation on the validation split (quick noise set; the generated corruption
        suite when the config asks), report metrics with a checkpoint

Set-up and resume live in ``trainers/run.py``, the generator's life in
``trainers/generator_life.py``, one step per mode in ``trainers/steps.py``. The
surroundings (one process or a Ray Train worker) come in as a ``WorkerEnv``; this file
never imports Ray.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from trainers.epoch_metrics import EpochTally, epoch_line
from trainers.progress import ProgressMeter
from trainers.run import Run, ServiceFactory, checkpoint_state, setup_run
from trainers.steps import bare
from trainers.sync import agree
from trainers.train_config import TrainConfig
from trainers.validation import SuiteValidationFactory, quick_validation
from trainers.worker_env import WorkerEnv

STOP_CHECK_EVERY_STEPS = 10
# With optim.ema_decay the suite measures the averaged weights under its own names and the
# live weights under these.
LIVE_PREFIX = "live_"


@dataclass
class EpochResult:
    metrics: dict[str, float]
    done: int = 0  # batches of the epoch trained (counting those a resume skipped)
    interrupted: bool = False
    error: dict[str, Any] | None = None  # a non-finite loss: the run stops


def run_worker(
    cfg: TrainConfig,
    env: WorkerEnv,
    *,
    make_service: ServiceFactory | None = None,
    data_root: str | None = None,
    make_suite_validation: SuiteValidationFactory | None = None,
) -> dict[str, Any]:
    """Train from a resolved config on this worker; returns the final metrics.

    ``cfg`` is an ``orchestrator.config.ExperimentConfig`` (``TrainConfig`` names what is
    read of it, so that trainers/ does not depend on orchestrator/). ``make_suite_validation``
    builds rank 0's epoch-end corruption-suite measurement (``orchestrator.suite_validation``).
    """
    run = setup_run(cfg, env, make_service=make_service, data_root=data_root)
    if env.rank == 0 and make_suite_validation is not None:
        run.suite_validation = make_suite_validation(cfg, data_root, run.precision.device)
    final: dict[str, Any] = {}
    try:
        for epoch in range(run.progress.start_epoch, cfg.optim.epochs):
            if run.progress.step >= run.progress.total_steps:
                break
            result = train_one_epoch(run, epoch)
            if result.error is not None:
                return result.error  # nothing reported: the last good checkpoint stays
            final = end_epoch(run, epoch, result)
            if result.interrupted:
                break
    finally:
        if run.life is not None:
            run.life.close()
    return final


def train_one_epoch(run: Run, epoch: int) -> EpochResult:
    """One pass over this worker's share of the training split, in the epoch's seeded
    order; a run resumed mid-epoch skips the batches it already trained on."""
    at, classifier = run.progress, run.classifier
    skip = at.resume_at if epoch == at.start_epoch else 0
    run.batches.order.set_epoch(epoch, start=skip)
    tally, meter = EpochTally(), _meter(run, epoch)
    if run.life is not None:
        run.life.begin_epoch()
    done = skip  # batches of this epoch trained so far
    for x, y in run.batches.loader:
        t0 = time.perf_counter()
        if step_boundary(run, epoch_start=done == 0):
            return EpochResult(_summary(run, epoch, tally, meter), done, interrupted=True)
        metrics = run.train_step(x, y)
        if not math.isfinite(metrics["loss"]):
            return EpochResult({}, error=_nonfinite(run, epoch, metrics["loss"]))
        at.step += 1
        done += 1
        if classifier.average is not None:
            classifier.average.update(bare(classifier.model))
        tally.add(metrics, time.perf_counter() - t0)
        meter.update(at.step, int(metrics["images"]), metrics["loss"])
        if run.life is not None:
            run.life.after_step(at.step)
        if at.step >= at.total_steps:
            break
        if _mid_epoch_checkpoint_due(run, done):
            _report_mid_epoch(run, epoch, done, tally)
    return EpochResult(_summary(run, epoch, tally, meter), done)


def step_boundary(run: Run, *, epoch_start: bool) -> bool:
    """Rank 0 decides, every rank follows at the same step: adopt a finished restart (ANT)
    and stop when the user asked to (checked every few steps). Returns True to stop.

    The agreement is one tiny tensor broadcast, only on steps where something could have
    changed; the generator's weights travel only when a restart is ready."""
    env, life, step = run.env, run.life, run.progress.step
    check_stop = step % STOP_CHECK_EVERY_STEPS == 0
    ready = life.before_step(step, epoch_start=epoch_start) if life is not None else False
    stop = check_stop and env.rank == 0 and env.stop_requested()
    restarts = life is not None and life.schedule.restarts
    if env.world_size > 1 and (check_stop or restarts):
        ready, stop = agree(env, [ready, stop], run.precision.device)
    if ready:
        life.adopt()  # type: ignore[union-attr]
    return stop


def end_epoch(run: Run, epoch: int, result: EpochResult) -> dict[str, float]:
    """Learning-rate schedule, quick validation (rank 0), and one report with a checkpoint."""
    cfg, env, classifier = run.cfg, run.env, run.classifier
    metrics = result.metrics
    if result.interrupted:
        metrics["interrupted"] = 1.0
    else:
        classifier.scheduler.step()
        if env.rank == 0 and run.batches.val_loader is not None:
            metrics.update(_validate(run))
        if run.suite_validation is not None:
            metrics.update(run.suite_validation(classifier.served()))
            if classifier.average is not None:  # the live weights too, beside the average
                live = run.suite_validation(bare(classifier.model))
                metrics.update({LIVE_PREFIX + k: v for k, v in live.items()})
        if classifier.best is not None:  # rank 0, optim.select_epoch=best_val
            classifier.best.offer(epoch, metrics, classifier.served())
            metrics.update(classifier.best.metrics())
        if env.rank == 0:
            print(epoch_line(metrics, cfg.optim.epochs), flush=True)
    last = epoch + 1 == cfg.optim.epochs or run.progress.step >= run.progress.total_steps
    due = (epoch + 1) % cfg.runtime.checkpoint_every_epochs == 0 or last or result.interrupted
    checkpoint = None
    if env.rank == 0 and due:
        checkpoint = checkpoint_state(
            run,
            epoch=epoch,
            epoch_step=result.done,
            metrics=metrics,
            interrupted=result.interrupted,
        )
    env.report(metrics, checkpoint)
    if result.interrupted and env.rank == 0:
        print(f"interrupted in epoch {epoch + 1} at step {run.progress.step}; checkpoint saved")
    return metrics


def _validate(run: Run) -> dict[str, float]:
    generator = bare(run.life.generator) if run.life is not None else None
    return quick_validation(
        run.classifier.served(),
        run.batches.val_loader,  # type: ignore[arg-type]
        run.precision,
        generator=generator,
        epsilon=run.cfg.ant.epsilon if generator is not None else None,
    )


def _meter(run: Run, epoch: int) -> ProgressMeter:
    return ProgressMeter(
        run.progress.total_steps,
        every=run.cfg.runtime.log_every_steps,
        enabled=run.env.rank == 0,
        prefix=f"epoch {epoch + 1}/{run.cfg.optim.epochs} ",
    )


def _summary(run: Run, epoch: int, tally: EpochTally, meter: ProgressMeter) -> dict[str, float]:
    metrics = tally.summary(epoch=epoch, step=run.progress.step, images_per_s=meter.rate())
    metrics["epoch_time_s"] = time.perf_counter() - meter.start  # the step loop only
    # The data-parallel group's size this epoch ran at (elastic groups change it).
    metrics["workers"] = float(run.env.world_size)
    steady = meter.steady_rate()
    if steady is not None:
        metrics["steady_images_per_s"] = steady
    if run.life is not None:
        metrics.update(run.life.epoch_metrics())
    return metrics


def _mid_epoch_checkpoint_due(run: Run, done: int) -> bool:
    every, at = run.cfg.runtime.checkpoint_every_steps, run.progress
    return every is not None and at.step % every == 0 and done < at.steps_per_epoch


def _report_mid_epoch(run: Run, epoch: int, done: int, tally: EpochTally) -> None:
    """Every rank reports (a barrier on Ray); rank 0 attaches a checkpoint that resumes
    at this step of this epoch."""
    metrics = {
        "epoch": float(epoch + 1),
        "step": float(run.progress.step),
        "mid_epoch": 1.0,
        "train_loss": tally.sums.get("loss", 0.0) / max(tally.steps, 1),
    }
    checkpoint = None
    if run.env.rank == 0:
        checkpoint = checkpoint_state(
            run, epoch=epoch, epoch_step=done, metrics=metrics, mid_epoch=True
        )
    run.env.report(metrics, checkpoint)


def _nonfinite(run: Run, epoch: int, loss: float) -> dict[str, Any]:
    """Stop cleanly on every rank (no retry would help) and keep the last good checkpoint:
    nothing is reported with state from here on."""
    step = run.progress.step
    message = (
        f"loss is {loss} at epoch {epoch + 1} step {step + 1}; the last good checkpoint is kept"
    )
    if run.env.rank == 0:
        print(f"antray: {message}", flush=True)
    return {"error": "nonfinite_loss", "message": message, "step": float(step)}
