"""One training step per mode, as plain PyTorch functions (docs/METHOD.md).

vanilla: a classifier step on clean images.
gnt / speckle: 50 % of the batch stays clean, the rest gets the fixed noise.
ant (``ant.step: alternating``, the reference): one generator step (maximise CE, classifier
frozen in eval mode), then one classifier step on the mixed batch: clean / current
generator / replayed generators.
ant (``ant.step: fused``): one classifier step on the same mixed batch, where the current
generator's noise carries a gradient reversal: the one backward gives the classifier its
descent and the generator its ascent, each applied by its own optimizer.

Steps take the (possibly DDP-wrapped) classifier; the alternating generator step reaches the
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
from generators.training import adversarial_noise, generator_step
from trainers.device import Precision
from trainers.mixing import MixedBatch, Parts, Shares, split_batch

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
    *,
    generator_optimizer: torch.optim.Optimizer | None = None,
) -> StepMetrics:
    """One SGD step on the concatenation of ``parts``; per-part loss/accuracy sums.

    ``generator_optimizer`` (the fused ANT step) is stepped on the same backward: a part
    behind a gradient reversal gives its generator the gradient of the loss's ascent.
    The metrics (and the 0-d tensors in ``extra``, e.g. the generator's CE) are read from
    the device in one transfer after the step is queued: one synchronisation per step."""
    parts = [p for p in parts if p[1].shape[0] > 0]
    x = precision.images(torch.cat([p[1] for p in parts]))
    y = torch.cat([p[2] for p in parts]).to(x.device)
    optimizers = [optimizer] + ([generator_optimizer] if generator_optimizer is not None else [])
    classifier.train()
    with precision.autocast():
        logits = classifier(x)
        # At least float32 (bf16 logits under AMP), float64 where the model is.
        wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
        losses = F.cross_entropy(wide, y, reduction="none")
    loss = losses.mean()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()
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
    batch = MixedBatch.split(x, y, shares, replay, stylized, precision)
    (cx, _), old = batch.current, batch.replay
    # The updated generator's noise and the replayed ones, rescaled in one call.
    current, *replayed = perturb_chunks(
        [(bare(generator), cx), *((g, ox) for g, ox, _ in old)], epsilon, precision
    )
    return classifier_step(
        classifier,
        optimizer,
        batch.parts(current, replayed),
        precision,
        extra={"generator_ce": generator_ce},
    )


def fused_ant_step(
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
    """ANT in one forward and one backward of the classifier (docs/METHOD.md, "The fused
    step"): the mixed batch of ``ant_step``, its current part noised by the generator as it
    is (before this step's update) behind a gradient reversal. The classifier descends the
    batch's mean loss; the generator, through the reversal, ascends it on its share only.

    ``generator`` may be DDP-wrapped: its forward runs through the wrapper, so the one
    backward all-reduces the generator's gradients beside the classifier's.
    ``generator_ce`` is the classifier's mean CE on the current part, before the update.
    """
    x = precision.images(x)
    y = y.to(x.device)
    batch = MixedBatch.split(x, y, shares, replay, stylized, precision)
    (cx, _), old = batch.current, batch.replay
    current = adversarial_noise(generator, cx, epsilon=epsilon, autocast=precision.autocast)
    replayed = perturb_chunks([(g, ox) for g, ox, _ in old], epsilon, precision)
    metrics = classifier_step(
        classifier,
        optimizer,
        batch.parts(current, replayed),
        precision,
        generator_optimizer=generator_optimizer,
    )
    if metrics.get("current_count"):
        metrics["generator_ce"] = metrics["current_loss_sum"] / metrics["current_count"]
    return metrics


def perturb_chunks(
    chunks: Sequence[tuple[NoiseGenerator, torch.Tensor]], epsilon: float, precision: Precision
) -> list[torch.Tensor]:
    """``clip(x + delta)`` with ``||delta||_2 = epsilon`` for each ``(generator, x)`` chunk,
    without gradients: each generator's noise (under AMP where the run uses it), then one
    exact rescaling of all chunks together (one sort instead of one per generator; each
    image's rescaling is independent of the others)."""
    if not chunks:
        return []
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
    ant_step: str = "alternating"  # or "fused" (ANT_STEPS)


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
    if p.ant_step not in ANT_STEPS:
        raise KeyError(f"unknown ant step {p.ant_step!r}; known: {sorted(ANT_STEPS)}")
    ant = ANT_STEPS[p.ant_step]
    generator, generator_optimizer, replay = p.generator, p.generator_optimizer, p.replay

    def step(x: torch.Tensor, y: torch.Tensor) -> StepMetrics:
        return ant(
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


ANT_STEPS = {"alternating": ant_step, "fused": fused_ant_step}

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
