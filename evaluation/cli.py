"""``antray eval``: corruption benchmark, eps* and attacks of one model, written as a report.

    antray eval --checkpoint RUN_DIR --benchmark mnist-c --generated --eps-star gaussian
    antray eval --torchvision resnet50 --weights resnet50-0676ba61.pth --benchmark imagenet-c

    antray eval --checkpoint RUN_DIR --benchmark mnist-c --generated --split val

``--split val`` evaluates generated corruptions of the validation split carved from the
training images (the checkpoint's ``data.val_size`` / ``data.split_seed`` unless given):
what tuning and choosing defaults read; the test images are for final numbers only.

Writes results.json, results.parquet, report.md and plots to ``--out`` (default
``<run_dir>/eval-<benchmark>`` for a checkpoint, ``eval/<model>-<benchmark>`` for torchvision,
with ``-generated`` and ``-val`` appended for the generated suite and the validation split)
and logs them to MLflow when ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` is set. The flags
only build an ``evaluation.request.EvalRequest``, which owns defaults and validation. User
errors raise ``EvalInputError``, ``CheckpointError``, ``BenchmarkDataError`` or
``DataMissingError`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from evaluation.benchmarks import BENCHMARKS
from evaluation.corruption_loop import ShardMapper
from evaluation.request import (
    ATTACKS,
    CLEAN_DATASETS,
    EPS_STAR_DIRECTIONS,
    EvalInputError,
    EvalRequest,
    check_model_dataset,
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
        help="corrupt the clean images on the fly (the benchmark's generated suite) "
        "instead of reading the official files; reports say 'generated'",
    )
    p.add_argument(
        "--split",
        choices=["val", "test"],
        default="test",
        help="test: the test images; val: the validation split carved from the training "
        "images (needs --generated), for tuning and choosing defaults",
    )
    p.add_argument(
        "--val-size",
        type=int,
        help="validation images carved from the training set (default: the checkpoint's "
        "data.val_size, else the dataset's default)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        help="seed of that split (default: the checkpoint's data.split_seed, else 0)",
    )
    p.add_argument("--corruptions", help="comma-separated subset (default: all)")
    p.add_argument("--severities", help="comma-separated subset (default: all)")
    p.add_argument("--limit", type=int, help="images per split and of the clean set")
    p.add_argument("--eps-star", default="", help=f"directions: {','.join(EPS_STAR_DIRECTIONS)}")
    p.add_argument("--eps-star-limit", type=int, default=500, help="clean images for eps*")
    p.add_argument(
        "--eps-star-epsilon",
        type=float,
        help="adversarial eps*: the generators' l2 size, the same for every model compared "
        "(default: the paper's 135 at 224x224x3 at this image size: 9.74 MNIST, 19.3 CIFAR)",
    )
    p.add_argument(
        "--generator", choices=["1x1", "3x3"], help="adversarial eps* generator (default 1x1)"
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


def default_out_dir(
    info: dict[str, Any], benchmark: str, generated: bool, split: str = "test"
) -> Path:
    suffix = ("-generated" if generated else "") + ("-val" if split == "val" else "")
    if info.get("run_dir"):
        return Path(info["run_dir"]) / f"eval-{benchmark}{suffix}"
    return Path("eval") / f"{info['model']}-{benchmark}{suffix}"


def _split_defaults(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """``--val-size`` / ``--split-seed``, else the checkpoint's own split of the same images."""
    same_images = info.get("dataset") == CLEAN_DATASETS[args.benchmark]
    out = {}
    for key in ("val_size", "split_seed"):
        given = getattr(args, key)
        out[key] = given if given is not None else (info.get(key) if same_images else None)
    return out


