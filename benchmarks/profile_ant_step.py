"""Where an ANT step's time goes, next to a GNT step on the same model, batch and threads.

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/profile_ant_step.py --threads 2

Times (median of ``--repeats`` blocks of ``--steps`` calls, ms per call) for the whole GNT and
ANT 1x1 steps of `trainers.steps` and for the parts of the ANT step in isolation: the
classifier step on the mixed batch, the generator step (classifier forward + backward to the
input in eval mode, generator forward + backward, exact rescaling), and the no-grad noise
for the current and replayed parts; then the fused ANT step (``ant.step: fused``) and its
parts: the classifier step with the input gradient its batch needs, the current generator's
noise forward and backward on its share, the replayed parts' noise. Real MNIST training
images, Madry CNN, batch 128.

Beside each time, the part's arithmetic: the floating-point operations of its matrix products
and convolutions (``torch.utils.flop_counter``, one call; elementwise work, sorts and the
optimiser are not counted). Their ANT / GNT ratio is the step ratio a machine would reach if
only that arithmetic cost time and ran as fast in both steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from evaluation.corruption_loop import stack_images
from generators.networks import create_generator
from generators.optim import adam
from generators.rescale import clipping_aware_rescale
from generators.training import frozen, generator_noise, generator_step
from trainers.data import load_split, resolve_data_root
from trainers.device import Precision
from trainers.mixing import Shares
from trainers.models import create_model
from trainers.steps import StepParts, create_step

EPSILON = 8.0  # what configs/mnist_ant1x1.yaml held when the step was profiled (now 10)


def timed(fn: Callable[[], object], *, steps: int, repeats: int) -> float:
    for _ in range(3):
        fn()
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        blocks.append((time.perf_counter() - t0) / steps * 1000)
    return statistics.median(blocks)


def mnist_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` real MNIST training images (train split) and their labels."""
    return stack_images(load_split("mnist", resolve_data_root(None), "train", limit=n))


def gflop(fn: Callable[[], object]) -> float:
    """Matrix-product and convolution GFLOP of one call of ``fn`` (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = mnist_batch(args.batch)
    precision = Precision.create("cpu")

    def classifier():
        model = create_model("madry_cnn")
        return model, adam(model.parameters(), lr=1e-3)  # the runs' fused Adam

    gnt_model, gnt_opt = classifier()
    gnt = create_step(
        "gnt", StepParts(gnt_model, gnt_opt, precision, Shares(0.5, 0.5, 0.0, 0.0), sigmas=(0.5,))
    )
    model, opt = classifier()
    gen = create_generator("1x1", channels=1)
    gen_opt = adam(gen.parameters(), lr=1e-4)
    replay = [create_generator("1x1", channels=1).eval() for _ in range(2)]
    ant = create_step(
        "ant",
        StepParts(
            model,
            opt,
            precision,
            Shares(0.5, 0.3, 0.2, 0.0),
            epsilon=EPSILON,
            generator=gen,
            generator_optimizer=gen_opt,
            replay=lambda: replay,
        ),
    )

    fused_model, fused_opt = classifier()
    fused_gen = create_generator("1x1", channels=1)
    fused = create_step(
        "ant",
        StepParts(
            fused_model,
            fused_opt,
            precision,
            Shares(0.5, 0.3, 0.2, 0.0),
            epsilon=EPSILON,
            generator=fused_gen,
            generator_optimizer=adam(fused_gen.parameters(), lr=1e-4),
            replay=lambda: replay,
            ant_step="fused",
        ),
    )

    def classifier_step():
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def classifier_input_gradient():
        xi = x.clone().requires_grad_(True)
        with frozen(model):
            F.cross_entropy(model(xi), y).backward()

    def generator_forward_backward():
        gen(torch.randn_like(x)).sum().backward()

    def rescale_forward_backward():
        delta = torch.randn_like(x, requires_grad=True)
        clipping_aware_rescale(x, delta, epsilon=EPSILON).sum().backward()

    n_current, n_replay = round(0.3 * args.batch), round(0.1 * args.batch)

    def classifier_step_with_input_gradient():
        xi = x.clone().requires_grad_(True)  # the fused step's batch needs one, for its noise
        model.train()
        loss = F.cross_entropy(model(xi), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def current_noise_forward_backward():
        generator_noise(gen, x[:n_current], epsilon=EPSILON).sum().backward()

    @torch.no_grad()
    def noise_for_replayed_parts():
        for old in replay:
            old.perturb(x[:n_replay], epsilon=EPSILON)

    @torch.no_grad()
    def noise_for_classifier_batch():
        gen.perturb(x[:n_current], epsilon=EPSILON)
        for old in replay:
            old.perturb(x[:n_replay], epsilon=EPSILON)

    parts = {
        "GNT step (whole)": lambda: gnt(x, y),
        "ANT 1x1 step (whole)": lambda: ant(x, y),
        "  classifier step on the mixed batch": classifier_step,
        "  generator step (whole)": lambda: generator_step(
            gen, gen_opt, model, x, y, epsilon=EPSILON
        ),
        "    classifier forward + backward to the input": classifier_input_gradient,
        "    generator forward + backward": generator_forward_backward,
        "    exact rescaling forward + backward": rescale_forward_backward,
        "  noise for the current + replayed parts (no grad)": noise_for_classifier_batch,
        "ANT 1x1 fused step (whole)": lambda: fused(x, y),
        "  classifier step on the mixed batch, with the input gradient": (
            classifier_step_with_input_gradient
        ),
        "  current generator's noise, forward + backward (its share)": (
            current_noise_forward_backward
        ),
        "  noise for the replayed parts (no grad)": noise_for_replayed_parts,
    }
    flops = {name: gflop(fn) for name, fn in parts.items()}
    ms = {name: timed(fn, steps=args.steps, repeats=args.repeats) for name, fn in parts.items()}
    print(
        f"torch threads {args.threads}, batch {args.batch}, Madry CNN, ANT epsilon {EPSILON}; "
        f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n"
    )
    print("| part | ms per call | GFLOP per call | GFLOP/s |")
    print("|---|---|---|---|")
    for name, value in ms.items():
        level = (len(name) - len(name.lstrip())) // 2  # nesting shown as leading dots
        rate = flops[name] / value * 1000
        print(f"| {'· ' * level}{name.strip()} | {value:.1f} | {flops[name]:.2f} | {rate:.0f} |")
    ant, gnt = "ANT 1x1 step (whole)", "GNT step (whole)"
    time_ratio, flop_ratio = ms[ant] / ms[gnt], flops[ant] / flops[gnt]
    print(f"\nANT / GNT step: {time_ratio:.2f} in time, {flop_ratio:.2f} in GFLOP")
    fused_name = "ANT 1x1 fused step (whole)"
    print(
        f"fused ANT / GNT step: {ms[fused_name] / ms[gnt]:.2f} in time, "
        f"{flops[fused_name] / flops[gnt]:.2f} in GFLOP"
    )
    return {**ms, **{f"{name} GFLOP": value for name, value in flops.items()}}


if __name__ == "__main__":
    main()
