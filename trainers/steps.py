"""One training step per mode, as plain PyTorch functions (docs/METHOD.md).

vanilla: a classifier step on clean images.
gnt / speckle: 50 % of the batch stays clean, the rest gets the fixed noise.
ant: one generator step (maximise CE, classifier frozen in eval mode), then one
classifier step on the mixed batch: clean / current generator / replayed generators.

Steps take the (possibly DDP-wrapped) classifier; the generator step reaches the
bare module so only the generator's gradients are all-reduced.

``create_step(mode, parts)`` picks a mode's step once, when a run starts: the loop then
calls ``step(x, y)`` for every batch without asking which mode it is in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from generators.networks import NoiseGenerator
from generators.rescale import clipping_aware_rescale
from generators.samplers import IMAGENET_C_SPECKLE_LEVELS, GaussianNoise, SpeckleNoise
from generators.training import generator_step
from trainers.device import Precision
from trainers.mixing import Shares, split_batch, split_replay

Parts = list[tuple[str, torch.Tensor, torch.Tensor]]
StepMetrics = dict[str, float]
StepFn = Callable[[torch.Tensor, torch.Tensor], StepMetrics]


def bare(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)


def classifier_step(
    classifier: nn.Module,
    optimizer: torch.optim.Optimizer,
    parts: Parts,
    precision: Precision,
    extra: dict[str, torch.Tensor] | None = None,
) -> StepMetrics:
    """One SGD step on the concatenation of ``parts``; per-part loss/accuracy sums.

    The metrics (and the 0-d tensors in ``extra``, e.g. the generator's CE) are read from
    the device in one transfer after the step is queued: one synchronisation per step."""
    parts = [p for p in parts if p[1].shape[0] > 0]
    x = precision.images(torch.cat([p[1] for p in parts]))
    y = torch.cat([p[2] for p in parts]).to(x.device)
    classifier.train()
    with precision.autocast():
        logits = classifier(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
    loss = losses.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    names, values = ["loss"], [loss.detach()]
    metrics: StepMetrics = {"images": float(y.shape[0])}
    with torch.no_grad():
        correct = (logits.argmax(1) == y).float()
        start = 0
        for name, px, _ in parts:
            n = px.shape[0]
            names += [f"{name}_loss_sum", f"{name}_correct"]
            values += [losses[start : start + n].sum(), correct[start : start + n].sum()]
            metrics[f"{name}_count"] = metrics.get(f"{name}_count", 0.0) + n
            start += n
        for name, value in (extra or {}).items():
            names.append(name)
            values.append(value.detach().float())
        # Parts may repeat (several replay chunks): their sums add up.
        for name, value in zip(names, torch.stack(values).tolist(), strict=True):
            metrics[name] = metrics.get(name, 0.0) + value
    return metrics


def vanilla_step(
    classifier: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    precision: Precision,
) -> StepMetrics:
    return classifier_step(classifier, optimizer, [("clean", x, y)], precision)


def noise_step(
    classifier: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sampler: Callable[[torch.Tensor], torch.Tensor],
    clean_share: float = 0.5,
    precision: Precision,
) -> StepMetrics:
    """GNT / Speckle: the first ``clean_share`` of the batch stays clean, the rest is noised."""
    counts = split_batch(
        x.shape[0], Shares(clean_share, 1.0 - clean_share, 0.0, 0.0), has_history=True
    )
    n_clean = counts["clean"]
    x = x.to(precision.device)
    with torch.no_grad():
        noisy = sampler(x[n_clean:])
    return classifier_step(
        classifier,
        optimizer,
        [("clean", x[:n_clean], y[:n_clean]), ("noise", noisy, y[n_clean:])],
        precision,
    )


def ant_step(
    classifier: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: nn.Module,
    generator_optimizer: torch.optim.Optimizer,
    replay: Sequence[NoiseGenerator],
    epsilon: float,
    shares: Shares,
    precision: Precision,
    stylized: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> StepMetrics:
    """Generator step, then a classifier step on clean / current / replay / stylized parts.

    ``replay`` holds the old generators sampled for this batch (empty: no history yet,
    and the replay share goes to the current generator).
    """
    x = precision.images(x)
    y = y.to(x.device)
    generator_ce = generator_step(
        generator,
        generator_optimizer,
        bare(classifier),
        x,
        y,
        epsilon=epsilon,
        autocast=precision.autocast,
    )
    counts = split_batch(x.shape[0], shares, has_history=bool(replay))
    if stylized is None and counts["stylized"]:
        raise ValueError("shares.stylized > 0 needs a stylized batch (data.stylized_root)")
    parts: Parts = []
    start = 0

    def take(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal start
        chunk = x[start : start + n], y[start : start + n]
        start += n
        return chunk

    parts.append(("clean", *take(counts["clean"])))
    noised: list[tuple[str, NoiseGenerator, torch.Tensor, torch.Tensor]] = [
        ("current", bare(generator), *take(counts["current"]))
    ]
    for old, n in zip(replay, split_replay(counts["replay"], len(replay)), strict=True):
        noised.append(("replay", old, *take(n)))
    perturbed = perturb_chunks([(g, cx) for _, g, cx, _ in noised], epsilon, precision)
    parts += [(name, px, cy) for (name, _, _, cy), px in zip(noised, perturbed, strict=True)]
    if counts["stylized"]:
        sx, sy = stylized  # type: ignore[misc]
        n = counts["stylized"]
        parts.append(("stylized", precision.images(sx[:n]), sy[:n].to(x.device)))
    return classifier_step(
        classifier, optimizer, parts, precision, extra={"generator_ce": generator_ce}
    )


def perturb_chunks(
    chunks: Sequence[tuple[NoiseGenerator, torch.Tensor]], epsilon: float, precision: Precision
) -> list[torch.Tensor]:
    """``clip(x + delta)`` with ``||delta||_2 = epsilon`` for each ``(generator, x)`` chunk,
    without gradients: each generator's noise (under AMP where the run uses it), then one
    exact rescaling of all chunks together (one sort instead of one per generator; each
    image's rescaling is independent of the others)."""
    sizes = [x.shape[0] for _, x in chunks]
    with torch.no_grad():
        with precision.autocast():
            deltas = [g.sample(x) for g, x in chunks]
        noisy = clipping_aware_rescale(
            torch.cat([x for _, x in chunks]),
            torch.cat([d.float() for d in deltas]),
            epsilon=epsilon,
        )
    return list(noisy.split(sizes))


# --- one step function per mode, chosen once --------------------------------------------


@dataclass(frozen=True)
class StepParts:
    """What a mode's step needs besides the batch. ``replay`` and ``stylized`` are called
    per batch (old generators for this batch; the next Stylized-ImageNet batch)."""

    classifier: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    shares: Shares
    sigmas: Sequence[float] = (0.5,)
    speckle_levels: Sequence[float] = IMAGENET_C_SPECKLE_LEVELS
    epsilon: float = 0.0
    generator: nn.Module | None = None
    generator_optimizer: torch.optim.Optimizer | None = None
    replay: Callable[[], Sequence[NoiseGenerator]] | None = None
    stylized: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None


def _vanilla(p: StepParts) -> StepFn:
    def step(x: torch.Tensor, y: torch.Tensor) -> StepMetrics:
        return vanilla_step(p.classifier, p.optimizer, x, y, precision=p.precision)

    return step


def _noise(sampler: Callable[[torch.Tensor], torch.Tensor], p: StepParts) -> StepFn:
    def step(x: torch.Tensor, y: torch.Tensor) -> StepMetrics:
        return noise_step(
            p.classifier,
            p.optimizer,
            x,
            y,
            sampler=sampler,
            clean_share=p.shares.clean,
            precision=p.precision,
        )

    return step


def _ant(p: StepParts) -> StepFn:
    if p.generator is None or p.generator_optimizer is None or p.replay is None:
        raise ValueError("mode ant needs a generator, its optimizer and a replay source")
    generator, generator_optimizer, replay = p.generator, p.generator_optimizer, p.replay

    def step(x: torch.Tensor, y: torch.Tensor) -> StepMetrics:
        return ant_step(
            p.classifier,
            p.optimizer,
            x,
            y,
            generator=generator,
            generator_optimizer=generator_optimizer,
            replay=replay(),
            epsilon=p.epsilon,
            shares=p.shares,
            precision=p.precision,
            stylized=next(p.stylized) if p.stylized is not None else None,
        )

    return step


# The training modes, the one place their names are listed (noise.mode takes them from here).
Mode = Literal["vanilla", "gnt", "speckle", "ant"]
STEPS: dict[Mode, Callable[[StepParts], StepFn]] = {
    "vanilla": _vanilla,
    "gnt": lambda p: _noise(GaussianNoise(p.sigmas), p),
    "speckle": lambda p: _noise(SpeckleNoise(p.speckle_levels), p),
    "ant": _ant,
}


def create_step(mode: Mode, parts: StepParts) -> StepFn:
    """The step function for ``mode`` (one of ``STEPS``), bound to ``parts``."""
    if mode not in STEPS:
        raise KeyError(f"unknown noise mode {mode!r}; known: {sorted(STEPS)}")
    return STEPS[mode](parts)
