"""eps* search against the authors' fixed-step procedure on a trained checkpoint.

For the first ``--n`` test images (or validation images with ``--split val``) and Gaussian
directions, runs ``evaluation.eps_star.eps_star`` (upward coarse scan, log bisection to a
relative tolerance, <= 20 forwards per image) and ``reference_search`` (coarse factor 1.8,
then 40 linear bisection steps, no budget: the procedure of bethgelab/game-of-noise), and
prints: medians, forwards per image, achieved precision, never-flipped counts, and how many
images are still correct on the fully saturated image although they flip earlier on the ray
(a search that asks the saturated image first would call those +inf). Example:

    .venv/bin/python benchmarks/bench_eps_star.py --checkpoint runs/vanilla --n 500
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from evaluation.corruption_loop import EvalSettings, eval_subset, load_eval_set, stack_images
from evaluation.eps_star import draw_directions, eps_star, reference_search
from evaluation.model_loading import load_checkpoint_model
from evaluation.request import CLEAN_DATASETS
from generators.rescale import saturated
from trainers.data import resolve_data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--benchmark", default="mnist-c", choices=sorted(CLEAN_DATASETS))
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, info = load_checkpoint_model(args.checkpoint)
    settings = EvalSettings(
        benchmark=args.benchmark,
        data_root=str(resolve_data_root(args.data_root).path),
        benchmark_root=".",
        generated=True,
        clean_dataset=CLEAN_DATASETS[args.benchmark],
        limit=args.n,
        seed=args.seed,
        batch_size=256,
        device="cpu",
        split=args.split,
        val_size=info.get("val_size"),
        split_seed=info.get("split_seed") or 0,
    )
    x, y = stack_images(eval_subset(settings, load_eval_set(settings), args.n))
    d = draw_directions(x, "gaussian", seed=args.seed)

    t0 = time.perf_counter()
    ours = eps_star(model, x, y, direction="gaussian", seed=args.seed)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_search(model, x, y, d)
    t_ref = time.perf_counter() - t0
    with torch.no_grad():
        correct_clean = model(x).argmax(1) == y
        correct_saturated = model(saturated(x, d)).argmax(1) == y
    back_at_saturation = correct_clean & correct_saturated & torch.isfinite(ours.per_image)
    both = torch.isfinite(ours.per_image) & torch.isfinite(ref.per_image) & (ref.per_image > 0)
    rel = ((ours.per_image[both] - ref.per_image[both]) / ref.per_image[both]).abs()

    print(f"Command: `{shlex.join(['python', *sys.argv])}`\n")
    print(f"{info['model']} ({info['checkpoint']}), {len(y)} {args.split} images, Gaussian\n")
    print("| search | eps* (median l2) | never flipped | forwards/img (mean, max) "
          "| rel. precision (max) | wall (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, r, secs in (("ours", ours, t_ours), ("reference (1.8, 40 steps)", ref, t_ref)):
        print(
            f"| {name} | {r.median:.4f} | {r.never_flipped} | {r.forwards_per_image:.1f}, "
            f"{r.max_forwards_per_image} | {r.rel_precision:.2e} | {secs:.1f} |"
        )
    print(
        f"\nper-image |ours - reference| / reference: median {float(rel.median()):.2e}, "
        f"max {float(rel.max()):.2e} over {int(both.sum())} images; "
        f"correct again at saturation but flipped earlier: {int(back_at_saturation.sum())}"
    )


if __name__ == "__main__":
    main()
