"""One training step per mode, as plain PyTorch functions (SPEC.md).

vanilla: a classifier step on clean images.
gnt / speckle: 50 % of the batch stays clean, the rest gets the fixed noise.
ant: one generator step (maximise CE, classifier frozen in eval mode), then one
classifier step on the mixed batch: clean / current generator / replayed generators.

Steps take the (possibly DDP-wrapped) classifier; the generator step reaches the
bare module so only the generator's gradients are all-reduced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generators.networks import NoiseGenerator
from generators.training import generator_step
from trainers.device import Precision
from trainers.mixing import Shares, split_batch, split_replay

Parts = list[tuple[str, torch.Tensor, torch.Tensor]]
StepMetrics = dict[str, float]


def bare(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)


def classifier_step(
    classifier: nn.Module, optimizer: torch.optim.Optimizer, parts: Parts, precision: Precision
) -> StepMetrics:
    """One SGD step on the concatenation of ``parts``; per-part loss/accuracy sums."""
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
    metrics: StepMetrics = {"loss": float(loss.detach()), "images": float(y.shape[0])}
    with torch.no_grad():
        correct = logits.argmax(1) == y
        start = 0
        for name, px, _ in parts:
            n = px.shape[0]
            metrics[f"{name}_loss_sum"] = metrics.get(f"{name}_loss_sum", 0.0) + float(
                losses[start : start + n].sum()
            )
            metrics[f"{name}_correct"] = metrics.get(f"{name}_correct", 0.0) + float(
                correct[start : start + n].sum()
            )
            metrics[f"{name}_count"] = metrics.get(f"{name}_count", 0.0) + n
            start += n
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
    with torch.no_grad():
        cx, cy = take(counts["current"])
        parts.append(("current", bare(generator).perturb(cx, epsilon=epsilon), cy))
        for old, n in zip(replay, split_replay(counts["replay"], len(replay)), strict=True):
            rx, ry = take(n)
            parts.append(("replay", old.perturb(rx, epsilon=epsilon), ry))
    if counts["stylized"]:
        sx, sy = stylized  # type: ignore[misc]
        n = counts["stylized"]
        parts.append(("stylized", precision.images(sx[:n]), sy[:n].to(x.device)))
    metrics = classifier_step(classifier, optimizer, parts, precision)
    metrics["generator_ce"] = generator_ce
    return metrics
