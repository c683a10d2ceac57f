"""How fast a generator learns in the fused ANT step against the alternating one, per lr.

    ANTRAY_DATA_ROOT=../shared/data python -m experiments.mnist.fused_generator_lr \
        --recipes alternating:1e-4,fused:1e-4,fused:3.3e-4 --seeds 0,1,2

The fused step (``ant.step: fused``) gives the generator its gradient from its own share of
the mixed batch (30 % of it once replay has a history, through the classifier in train
mode), the alternating step from the whole batch (through the classifier in eval mode).
Adam divides out the 0.3 by which the mean loss scales the share's gradient, but not the
noise of a gradient from 38 images instead of 128. Whether ``ant.generator_lr`` needs
scaling in the fused step is measured here, with the classifier held fixed so that only the
generator's recipe differs:

1. a Madry CNN trained on clean training digits for ``--classifier-steps`` Adam steps (lr
   1e-3, batch 128), then frozen;
2. per recipe ``MODE:LR`` and seed, a fresh 1x1 generator takes ``--steps`` Adam steps at
   ``LR`` on batches of 128 training digits: ``alternating`` as ``generator_step``,
   ``fused`` as ``fused_ant_step`` with two fixed replayed generators (so its share is 38
   of 128, as in a run with a replay history) and the classifier's lr at 0;
3. every ``--eval-every`` steps the frozen classifier's CE under the generator's noise at
   ``--epsilon``, on the first ``--eval-images`` digits of the validation split (carved from
   the training images) with one fixed noise draw.

Prints a Markdown table: per recipe the CE at each evaluation, mean [min, max] over the
seeds. The classifier's own part of the fused step (it trains on the noise of the generator
before its update) is not measured here: that needs the joint runs of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from evaluation.corruption_loop import stack_images
from generators.networks import create_generator
from generators.optim import adam
from generators.training import generator_step
from trainers.data import load_split, resolve_data_root
from trainers.device import Precision
from trainers.mixing import Shares
from trainers.models import create_model
from trainers.steps import fused_ant_step

CPU = Precision.create("cpu")
BATCH = 128


def batches(dataset, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    loader = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    while True:
        yield from loader


def train_classifier(dataset, steps: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    classifier = create_model("madry_cnn")
    optimizer = adam(classifier.parameters(), lr=1e-3)
    classifier.train()
    for x, y in itertools.islice(batches(dataset, seed), steps):
        loss = F.cross_entropy(classifier(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return classifier.eval()


@torch.no_grad()
def noise_ce(classifier, generator, x, y, *, epsilon: float) -> float:
    noisy = generator.perturb(x, epsilon=epsilon, rng=torch.Generator().manual_seed(1234))
    return F.cross_entropy(classifier(noisy), y).item()


def generator_curve(
    mode: str, lr: float, classifier, dataset, val, *, steps: int, every: int, seed: int,
    epsilon: float,
) -> list[float]:  # fmt: skip
    """The frozen classifier's validation CE under the generator's noise, every ``every``
    steps of the recipe (step 0 included)."""
    torch.manual_seed(1000 + seed)
    generator = create_generator("1x1", channels=1)
    replay = [create_generator("1x1", channels=1) for _ in range(2)]
    optimizer = adam(generator.parameters(), lr=lr)
    frozen = torch.optim.SGD(classifier.parameters(), lr=0.0)
    curve = [noise_ce(classifier, generator, *val, epsilon=epsilon)]
    for step, (x, y) in enumerate(itertools.islice(batches(dataset, seed + 1), steps), 1):
        if mode == "alternating":
            generator_step(generator, optimizer, classifier, x, y, epsilon=epsilon)
        else:
            fused_ant_step(
                classifier, frozen, x, y, generator=generator, generator_optimizer=optimizer,
                replay=replay, epsilon=epsilon, shares=Shares(), precision=CPU,
            )  # fmt: skip
            classifier.eval()  # the classifier step left it in train mode (no batch norm)
        if step % every == 0:
            curve.append(noise_ce(classifier, generator, *val, epsilon=epsilon))
    return curve


def parse_recipes(text: str) -> list[tuple[str, float]]:
    recipes = []
    for item in text.split(","):
        mode, _, lr = item.partition(":")
        if mode not in ("alternating", "fused") or not lr:
            raise SystemExit(f"--recipes: expected alternating:LR or fused:LR, got {item!r}")
        recipes.append((mode, float(lr)))
    return recipes


def main(argv: list[str] | None = None) -> dict[str, list[list[float]]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipes", default="alternating:1e-4,fused:1e-4,fused:3.3e-4")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--classifier-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--train-images", type=int, default=None, help="first N training digits")
    p.add_argument("--epsilon", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    recipes = parse_recipes(args.recipes)
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    root = resolve_data_root(None)
    train = load_split("mnist", root, "train", limit=args.train_images)
    val = stack_images(load_split("mnist", root, "val", limit=args.eval_images))
    classifier = train_classifier(train, args.classifier_steps, seed=0)
    with torch.no_grad():
        clean_ce = F.cross_entropy(classifier(val[0]), val[1]).item()
    curves: dict[str, list[list[float]]] = {}
    for seed in seeds:
        for mode, lr in recipes:
            key = f"{mode} lr {lr:g}"
            curve = generator_curve(
                mode, lr, classifier, train, val, steps=args.steps, every=args.eval_every,
                seed=seed, epsilon=args.epsilon,
            )  # fmt: skip
            curves.setdefault(key, []).append(curve)
            print(f"seed {seed} {key}: " + " ".join(f"{c:.3f}" for c in curve), file=sys.stderr)
    at = [0, *range(args.eval_every, args.steps + 1, args.eval_every)]
    print(f"\nCommand: `python -m experiments.mnist.fused_generator_lr {' '.join(sys.argv[1:])}`  ")
    print(
        f"Frozen Madry CNN after {args.classifier_steps} clean Adam steps (clean validation CE "
        f"{clean_ce:.3f}); epsilon {args.epsilon:g}; CE on {len(val[1])} validation digits, "
        f"mean [min, max] over seeds {args.seeds}; {args.threads} torch thread(s)\n"
    )
    print("| recipe | " + " | ".join(f"step {s}" for s in at) + " |")
    print("|---|" + "---|" * len(at))
    for key, runs in curves.items():
        cells = []
        for i in range(len(at)):
            values = [run[i] for run in runs]
            cells.append(f"{statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]")
        print(f"| {key} | " + " | ".join(cells) + " |")
    return curves


if __name__ == "__main__":
    main()
