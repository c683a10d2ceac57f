"""Would ``torch.compile`` make the ANT step's parts cheaper on this machine?

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/compile_ant_parts.py --threads 2

Times, eager and compiled (inductor, default mode), forward + backward on a real MNIST batch
of 128: the 1x1 generator, the exact clipping-aware rescaling, and the Madry CNN (the pass
both a GNT and an ANT step make). Median of ``--repeats`` blocks of ``--steps`` calls, ms
per call, after three warm-up calls; the first compiled call's wall time (compilation) too.
Compilation needs a C++ compiler on the machine.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from profile_ant_step import mnist_batch, timed  # benchmarks/ is the script's directory on sys.path

from generators.networks import create_generator
from generators.rescale import clipping_aware_rescale
from trainers.models import create_model

EPSILON = 10.0  # configs/mnist_ant1x1.yaml


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--backend", default="inductor", help="torch.compile backend (eager: no codegen, tests)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = mnist_batch(args.batch)

    def generator_pass(generator: Callable) -> Callable[[], None]:
        return lambda: generator(torch.randn_like(x)).sum().backward()

    def rescale_pass(rescale: Callable) -> Callable[[], None]:
        def run() -> None:
            delta = torch.randn_like(x, requires_grad=True)
            rescale(x, delta, epsilon=EPSILON).sum().backward()

        return run

    def classifier_pass(model: Callable) -> Callable[[], None]:
        return lambda: F.cross_entropy(model(x), y).backward()

    generator, model = create_generator("1x1", channels=1), create_model("madry_cnn")
    parts = {
        "1x1 generator forward + backward": (
            generator_pass(generator),
            generator_pass(torch.compile(generator, backend=args.backend)),
        ),
        "exact rescaling forward + backward": (
            rescale_pass(clipping_aware_rescale),
            rescale_pass(torch.compile(clipping_aware_rescale, backend=args.backend)),
        ),
        "Madry CNN forward + backward": (
            classifier_pass(model),
            classifier_pass(torch.compile(model, backend=args.backend)),
        ),
    }
    print(
        f"torch {torch.__version__}, backend {args.backend}, {args.threads} threads, "
        f"batch {args.batch}; "
        f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n"
    )
    print("| part | eager ms | compiled ms | compiled / eager | first compiled call (s) |")
    print("|---|---|---|---|---|")
    out = {}
    for name, (eager, compiled) in parts.items():
        t0 = time.perf_counter()
        compiled()
        first = time.perf_counter() - t0
        e = timed(eager, steps=args.steps, repeats=args.repeats)
        c = timed(compiled, steps=args.steps, repeats=args.repeats)
        out[name] = (e, c)
        print(f"| {name} | {e:.1f} | {c:.1f} | {c / e:.2f} | {first:.1f} |", flush=True)
    return out


if __name__ == "__main__":
    main()