def build_request(args: argparse.Namespace, info: dict[str, Any]) -> EvalRequest:
    """The :class:`EvalRequest` the flags describe (``info``: the loaded model's)."""
    return EvalRequest.build(
        benchmark=args.benchmark,
        split=args.split,
        **_split_defaults(args, info),
        data_root=args.data_root,
        benchmark_root=args.benchmark_root,
        generated=bool(args.generated),
        corruptions=_split_list(args.corruptions),
        severities=_numbers(args.severities, int, "--severities"),
        limit=args.limit,
        eps_star=_split_list(args.eps_star) or (),
        eps_star_limit=args.eps_star_limit,
        eps_star_epsilon=args.eps_star_epsilon,
        generator=args.generator,
        adv_seeds=args.adv_seeds,
        adv_iterations=args.adv_iterations,
        attacks=_split_list(args.attacks) or (),
        attack_limit=args.attack_limit,
        pgd_l2=_numbers(args.pgd_l2, float, "--pgd-l2"),
        pgd_linf=_numbers(args.pgd_linf, float, "--pgd-linf"),
        pgd_steps=args.pgd_steps,
        ddn_steps=args.ddn_steps,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        loader_workers=args.loader_workers,
        progress=not args.no_progress,
        model_name=str(args.name or info["model"]),
        command=command_line(args),
    )


def _mlflow_params(results: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    meta = results["metadata"]
    keys = ("benchmark", "split", "model", "data_source", "seed", "limit", "clean_dataset")
    params = {k: meta.get(k) for k in (*keys, "device")}
    params |= {
        "corruptions": ",".join(meta["corruptions"]),
        "severities": ",".join(map(str, meta["severities"])),
        "eps_star": ",".join(results["eps_star"]),
        "attacks": ",".join(results["attacks"]),
        "eps_star_epsilon": meta.get("request", {}).get("eps_star_epsilon"),
        "checkpoint": info.get("checkpoint"),
        "architecture": info.get("architecture"),
        "weights": info.get("weights"),
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
    run_name = f"eval-{results['metadata']['model']}-{args.benchmark}-{args.split}"
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


def _eps_line(direction: str, entry: dict[str, Any]) -> str:
    if "median" in entry:
        never = f"{entry['never_flipped']} of {entry['n']} never flipped"
        return f"eps* {direction}: {_fmt(entry['median'], pct=False)} ({never})"
    std = _fmt(entry.get("std"), pct=False)
    return (
        f"eps* {direction}: {_fmt(entry['mean'], pct=False)} +- {std} "
        f"(generator {entry['generator']}, epsilon {entry['epsilon']:.4g})"
    )


def run_eval(args: argparse.Namespace, *, distribute: ShardMapper | None = None) -> int:
    """Entry point of ``antray eval``; ``distribute`` overrides the Ray fan-out (tests)."""
    from evaluation.runner import evaluate

    model, info = _load_model(args)
    check_model_dataset(args.benchmark, info.get("dataset"))
    request = build_request(args, info)  # every bad flag value fails here, one line
    out = (
        Path(args.out)
        if args.out
        else default_out_dir(info, args.benchmark, request.generated, request.split)
    )
    checkpoint = {k: v for k, v in info.items() if k != "model"}
    results = evaluate(model, request, distribute=distribute, metadata={"checkpoint": checkpoint})
    paths, mlflow_run = _write_and_log(results, out, args, info)

    source = results["metadata"]["data_source"]
    weights = f"  weights: {info['weights']}" if info.get("weights") == "averaged" else ""
    print(
        f"model: {request.model_name}  benchmark: {args.benchmark} ({source}, {request.split})"
        + weights
    )
    print(f"clean accuracy: {_fmt(results['clean_accuracy'])}")
    print(f"mean corruption accuracy: {_fmt(results['mean_accuracy'])}")
    if results["mean_accuracy_without_noise"] is not None:
        print(f"mean without noise: {_fmt(results['mean_accuracy_without_noise'])}")
    if results["mce"] is not None:
        print(f"mCE: {results['mce']:.1f}")
    for direction, entry in results["eps_star"].items():
        print(_eps_line(direction, entry))
    for name, entry in results["attacks"].items():
        value = entry.get("accuracy", entry.get("median_l2"))
        print(f"{name}: {_fmt(value, pct='accuracy' in entry)}")
    for kind, path in paths.items():
        print(f"{kind}: {path.resolve()}")
    if mlflow_run:
        print(f"mlflow run: {mlflow_run}")
    return 0


__all__ = ["add_eval_parser", "build_request", "command_line", "default_out_dir", "run_eval"]
