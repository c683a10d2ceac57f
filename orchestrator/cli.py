"""``antray train | config show | eval | tune``: a thin layer over importable functions.

Errors a user can cause print one line on stderr and exit 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from orchestrator.errors import Interrupted, TrainingFault, UserError

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # foolbox imports GitPython


def _user_error_types() -> tuple[type[BaseException], ...]:
    from evaluation.runner import EvalInputError
    from trainers.checkpoint_format import CheckpointError
    from trainers.data import DataMissingError
    from trainers.device import DeviceUnavailableError

    types: list[type[BaseException]] = [
        UserError,
        DataMissingError,
        CheckpointError,
        DeviceUnavailableError,
        EvalInputError,
    ]
    try:
        from evaluation.benchmarks import BenchmarkDataError

        types.append(BenchmarkDataError)
    except ImportError:
        pass
    return tuple(types)


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line on stderr and exit 2, like every other input error (argparse
    would print the whole usage first; ``-h`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="experiment YAML (configs/*.yaml); defaults if omitted")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.epochs=3 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="antray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a classifier (vanilla, GNT, Speckle, ANT)")
    _add_config_args(train)
    train.add_argument("--run-dir", help="output directory (default runs/<name>-<time>)")
    train.add_argument("--data-root", help="dataset root (else $ANTRAY_DATA_ROOT, else ./data)")
    train.add_argument(
        "--backend",
        choices=["ray", "local"],
        default="ray",
        help="ray: Ray Train workers + generator actors; local: one process",
    )
    train.add_argument("--address", help="join a Ray cluster: auto or ray://host:port")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --run-dir")

    config = sub.add_parser("config", help="inspect configs")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the resolved config")
    _add_config_args(show)

    tune = sub.add_parser("tune", help="Ray Tune over GNT sigma, ANT epsilon or restart iterations")
    _add_config_args(tune)
    tune.add_argument(
        "--space", required=True, help="gnt_sigma, ant_epsilon or ant_restart_iterations"
    )
    tune.add_argument("--grid", help="comma-separated values instead of sampling")
    tune.add_argument("--num-samples", type=int, default=4, help="sampled trials")
    tune.add_argument(
        "--metric",
        help="reported metric to rank by (default: val_corruption_acc when the config has "
        "a data.val_suite, else val_gaussian_acc)",
    )
    tune.add_argument("--mode", default="max", help="max or min")
    tune.add_argument("--max-concurrent", type=int, default=2, help="trials at once")
    tune.add_argument(
        "--scheduler",
        choices=["asha", "fifo"],
        default="asha",
        help="asha: stop weak trials after their first epochs; fifo: every trial runs to the end",
    )
    tune.add_argument("--out", help="output directory (default runs/tune-<name>-<time>)")
    tune.add_argument("--data-root", help="dataset root (else $ANTRAY_DATA_ROOT, else ./data)")
    tune.add_argument("--address", help="join a Ray cluster: auto or ray://host:port")
    tune.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    from evaluation.cli import add_eval_parser

    add_eval_parser(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.run_dir import default_run_dir
    from orchestrator.train import train_from_config
    from trainers.epoch_metrics import EPOCH_LINE_KEYS

    if args.resume and not args.run_dir:
        raise UserError("--resume needs --run-dir RUN")
    cfg = load_config(args.config, args.overrides)
    run_dir = args.run_dir or default_run_dir(cfg.experiment.name)
    metrics = train_from_config(
        cfg,
        run_dir,
        backend=args.backend,
        data_root=args.data_root,
        resume=args.resume,
        overwrite=args.overwrite,
        address=args.address,
    )
    print(f"run directory: {os.path.abspath(run_dir)}")
    for key in EPOCH_LINE_KEYS:  # the validation figures of the epoch line
        if key.startswith("val_") and key in metrics:
            print(f"{key}: {metrics[key]:.4f}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.run_dir import default_run_dir
    from orchestrator.tune_runner import tune_from_config

    cfg = load_config(args.config, args.overrides)
    grid = None
    if args.grid:
        try:
            grid = [float(v) for v in args.grid.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--grid expects comma-separated numbers, got {args.grid!r}") from None
    out = args.out or default_run_dir(f"tune-{cfg.experiment.name}")
    summary = tune_from_config(
        cfg,
        out,
        space_name=args.space,
        grid=grid,
        num_samples=args.num_samples,
        metric=args.metric,
        mode=args.mode,
        max_concurrent=args.max_concurrent,
        scheduler=args.scheduler,
        data_root=args.data_root,
        address=args.address,
        overwrite=args.overwrite,
    )
    print(f"tune directory: {os.path.abspath(out)}")
    print(
        f"best {summary['key']} = {summary['best_value']:.4g} "
        f"({summary['metric']} {summary['best_metrics'].get(summary['metric'], float('nan')):.4f})"
    )
    return 0


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "config":
            from orchestrator.config import load_config

            cfg = load_config(args.config, args.overrides)
            print(cfg.to_yaml() + cfg.sizes(), end="")
            return 0
        if args.command == "eval":
            from evaluation.cli import run_eval

            distribute = None
            if args.num_workers > 1:  # only orchestrator/ starts Ray
                from orchestrator.eval_runner import ray_shard_mapper

                distribute = ray_shard_mapper(address=args.address)
            return run_eval(args, distribute=distribute)
    except _user_error_types() as exc:
        print(f"antray: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (TrainingFault, Interrupted) as exc:
        print(f"antray: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
