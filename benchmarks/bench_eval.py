"""Eval throughput of the generated CIFAR-style corruption suite (``antray eval --generated``).

N random 32x32x3 images, the CIFAR ResNet18 of trainers.models, all 12 generated corruptions x
5 severities (60 splits). Three timings per device:

- full: ``evaluation.corruption_loop.evaluate_splits`` (the code path of ``antray eval
  --generated``: corrupt every batch for every split, forward, top-1/top-5 bookkeeping),
  in corrupted images per second (N x 60 images);
- corruption only: ``evaluation.corruptions.corrupt`` over the same 60 splits;
- forward only: the classifier on the clean batches (one pass, per image).

Prints a markdown table (and, with --per-corruption, the corruption time per corruption) and
the command line. Example:

    .venv/bin/python benchmarks/bench_eval.py --n 256 --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.data import TensorDataset

from evaluation.corruption_loop import EvalSettings, corruption_seed, evaluate_splits
from evaluation.corruptions import available_corruptions, corrupt
from trainers.models import create_model

SEVERITIES = (1, 2, 3, 4, 5)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [x[i : i + batch_size] for i in range(0, x.shape[0], batch_size)]


def bench_device(
    device: torch.device, n: int, batch_size: int, seed: int, per_corruption: bool
) -> dict[str, float | dict[str, float]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    model = create_model("resnet18", num_classes=10).to(device).eval()
    splits = [(c, s) for c in available_corruptions() for s in SEVERITIES]
    settings = EvalSettings(
        benchmark="cifar10-c",
        data_root=".",
        benchmark_root=".",
        generated=True,
        clean_dataset="cifar10",
        limit=None,
        seed=seed,
        batch_size=batch_size,
        device=str(device),
    )
    dataset = TensorDataset(x, y)
    xb_dev = [b.to(device) for b in _batches(x, batch_size)]

    # Warm-up: every corruption once (JPEG codec, kernels, cuDNN autotune) and the model.
    with torch.inference_mode():
        for name in available_corruptions():
            corrupt(xb_dev[0], name, 3, seed=0)
        model(xb_dev[0])
        _sync(device)

    def full() -> None:
        evaluate_splits(model, settings, splits, clean_set=dataset)

    def corruption_only(names: list[str]) -> Callable[[], None]:
        def run() -> None:
            start = 0
            for xb in xb_dev:
                for name in names:
                    for s in SEVERITIES:
                        corrupt(xb, name, s, seed=corruption_seed(seed, name, s, start))
                start += xb.shape[0]

        return run

    @torch.inference_mode()
    def forward_only() -> None:
        for xb in xb_dev:
            model(xb)

    t_full = _timed(full, device)
    t_corrupt = _timed(corruption_only(available_corruptions()), device)
    t_forward = _timed(forward_only, device)
    images = n * len(splits)
    result: dict[str, float | dict[str, float]] = {
        "full_img_s": images / t_full,
        "corrupt_img_s": images / t_corrupt,
        "forward_img_s": n / t_forward,
        "t_full": t_full,
        "t_corrupt": t_corrupt,
        "t_forward_extrapolated": t_forward * len(splits),
    }
    if per_corruption:
        result["per_corruption_ms_per_image"] = {
            name: 1e3 * _timed(corruption_only([name]), device) / (n * len(SEVERITIES))
            for name in available_corruptions()
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="images (32x32x3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--devices", default="cpu,cuda", help="cuda is skipped when absent")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-corruption", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = []
    for name in args.devices.split(","):
        name = name.strip()
        if name.startswith("cuda") and not torch.cuda.is_available():
            print(f"skipping {name}: no CUDA device", file=sys.stderr)
            continue
        devices.append(torch.device(name))

    rows, per = [], {}
    for device in devices:
        r = bench_device(device, args.n, args.batch_size, args.seed, args.per_corruption)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        label += f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
        share = r["t_corrupt"] / (r["t_corrupt"] + r["t_forward_extrapolated"])
        rows.append(
            f"| {label} | {args.n} | {args.batch_size} | {r['full_img_s']:.0f} | "
            f"{r['corrupt_img_s']:.0f} | {r['forward_img_s']:.0f} | {100 * share:.0f} % | "
            f"{r['t_full']:.1f} |"
        )
        if "per_corruption_ms_per_image" in r:
            per[label] = r["per_corruption_ms_per_image"]

    cmd = shlex.join([os.path.relpath(sys.executable), *sys.argv]) if argv is None else ""
    print(f"Command: `{cmd}`")
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {machine}, {os.cpu_count()} logical CPUs visible\n")
    print(
        "| device | N | batch | full eval (corrupted img/s) | corruption only (img/s) | "
        "forward only (img/s) | corruption share | full wall (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if per:
        labels = list(per)
        print("\n| corruption | " + " | ".join(f"{d} ms/img" for d in labels) + " |")
        print("|---|" + "---|" * len(labels))
        for name in available_corruptions():
            print(f"| {name} | " + " | ".join(f"{per[d][name]:.3f}" for d in labels) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
