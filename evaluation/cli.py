"""``antray eval`` arguments and entry point (filled in by the evaluation pipeline)."""

from __future__ import annotations

import argparse


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="corruption benchmarks, eps*, attacks")
    p.add_argument("--checkpoint", help="run directory or state.pt of a trained model")


def run_eval(args: argparse.Namespace) -> int:
    raise NotImplementedError("antray eval lands with the evaluation issue")
