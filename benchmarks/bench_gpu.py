"""GPU training throughput: ResNet-50 at 224 px on synthetic tensors (no download).

    .venv/bin/python benchmarks/bench_gpu.py                     # the full GPU run (< 6 min)
    .venv/bin/python benchmarks/bench_gpu.py --tiny --device cpu  # a seconds-long CPU check

Bare loop: each mode (vanilla, GNT sigma 0.5, ANT 1x1, ANT 3x3; on request
``ant1x1-fused`` and ``ant3x3-fused``, ANT with ``ant.step=fused``) x precision (fp32, bf16
autocast) x memory format (NCHW, channels_last) runs the project's own step functions
(`trainers.steps.create_step`) on one device and one fixed batch already on it, `--warmup`
steps then `--steps` timed ones, the device synchronised around the timed window.

Orchestrator (`--orchestrator on`): each mode through `antray train` on a synthetic
ImageNet-shaped dataset (data loader included), first `--backend local` (one process) and
then `--backend ray` (Ray Train, one worker per GPU, the generator actor beside it), at the
fastest precision of the device; the ratio Ray / local is the orchestrator's overhead.
`--tiny` runs the same code paths on CPU in seconds (32 px bare loop; the orchestrator runs
use the 28x28 synthetic set and a small CNN).

Prints the device, images/s per row, ANT / vanilla and orchestrator / local ratios, and
writes the rows as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

from generators.networks import create_generator
from generators.rescale import paper_epsilon
from trainers.device import Precision
from trainers.mixing import Shares
from trainers.models import create_model
from trainers.steps import StepParts, create_step

MODES = ("vanilla", "gnt", "ant1x1", "ant3x3")
# Also accepted by --modes and --profile, not run by default: ANT with ant.step=fused.
FUSED_MODES = ("ant1x1-fused", "ant3x3-fused")
# The paper's ImageNet settings (docs/METHOD.md): SGD lr 1e-3 momentum 0.9, GNT sigma 0.5,
# ANT epsilon 135 at 224x224x3 with 50 / 30 / 20 % clean / current / replay.
GNT_SIGMA = 0.5
ANT_SHARES = Shares(clean=0.5, current=0.3, replay=0.2, stylized=0.0)
REPLAY_GENERATORS = 2
# On a GPU machine each Train worker gets its GPU and enough CPUs for 4 loader processes.
GPU_RUNTIME = ["runtime.gpus_per_worker=1", "runtime.cpus_per_worker=5", "data.loader_workers=4"]


@dataclass(frozen=True)
class Setting:
    model: str
    image_size: int
    num_classes: int
    batch: int
    steps: int
    warmup: int
    dataset: str = "synthetic-imagenet"  # for the orchestrator runs (`antray train`)


@dataclass(frozen=True)
class Row:
    runner: str  # "bare" or "orchestrator"
    mode: str
    precision: str  # "fp32" or "bf16"
    channels_last: bool
    images_per_s: float
    step_ms: float


def _epsilon(image_size: int) -> float:
    # Keep ImageNet's per-coordinate size at other image sizes (docs/METHOD.md).
    return paper_epsilon(num_coordinates=3 * image_size * image_size)


def make_step(
    mode: str, setting: Setting, precision: Precision
) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
    """The project's own step function for ``mode`` (``trainers.steps.create_step``)."""
    model = precision.model(create_model(setting.model, num_classes=setting.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    if not mode.startswith("ant"):
        shares = Shares(clean=0.5, current=0.5, replay=0.0, stylized=0.0)
        return create_step(
            mode, StepParts(model, optimizer, precision, shares, sigmas=(GNT_SIGMA,))
        )
    kind, ant_step = ant_variant(mode)
    generator = create_generator(kind, channels=3).to(precision.device)
    # Two replayed generators per batch, as in the reference (0.1 of the batch each).
    replay = [
        create_generator(kind, channels=3).to(precision.device).eval()
        for _ in range(REPLAY_GENERATORS)
    ]
    parts = StepParts(
        model,
        optimizer,
        precision,
        ANT_SHARES,
        epsilon=_epsilon(setting.image_size),
        generator=generator,
        generator_optimizer=torch.optim.Adam(generator.parameters(), lr=1e-4),
        replay=lambda: replay,
        ant_step=ant_step,
    )
    return create_step("ant", parts)


def ant_variant(mode: str) -> tuple[str, str]:
    """(generator kind, ``ant.step``) of an ANT mode: ``ant3x3`` -> ("3x3", "alternating"),
    ``ant1x1-fused`` -> ("1x1", "fused")."""
    kind, _, fused = mode.removeprefix("ant").partition("-")
    return kind, "fused" if fused else "alternating"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warmed_step(
    mode: str, setting: Setting, precision: Precision
) -> tuple[Callable[[torch.Tensor, torch.Tensor], dict[str, float]], torch.Tensor, torch.Tensor]:
    """``mode``'s step and one fixed batch on the device, after ``setting.warmup`` steps."""
    g = torch.Generator().manual_seed(0)
    shape = (setting.batch, 3, setting.image_size, setting.image_size)
    x = torch.rand(shape, generator=g).to(precision.device)
    y = torch.randint(setting.num_classes, (setting.batch,), generator=g).to(precision.device)
    step = make_step(mode, setting, precision)
    for _ in range(setting.warmup):
        step(x, y)
    _sync(precision.device)
    return step, x, y


def time_bare(mode: str, setting: Setting, precision: Precision) -> float:
    """Images/s of ``mode`` over ``setting.steps`` steps after ``setting.warmup`` ones."""
    step, x, y = warmed_step(mode, setting, precision)
    t0 = time.perf_counter()
    for _ in range(setting.steps):
        step(x, y)
    _sync(precision.device)
    return setting.batch * setting.steps / (time.perf_counter() - t0)


def profile_step(mode: str, setting: Setting, precision: Precision, *, steps: int = 5) -> str:
    """torch.profiler table of ``steps`` steps of ``mode`` after the warm-up: the operators
    by device time (CPU time on a CPU run), to say where a step's milliseconds go."""
    from torch.profiler import ProfilerActivity, profile

    step, x, y = warmed_step(mode, setting, precision)
    cuda = precision.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(x, y)
        _sync(precision.device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=40)


def bare_rows(
    setting: Setting, device: str, modes: list[str], precisions: list[str], formats: list[bool]
) -> list[Row]:
    rows = []
    for mode in modes:
        for prec in precisions:
            for channels_last in formats:
                precision = Precision.create(
                    device, amp=prec == "bf16", channels_last=channels_last
                )
                if (prec == "bf16") != precision.amp or channels_last != precision.channels_last:
                    continue  # CPU: bf16 autocast and channels_last are CUDA-only paths
                rate = time_bare(mode, setting, precision)
                rows.append(
                    Row("bare", mode, prec, channels_last, rate, 1000 * setting.batch / rate)
                )
                print(_row_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def orchestrator_overrides(
    mode: str, setting: Setting, precision: str, channels_last: bool, workers: int
) -> list[str]:
    """`antray train --set` overrides running ``mode`` like the bare loop: same model,
    optimiser, global batch, noise and shares, restarts off (they run on an actor)."""
    ant = mode.startswith("ant")
    return [
        f"data.dataset={setting.dataset}",
        f"data.batch_size={setting.batch}",
        f"data.limit_train={setting.batch * (setting.warmup + setting.steps)}",
        "data.val_size=0",
        "optim.select_epoch=last",  # no validation split to choose an epoch on
        f"model.name={setting.model}",
        f"model.num_classes={setting.num_classes}",
        "optim.optimizer=sgd",
        "optim.lr=0.001",
        "optim.momentum=0.9",
        "optim.epochs=1",
        f"noise.mode={'ant' if ant else mode}",
        f"noise.sigmas=[{GNT_SIGMA}]",
        "noise.shares.clean=0.5",
        f"noise.shares.current={ANT_SHARES.current if ant else 0.5}",
        f"noise.shares.replay={ANT_SHARES.replay if ant else 0.0}",
        f"ant.generator={ant_variant(mode)[0] if ant else '1x1'}",
        f"ant.step={ant_variant(mode)[1] if ant else 'alternating'}",
        f"ant.epsilon={_epsilon(setting.image_size)}",
        "ant.restart_iterations=0",
        f"runtime.amp={str(precision == 'bf16').lower()}",
        f"runtime.channels_last={str(channels_last).lower()}",
        f"runtime.num_workers={workers}",
        "runtime.log_every_steps=1000000",
        *(GPU_RUNTIME if torch.cuda.is_available() else []),
    ]


def orchestrator_rows(
    setting: Setting, modes: list[str], precision: str, channels_last: bool
) -> Iterator[Row]:
    """Each mode through `antray train`: the local backend (one process, the bare loop
    with its data loader) and then Ray Train with one worker per GPU, alternated."""
    import tempfile

    from orchestrator.config import load_config
    from orchestrator.train import train_from_config

    gpus = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            for backend in ("local", "ray"):
                workers = max(gpus, 1) if backend == "ray" else 1
                batch = setting.batch * workers  # global batch: the same per-GPU batch
                s = Setting(**{**asdict(setting), "batch": batch})
                cfg = load_config(
                    None, orchestrator_overrides(mode, s, precision, channels_last, workers)
                )
                m = train_from_config(cfg, f"{tmp}/{mode}-{backend}", backend=backend, track=False)
                # The steady rate leaves out the first steps, as the bare loop's warm-up does.
                # It counts rank 0's images: each of the `workers` ranks trains as many.
                rate = workers * float(m.get("steady_images_per_s", m["images_per_s"]))
                runner = "antray-local" if backend == "local" else "orchestrator"
                row = Row(runner, mode, precision, channels_last, rate, 1000 * batch / rate)
                print(_row_line(row), file=sys.stderr, flush=True)
                yield row


def _row_line(r: Row) -> str:
    cl = "channels_last" if r.channels_last else "NCHW"
    return (
        f"{r.runner:12s} {r.mode:8s} {r.precision} {cl:13s} {r.images_per_s:8.1f} img/s "
        f"{r.step_ms:8.1f} ms/step"
    )


def ratio_lines(rows: list[Row]) -> list[str]:
    """ANT / vanilla per (precision, format) and orchestrator / bare per mode."""
    index = {(r.runner, r.mode, r.precision, r.channels_last): r.images_per_s for r in rows}
    out = []
    for (runner, mode, prec, cl), rate in sorted(index.items()):
        vanilla = index.get((runner, "vanilla", prec, cl))
        if mode.startswith("ant") and vanilla:
            out.append(f"{runner} {mode}/vanilla {prec} cl={cl}: {rate / vanilla:.3f}")
        local = index.get(("antray-local", mode, prec, cl))
        if runner == "orchestrator" and local:
            out.append(f"orchestrator/local {mode} {prec} cl={cl}: {rate / local:.3f}")
    return out


def device_name(device: str) -> str:
    dev = Precision.create(device).device
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--formats", default="nchw,channels_last")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument(
        "--orchestrator",
        choices=("on", "off"),
        default="on",
        help="also run each mode through `antray train` (local and Ray backends)",
    )
    p.add_argument(
        "--profile",
        choices=MODES + FUSED_MODES,
        help="also print a torch.profiler table of this mode's step (fastest precision)",
    )
    p.add_argument("--tiny", action="store_true", help="CPU smoke sizes: 32 px, batch 8, 2 steps")
    p.add_argument("--json", help="write the rows here")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.dataset = "synthetic-imagenet"
    if args.tiny:
        args.image_size, args.batch, args.steps, args.warmup = 32, 8, 2, 1
        args.num_classes = min(args.num_classes, 10)
        # The orchestrator runs read a dataset: the 28x28 synthetic one with a small CNN.
        args.dataset = "synthetic"
    for name, allowed in (
        ("modes", MODES + FUSED_MODES),
        ("precisions", ("fp32", "bf16")),
        ("formats", ("nchw", "channels_last")),
    ):
        values = getattr(args, name).split(",")
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            build_parser().error(f"--{name}: unknown {unknown}; choose from {list(allowed)}")
        setattr(args, name, values)
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    setting = Setting(
        args.model,
        args.image_size,
        args.num_classes,
        args.batch,
        args.steps,
        args.warmup,
        args.dataset,
    )
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; {setting}", flush=True)
    t0 = time.perf_counter()
    rows = bare_rows(
        setting,
        args.device,
        args.modes,
        args.precisions,
        [f == "channels_last" for f in args.formats],
    )
    write_rows(args.json, rows)  # the bare rows survive a failed orchestrator part
    # The fastest bare setting on this device (bf16 + channels_last on a GPU), for the
    # profile and the orchestrator runs.
    cuda = Precision.create(args.device).device.type == "cuda"
    fast_bf16 = cuda and "bf16" in args.precisions
    fast_cl = cuda and "channels_last" in args.formats
    if args.profile:
        precision = Precision.create(args.device, amp=fast_bf16, channels_last=fast_cl)
        print(f"\nprofile of {args.profile} ({precision}):", flush=True)
        print(profile_step(args.profile, setting, precision), flush=True)
    if args.orchestrator == "on":
        precision, cl = ("bf16" if fast_bf16 else "fp32"), fast_cl
        orch = setting
        if args.tiny:
            orch = Setting(**{**asdict(setting), "model": "madry_cnn", "image_size": 28})
        try:
            for row in orchestrator_rows(orch, args.modes, precision, cl):
                rows.append(row)
                write_rows(args.json, rows)
        except Exception as exc:  # report the bare rows and what stopped the rest
            print(f"orchestrator runs stopped: {type(exc).__name__}: {exc}", flush=True)
    print(f"\nCommand: `{' '.join(sys.argv)}` ({time.perf_counter() - t0:.0f} s)\n")
    print("| runner | mode | precision | memory format | img/s | ms/step |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fmt = "channels_last" if r.channels_last else "NCHW"
        print(
            f"| {r.runner} | {r.mode} | {r.precision} | {fmt} | {r.images_per_s:.1f} "
            f"| {r.step_ms:.1f} |"
        )
    print()
    for line in ratio_lines(rows):
        print(line)
    return rows


def write_rows(path: str | None, rows: list[Row]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
