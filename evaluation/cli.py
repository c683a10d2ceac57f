"""``antray eval``: corruption benchmark, eps* and attacks of one model, written as a report.

    antray eval --checkpoint RUN_DIR --benchmark mnist-c --generated --eps-star gaussian
    antray eval --torchvision resnet50 --weights resnet50-0676ba61.pth --benchmark imagenet-c

Writes results.json, results.parquet, report.md and plots to ``--out`` (default
``<run_dir>/eval-<benchmark>`` for a checkpoint, ``eval/<model>-<benchmark>`` for torchvision,
with ``-generated`` appended for the generated suite) and logs them to MLflow when
``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` is set. User errors raise ``EvalInputError``,
``CheckpointError``, ``BenchmarkDataError`` or ``DataMissingError`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from evaluation.benchmarks import BENCHMARKS
from evaluation.runner import (
    ATTACKS,
    DEFAULT_PGD_EPSILONS,
    EPS_STAR_DIRECTIONS,
    EvalInputError,
    ShardMapper,
)

_PARSER_KEY = "_eval_parser"


def add_eval_parser(sub: Any) -> None:
    """Register ``eval`` on the ``antray`` subcommand parser."""
    p = sub.add_parser(
        "eval",
        help="corruption benchmarks, eps*, attacks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="run directory or state.pt of a trained model")
    model.add_argument("--torchvision", metavar="NAME", help="a torchvision model, e.g. resnet50")
    p.add_argument("--weights", help="--torchvision: local state_dict (no download)")
    p.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    p.add_argument("--data-root", help="datasets root (else $ANTRAY_DATA_ROOT, else ./data)")
    p.add_argument(
        "--benchmark-root",
        help="benchmark files (default: the data root; <data root>/imagenet-c for imagenet-c)",
    )
    p.add_argument(
        "--generated",
        action="store_true",
        help="corrupt the clean test set on the fly (12 corruptions x severities 1-5) "
        "instead of reading the official files; reports say 'generated'",
    )
    p.add_argument("--corruptions", help="comma-separated subset (default: all)")
    p.add_argument("--severities", help="comma-separated subset of 1..5 (default: all)")
    p.add_argument("--limit", type=int, help="images per split and of the clean set")
    p.add_argument("--eps-star", default="", help=f"directions: {','.join(EPS_STAR_DIRECTIONS)}")
    p.add_argument("--eps-star-limit", type=int, default=500, help="clean images for eps*")
    p.add_argument(
        "--epsilon", type=float, help="adversarial eps*: generator l2 size (default: checkpoint's)"
    )
    p.add_argument(
        "--generator", choices=["1x1", "3x3"], help="adversarial eps* generator (checkpoint's)"
    )
    p.add_argument("--adv-seeds", type=int, default=4, help="adversarial eps*: generators")
    p.add_argument("--adv-iterations", type=int, default=1000, help="Adam steps per generator")
    p.add_argument("--attacks", default="", help=f"attacks: {','.join(ATTACKS)}")
    p.add_argument("--attack-limit", type=int, default=500, help="clean images for attacks")
    p.add_argument("--pgd-l2", help="PGD l2 epsilons (default per benchmark, see docs)")
    p.add_argument("--pgd-linf", help="PGD linf epsilons (default per benchmark)")
    p.add_argument("--pgd-steps", type=int, default=50)
    p.add_argument("--ddn-steps", type=int, default=100)
    p.add_argument("--num-workers", type=int, default=1, help="Ray tasks at a time (1: no Ray)")
    p.add_argument("--address", help="join a Ray cluster: auto or ray://host:port")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--loader-workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--out", help="report directory")
    p.add_argument("--name", help="model label in the report (default: run directory name)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (else $MLFLOW_TRACKING_URI)")
    p.add_argument("--mlflow-experiment", default="antray", help="MLflow experiment name")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(**{_PARSER_KEY: p})


# ------------------------------------------------------------------------------ parsing


def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items


def _numbers(text: str | None, kind: type, option: str) -> list[Any] | None:
    items = _split_list(text)
    if items is None:
        return None
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise EvalInputError(f"{option} expects comma-separated numbers, got {text!r}") from None


def command_line(args: argparse.Namespace) -> str:
    """The ``antray eval`` command that reproduces ``args`` (options that differ from defaults)."""
    parser: argparse.ArgumentParser | None = getattr(args, _PARSER_KEY, None)
    parts = ["antray", "eval"]
    if parser is None:
        return shlex.join(parts)
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", _PARSER_KEY):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[0]
        parts += [flag] if isinstance(value, bool) else [flag, str(value)]
    return shlex.join(parts)


def _load_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from evaluation.model_loading import load_checkpoint_model, load_torchvision_model

    if args.checkpoint:
        if args.weights:
            raise EvalInputError("--weights goes with --torchvision, not --checkpoint")
        return load_checkpoint_model(args.checkpoint)
    return load_torchvision_model(args.torchvision, args.weights)


def default_out_dir(info: dict[str, Any], benchmark: str, generated: bool) -> Path:
    suffix = f"eval-{benchmark}" + ("-generated" if generated else "")
    if info.get("run_dir"):
        return Path(info["run_dir"]) / suffix
    return Path("eval") / (f"{info['model']}-{benchmark}" + ("-generated" if generated else ""))


def _pgd_epsilons(args: argparse.Namespace) -> dict[str, list[float]] | None:
    l2 = _numbers(args.pgd_l2, float, "--pgd-l2")
    linf = _numbers(args.pgd_linf, float, "--pgd-linf")
    if l2 is None and linf is None:
        return None
    defaults = DEFAULT_PGD_EPSILONS[args.benchmark]
    return {
        "l2": list(defaults["l2"]) if l2 is None else l2,
        "linf": list(defaults["linf"]) if linf is None else linf,
    }


def _mlflow_params(results: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    meta = results["metadata"]
    params = {
        k: meta.get(k)
        for k in ("benchmark", "model", "data_source", "seed", "limit", "clean_dataset", "device")
    }
    params |= {
        "corruptions": ",".join(meta["corruptions"]),
        "severities": ",".join(map(str, meta["severities"])),
        "eps_star": ",".join(results["eps_star"]),
        "attacks": ",".join(results["attacks"]),
        "checkpoint": info.get("checkpoint"),
        "architecture": info.get("architecture"),
    }
    return {k: v for k, v in params.items() if v not in (None, "")}


def _write_and_log(
    results: dict[str, Any], out: Path, args: argparse.Namespace, info: dict[str, Any]
) -> tuple[dict[str, Path], str | None]:
    from evaluation.report import log_report_to_mlflow, write_report

    uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return write_report(results, out), None
    from mlflow.tracking import MlflowClient

    # Client API only: the fluent API would create ./mlflow.db and leave global state.
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(args.mlflow_experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    elif uri.startswith("sqlite:"):  # artifacts beside the report, not in the cwd
        experiment_id = client.create_experiment(
            args.mlflow_experiment, artifact_location=(out / "mlartifacts").resolve().as_uri()
        )
    else:
        experiment_id = client.create_experiment(args.mlflow_experiment)
    run_name = f"eval-{results['metadata']['model']}-{args.benchmark}"
    source = results["metadata"]["data_source"]
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={"antray.kind": "eval", "antray.data_source": source},
    )
    run_id = run.info.run_id
    results["metadata"]["run_id"] = run_id
    try:
        for key, value in _mlflow_params(results, info).items():
            client.log_param(run_id, key, value)
        paths = write_report(results, out)
        log_report_to_mlflow(paths, results, tracking_uri=uri, run_id=run_id)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return paths, run_id


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f} %" if pct else f"{value:.4g}"


def run_eval(args: argparse.Namespace, *, distribute: ShardMapper | None = None) -> int:
    """Entry point of ``antray eval``; ``distribute`` overrides the Ray fan-out (tests)."""
    from evaluation.runner import check_model_dataset, evaluate

    if args.num_workers is not None and args.num_workers < 1:
        raise EvalInputError(f"--num-workers must be >= 1, got {args.num_workers}")
    model, info = _load_model(args)
    check_model_dataset(args.benchmark, info.get("dataset"))
    if args.name:
        info["model"] = args.name
    severities = _numbers(args.severities, int, "--severities")
    if args.num_workers > 1 and distribute is None:
        raise EvalInputError(
            "--num-workers > 1 needs a Ray shard mapper (run through `antray eval`)"
        )
    generated = bool(args.generated)
    out = Path(args.out) if args.out else default_out_dir(info, args.benchmark, generated)
    results = evaluate(
        model,
        benchmark=args.benchmark,
        data_root=args.data_root,
        benchmark_root=args.benchmark_root,
        generated=generated,
        corruptions=_split_list(args.corruptions),
        severities=severities,
        limit=args.limit,
        eps_star_directions=_split_list(args.eps_star) or (),
        eps_star_limit=args.eps_star_limit,
        epsilon=args.epsilon if args.epsilon is not None else info.get("epsilon"),
        generator_kind=args.generator or info.get("generator"),
        adv_seeds=args.adv_seeds,
        adv_iterations=args.adv_iterations,
        attacks=_split_list(args.attacks) or (),
        attack_limit=args.attack_limit,
        pgd_epsilons=_pgd_epsilons(args),
        pgd_steps=args.pgd_steps,
        ddn_steps=args.ddn_steps,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        num_workers=args.num_workers,
        distribute=distribute,
        loader_workers=args.loader_workers,
        model_name=str(info["model"]),
        command=command_line(args),
        metadata={"checkpoint": {k: v for k, v in info.items() if k != "model"}},
    )
    paths, mlflow_run = _write_and_log(results, out, args, info)

    source = results["metadata"]["data_source"]
    print(f"model: {info['model']}  benchmark: {args.benchmark} ({source})")
    print(f"clean accuracy: {_fmt(results['clean_accuracy'])}")
    print(f"mean corruption accuracy: {_fmt(results['mean_accuracy'])}")
    if results["mean_accuracy_without_noise"] is not None:
        print(f"mean without noise: {_fmt(results['mean_accuracy_without_noise'])}")
    if results["mce"] is not None:
        print(f"mCE: {results['mce']:.1f}")
    for direction, entry in results["eps_star"].items():
        value = entry.get("median", entry.get("mean"))
        print(f"eps* {direction}: {_fmt(value, pct=False)}")
    for name, entry in results["attacks"].items():
        value = entry.get("accuracy", entry.get("median_l2"))
        print(f"{name}: {_fmt(value, pct='accuracy' in entry)}")
    for kind, path in paths.items():
        print(f"{kind}: {path.resolve()}")
    if mlflow_run:
        print(f"mlflow run: {mlflow_run}")
    return 0


__all__ = ["add_eval_parser", "command_line", "default_out_dir", "run_eval"]
