"""``antray tune``: Ray Tune over GNT's sigma or ANT's epsilon, where every trial is a
full orchestrated training (TorchTrainer + generator actors), the Train V2 way (Train V2
refuses ``Tuner(TorchTrainer(...))``): a plain function trainable builds one TorchTrainer
per trial and reports through ``TuneReportCallback``; ASHA stops weak trials after their
first epochs (``--scheduler fifo``: every trial trains all its epochs)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig, apply_overrides, validate_config
from orchestrator.errors import TrainingFault, UserError
from orchestrator.ray_instance import HEAD_SLIVER, OUTSIDE_ANY_PLACEMENT_GROUP
from orchestrator.run_dir import CONFIG_FILE, prepare_run_dir
from orchestrator.storage import RunLocation, Storage
from orchestrator.suite_validation import MEAN_KEY, suite_metrics
from trainers.best_epoch import reported_metric
from tune_spaces import SPACES, SearchSpace, asha_scheduler, param_space
from tune_spaces.spaces import space_bounds

RESULTS_FILE = "tune_results.csv"
BEST_FILE = "best.json"
REQUIRED_MODE = {"gnt_sigma": "gnt", "ant_epsilon": "ant", "ant_restart_iterations": "ant"}
# asha: stop weak trials at early epochs; fifo: every trial trains to its last epoch
SCHEDULERS = ("asha", "fifo")


class TrialsFailed(TrainingFault):
    """Every trial failed: nothing to rank (their errors are in the Tune output)."""

    exit_code = 1


def tune_from_config(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    space_name: str,
    grid: list[float] | None = None,
    num_samples: int = 4,
    metric: str | None = None,
    mode: str = "max",
    max_concurrent: int = 2,
    scheduler: str = "asha",
    trial_cpus: float = 0.1,
    data_root: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    overwrite: bool = False,
    track: bool = True,
) -> dict[str, Any]:
    """Run the search; writes ``tune_results.csv`` and ``best.json`` to ``out_dir``.

    Each trial reserves what it holds besides its Train workers (the trial driver on the
    head, the generator actor) as one placement group, and no more trials run at once
    than the cluster can hold with their workers: two trials never each grab half."""
    from ray import tune

    from orchestrator import preflight
    from orchestrator.data_sync import is_uri
    from orchestrator.run_dir import check_run_dir
    from orchestrator.train import absolute_paths
    from trainers.data import IMAGE_SPECS, resolve_data_root

    if space_name not in SPACES:
        raise UserError(f"unknown search space {space_name!r}; known: {sorted(SPACES)}")
    if cfg.noise.mode != REQUIRED_MODE[space_name]:
        raise UserError(
            f"--space {space_name} tunes noise.mode={REQUIRED_MODE[space_name]}, "
            f"but the config has noise.mode={cfg.noise.mode}"
        )
    metric = metric or default_metric(cfg)
    check_metric(cfg, metric)
    space = SPACES[space_name]
    check_space_values(cfg, space, grid)
    if mode not in ("max", "min"):
        raise UserError(f"--mode must be max or min, got {mode!r}")
    if scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    if max_concurrent < 1:
        raise UserError(f"--max-concurrent must be at least 1, got {max_concurrent}")
    cfg = absolute_paths(cfg)
    out = check_run_dir(Path(out_dir), resume=False, overwrite=overwrite)
    location = tune_location(cfg, out)
    preflight.check_run(
        cfg,
        location,
        backend="ray",
        data_root=data_root,
        address=address,
        num_cpus=num_cpus,
        bundles=preflight.run_bundles(cfg, trial_cpus=trial_cpus),
        what="one trial",
    )
    concurrent = trials_at_once(cfg, trial_cpus, max_concurrent, num_cpus=num_cpus, address=address)
    out = prepare_run_dir(out, resume=False, overwrite=overwrite)
    (out / CONFIG_FILE).write_text(cfg.to_yaml())
    location.write(out)
    base = cfg.to_dict()
    root = data_root or cfg.data.root
    if not is_uri(root):
        root = str(resolve_data_root(root).path)
    trials = location.storage.join(f"{location.name}-trials")

    def trial(trial_config: dict[str, Any]) -> None:
        from ray.tune.integration.ray_train import TuneReportCallback

        from orchestrator.ray_runner import build_trainer, kill_actors, wait_until_ready

        value = float(trial_config["value"])
        trial_cfg = validate_config(
            apply_overrides(base, space.overrides(value)), source=f"<trial {space.key}={value}>"
        )
        trainer, actors = build_trainer(
            trial_cfg,
            data_root=root,
            # Stable per trial: a resumed search resumes its trials' checkpoints.
            location=RunLocation(trials, f"trial-{tune.get_context().get_trial_id()}"),
            callbacks=[TuneReportCallback()],
            generator_strategy=_generator_bundle(),
        )
        try:
            wait_until_ready(actors, trial_cfg)
            trainer.fit()
        finally:
            kill_actors(actors)

    callbacks = []
    parent = None
    if track:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        from orchestrator.tracking import start_run

        parent = start_run(
            base, out, uri=cfg.tracking.mlflow_uri, experiment=cfg.tracking.experiment, run_id=None
        )
        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=parent.uri,
                experiment_name=cfg.tracking.experiment,
                tags={"mlflow.parentRunId": parent.run_id, "antray.space": space_name},
            )
        )
    spec = IMAGE_SPECS[cfg.data.dataset]
    tuner = tune.Tuner(
        tune.with_resources(trial, trial_resources(cfg, trial_cpus)),
        param_space=param_space(space, num_coordinates=spec.num_coordinates, grid=grid),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=1 if grid else num_samples,
            max_concurrent_trials=concurrent,
            # fifo: every trial trains all its epochs (Tune's default scheduler)
            scheduler=asha_scheduler(max_epochs=cfg.optim.epochs) if scheduler == "asha" else None,
        ),
        run_config=tune.RunConfig(
            name=location.name, callbacks=callbacks, **location.storage.run_config_args()
        ),
    )
    results = tuner.fit()
    table = results.get_dataframe()
    table.to_csv(out / RESULTS_FILE, index=False)
    errors = sum(1 for r in results if r.error is not None)
    if errors == len(table) or not len(table):
        raise TrialsFailed(f"all {len(table)} trials failed; see {out}")
    best = results.get_best_result()
    summary = {
        "space": space_name,
        "key": space.key,
        "metric": metric,
        "mode": mode,
        "scheduler": scheduler,
        "best_value": float(best.config["value"]),
        "best_metrics": {
            k: v for k, v in (best.metrics or {}).items() if isinstance(v, int | float)
        },
        "trials": len(table),
        "errors": errors,
        "max_concurrent": concurrent,
    }
    (out / BEST_FILE).write_text(json.dumps(summary, indent=2))
    if parent is not None:
        from orchestrator.tracking import finish_run

        finish_run(parent, out)
        summary["mlflow_run_id"], summary["mlflow_uri"] = parent.run_id, parent.uri
    return summary


def trials_at_once(
    cfg: ExperimentConfig,
    trial_cpus: float,
    max_concurrent: int,
    *,
    num_cpus: int | None,
    address: str | None,
) -> int:
    """No more trials at once than the cluster can hold with their Train workers, packed
    on its node types (each trial with its full worker group): Tune reserves only the
    trial driver and generator bundles, and trials that each got half the GPUs they need
    would wait for ever. Where the autoscaler's node types are not visible, ``max_concurrent``."""
    import ray

    from orchestrator import capacity, preflight
    from orchestrator.ray_instance import joins_cluster

    rt = cfg.runtime
    head = rt.head_resource if ray.cluster_resources().get(rt.head_resource, 0) > 0 else None
    if joins_cluster(address):
        shape = capacity.connected_shape()
    else:
        shape = preflight.local_capacity(num_cpus, rt.head_resource)
    if shape is None:
        return max_concurrent
    full = preflight.run_bundles(
        cfg, workers=rt.max_workers, trial_cpus=trial_cpus, head_resource=head
    )
    fits = capacity.copies_that_fit(full, shape, max_concurrent) or 1
    if fits < max_concurrent:
        print(
            f"[antray] {fits} trial(s) at a time: each needs "
            f"{capacity.describe_bundles(full)} and the cluster holds at most {shape.describe()}",
            file=sys.stderr,
            flush=True,
        )
    return fits


