"""Times the generation of the MNIST-C suite on the MNIST test digits (docs/MNIST_C.md).

    python -m evaluation.corruptions.mnist_c [--batch-size 256] [--limit N] [--threads T]

Corrupts the digits batch by batch with each of the 15 corruptions, as ``antray eval
--benchmark mnist-c --generated`` does, and prints the wall time per corruption and in total.
"""

from __future__ import annotations

import argparse
import time

import torch

from evaluation.corruptions.suites import generated_suite
from trainers.data import load_mnist, resolve_data_root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.corruptions.mnist_c")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="first N test digits")
    parser.add_argument("--data-root", default=None, help="else $ANTRAY_DATA_ROOT")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.limit or 1, args.threads or 1) < 1:
        parser.error("--batch-size, --limit and --threads must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    digits, _ = load_mnist(resolve_data_root(args.data_root), train=False).tensors
    digits = digits[: args.limit]
    suite = generated_suite("mnist-c")
    print(f"{len(digits)} digits, batch {args.batch_size}, {torch.get_num_threads()} threads")
    total = 0.0
    for name in suite.corruptions:
        start = time.perf_counter()
        for first in range(0, len(digits), args.batch_size):
            batch = digits[first : first + args.batch_size]
            suite.apply(batch, name, 1, seed=first)
        took = time.perf_counter() - start
        total += took
        print(f"{name:14s} {took:8.2f} s")
    print(f"{'all 15':14s} {total:8.2f} s")


if __name__ == "__main__":
    main()
