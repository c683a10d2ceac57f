"""``antray tune``: Ray Tune over GNT's sigma or ANT's epsilon, where every trial is a
full orchestrated training (TorchTrainer + generator actors), as in RAY_NOTES.md section 4:
a plain function trainable builds one TorchTrainer per trial and reports through
``TuneReportCallback``; ASHA stops weak trials after their first epochs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig, apply_overrides, validate_config
from orchestrator.errors import UserError
from orchestrator.run_dir import CONFIG_FILE, prepare_run_dir
from tune_spaces import SPACES, asha_scheduler, param_space

RESULTS_FILE = "tune_results.csv"
BEST_FILE = "best.json"
REQUIRED_MODE = {"gnt_sigma": "gnt", "ant_epsilon": "ant"}


def tune_from_config(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    space_name: str,
    grid: list[float] | None = None,
    num_samples: int = 4,
    metric: str = "val_gaussian_acc",
    mode: str = "max",
    max_concurrent: int = 2,
    trial_cpus: float = 0.1,
    data_root: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    overwrite: bool = False,
    track: bool = True,
) -> dict[str, Any]:
    """Run the search; writes ``tune_results.csv`` and ``best.json`` to ``out_dir``."""
    from ray import tune

    from orchestrator.ray_runner import ensure_ray
    from orchestrator.train import absolute_paths
    from trainers.data import IMAGE_SPECS, resolve_data_root

    if space_name not in SPACES:
        raise UserError(f"unknown search space {space_name!r}; known: {sorted(SPACES)}")
    if cfg.noise.mode != REQUIRED_MODE[space_name]:
        raise UserError(
            f"--space {space_name} tunes noise.mode={REQUIRED_MODE[space_name]}, "
            f"but the config has noise.mode={cfg.noise.mode}"
        )
    if mode not in ("max", "min"):
        raise UserError(f"--mode must be max or min, got {mode!r}")
    space = SPACES[space_name]
    ensure_ray(address, num_cpus=num_cpus)
    cfg = absolute_paths(cfg)
    out = prepare_run_dir(Path(out_dir), resume=False, overwrite=overwrite)
    (out / CONFIG_FILE).write_text(cfg.to_yaml())
    base = cfg.to_dict()
    root = str(resolve_data_root(data_root or cfg.data.root).path)
    trials_dir = out / "trials"

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
            storage_path=trials_dir,
            run_name=f"trial-{tune.get_context().get_trial_id()}",  # stable: resumable
            callbacks=[TuneReportCallback()],
        )
        try:
            wait_until_ready(actors)
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
        tune.with_resources(trial, {"cpu": trial_cpus}),
        param_space=param_space(space, num_coordinates=spec.num_coordinates, grid=grid),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=1 if grid else num_samples,
            max_concurrent_trials=max_concurrent,
            scheduler=asha_scheduler(max_epochs=cfg.optim.epochs),
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(out), callbacks=callbacks),
    )
    results = tuner.fit()
    table = results.get_dataframe()
    table.to_csv(out / RESULTS_FILE, index=False)
    best = results.get_best_result()
    summary = {
        "space": space_name,
        "key": space.key,
        "metric": metric,
        "mode": mode,
        "best_value": float(best.config["value"]),
        "best_metrics": {
            k: v for k, v in (best.metrics or {}).items() if isinstance(v, int | float)
        },
        "trials": len(table),
        "errors": sum(1 for r in results if r.error is not None),
    }
    (out / BEST_FILE).write_text(json.dumps(summary, indent=2))
    if parent is not None:
        from orchestrator.tracking import finish_run

        finish_run(parent, out)
        summary["mlflow_run_id"], summary["mlflow_uri"] = parent.run_id, parent.uri
    return summary