def check_metric(cfg: ExperimentConfig, metric: str) -> None:
    """A corruption-suite metric must be one the config's suite reports, and a ``best_``
    metric one that ``optim.select_epoch: best_val`` reports (else Tune would fail at the
    first report, after Ray and the output directory exist)."""
    if metric.startswith("best_"):
        ranked = reported_metric(cfg.data.val_suite)
        if cfg.optim.select_epoch != "best_val" or metric != ranked:
            raise UserError(
                f"--metric {metric}: best_ metrics are reported with optim.select_epoch="
                f"best_val, which here reports {ranked}"
            )
        return
    if not metric.startswith("val_corruption_"):
        return
    suite = cfg.data.val_suite
    if suite == "none":
        raise UserError(
            f"--metric {metric} is measured only with data.val_suite set "
            "(e.g. --set data.val_suite=mnist-c)"
        )
    known = suite_metrics(suite)
    if metric not in known:
        raise UserError(f"--metric {metric}: data.val_suite={suite} reports {', '.join(known)}")


def check_grid_value(cfg: ExperimentConfig, space: SearchSpace, value: float) -> None:
    """Each --grid value makes a valid trial config (checked before anything starts)."""
    if space.integer and not float(value).is_integer():
        raise UserError(f"--grid {value:g}: {space.key} takes whole numbers")
    validate_config(
        apply_overrides(cfg.to_dict(), space.overrides(value)),
        source=f"--grid {space.key}={value:g}",
    )


def check_space_values(cfg: ExperimentConfig, space: SearchSpace, grid: list[float] | None) -> None:
    """Every value a trial can get makes a valid trial config: each ``--grid`` value, else
    both ends of the sampled range (an epsilon out of the dataset's reach is refused here,
    with the limit, before anything starts)."""
    from trainers.data import IMAGE_SPECS

    if grid:
        for value in grid:
            check_grid_value(cfg, space, value)
        return
    spec = IMAGE_SPECS[cfg.data.dataset]
    low, high = space_bounds(space, num_coordinates=spec.num_coordinates)
    for value in (low, high):
        validate_config(
            apply_overrides(cfg.to_dict(), space.overrides(value)),
            source=f"--space {space.name} (samples {space.key} from {low:.4g} to {high:.4g})",
        )


def default_metric(cfg: ExperimentConfig) -> str:
    """What trials are ranked by unless ``--metric`` says: the generated corruption suite on
    the validation split when the config measures it, else the quick Gaussian set; with
    ``optim.select_epoch: best_val``, the best epoch's score (the epoch a trial serves)."""
    if cfg.optim.select_epoch == "best_val":
        return reported_metric(cfg.data.val_suite)
    return MEAN_KEY if cfg.data.val_suite != "none" else "val_gaussian_acc"


def tune_location(cfg: ExperimentConfig, out: Path) -> RunLocation:
    """Tune's own experiment and its trials' Train runs: under ``runtime.storage``, else
    in the output directory (one machine)."""
    if cfg.runtime.storage:
        storage = Storage.parse(cfg.runtime.storage, cfg.runtime.storage_endpoint)
        return RunLocation(storage, f"{out.name}-{uuid.uuid4().hex[:8]}")
    return RunLocation(Storage(str(out)), "tune")


def trial_resources(cfg: ExperimentConfig, trial_cpus: float) -> Any:
    """One placement group per trial: bundle 0 the trial driver (on the head, where the
    head marker exists), bundle 1 the generator actor (ANT). Train V2 reserves the
    workers itself when the trial starts them."""
    import ray
    from ray.tune import PlacementGroupFactory

    rt = cfg.runtime
    # On the head (its marker offered), the driver asks for the marker alone: it only
    # waits on its trial's fit(), and a head without CPUs (the usual autoscaling head)
    # must still hold it. Elsewhere, a sliver of CPU.
    driver: dict[str, float] = {"CPU": trial_cpus}
    if ray.cluster_resources().get(rt.head_resource, 0) > 0:
        driver = {rt.head_resource: HEAD_SLIVER}
    bundles = [driver]
    if cfg.noise.mode == "ant":
        generator = {"CPU": rt.generator_actor_cpus, "GPU": rt.generator_actor_gpus}
        bundles.append({k: v for k, v in generator.items() if v > 0})
    return PlacementGroupFactory(bundles, strategy="PACK")


def _generator_bundle() -> Any:
    """Inside a trial: schedule the generator actor into bundle 1 of the trial's group."""
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = get_current_placement_group()
    if group is None or len(group.bundle_specs) < 2:
        return OUTSIDE_ANY_PLACEMENT_GROUP
    return PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=1)
