"""Training a noise generator against a classifier: one step, or from scratch.

The generator maximises the classifier's cross-entropy on ``clip(x + delta)`` with
``||delta||_2 = epsilon`` (loss = -CE), the classifier frozen in eval mode (docs/METHOD.md).
``adversarial_noise`` is the same noise for the fused ANT step, where the generator learns
from the classifier's own backward through a gradient reversal instead.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from generators.folding import eval_view, memory_format_of
from generators.networks import NoiseGenerator, create_generator
from generators.optim import adam
from generators.rescale import clipping_aware_rescale

FROM_SCRATCH_LR = 5e-4  # Adam lr for a fresh generator against a fixed classifier
FROM_SCRATCH_ITERATIONS = 1000
JOINT_LR = 1e-4  # Adam lr for the generator during joint ANT


@contextlib.contextmanager
def frozen(classifier: nn.Module) -> Iterator[nn.Module]:
    """Classifier in eval mode with parameters that collect no gradient; restored after."""
    was_training = classifier.training
    flags = [p.requires_grad for p in classifier.parameters()]
    classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    try:
        yield classifier
    finally:
        for p, flag in zip(classifier.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        classifier.train(was_training)


def generator_step(
    generator: nn.Module,
    optimizer: torch.optim.Optimizer,
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """One Adam step of ``generator`` that raises the frozen classifier's CE; returns the
    CE as a detached 0-d tensor (reading it is the caller's choice: on a GPU a read waits
    for the step, so the training step reads it only once its own work is queued).

    ``generator`` may be DDP-wrapped (its gradients are then averaged over ranks);
    ``classifier`` must be the bare module, so no classifier all-reduce is triggered.
    """
    with frozen(classifier):
        noisy = generator_noise(generator, x, epsilon=epsilon, autocast=autocast)
        with autocast():
            # Eval mode: batch norm folded into the convolutions, the same function.
            ce = F.cross_entropy(eval_view(classifier)(noisy), y)
        optimizer.zero_grad(set_to_none=True)
        (-ce).backward()
        optimizer.step()
    return ce.detach()


def generator_noise(
    generator: nn.Module,
    x: torch.Tensor,
    *,
    epsilon: float,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """``clip(x + delta)`` with ``||delta||_2 = epsilon`` per image, differentiable in the
    generator's parameters. ``generator`` may be DDP-wrapped: its forward then runs through
    the wrapper, which readies the all-reduce of its gradients for the next backward."""
    core: NoiseGenerator = getattr(generator, "module", generator)
    b, _, h, w = x.shape
    z = torch.randn(core.latent_shape(b, h, w), device=x.device, dtype=x.dtype)
    # The generator's layers may run under AMP (their weights and z stay float32); the
    # projection runs in float32 (float64 for float64 inputs) and float64 outside it: it
    # inverts a cumulative sum.
    with autocast():
        delta = generator(z)
    noisy = clipping_aware_rescale(
        x, delta.to(torch.promote_types(delta.dtype, torch.float32)), epsilon=epsilon
    )
    # The classifier sees the memory format of its batches (channels_last on a GPU run),
    # not whatever layout the projection's arithmetic produced.
    return noisy.contiguous(memory_format=memory_format_of(x))


class _ReverseGradient(torch.autograd.Function):
    """The identity forward; the backward negates the gradient (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return -grad


def reverse_gradient(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged, with the gradient that reaches it negated on the way back."""
    return _ReverseGradient.apply(x)


def adversarial_noise(
    generator: nn.Module,
    x: torch.Tensor,
    *,
    epsilon: float,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """``generator_noise`` behind a gradient reversal placed after the exact rescaling: a
    loss the classifier descends on these images gives the generator the gradient of its
    ascent. Where ``loss`` is a mean over a batch of ``B`` images of which these are ``n``,
    the generator's gradient is ``-(n / B)`` times the gradient of their mean loss."""
    return reverse_gradient(generator_noise(generator, x, epsilon=epsilon, autocast=autocast))


def train_generator_from_scratch(
    classifier: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    kind: str = "1x1",
    epsilon: float,
    iterations: int = FROM_SCRATCH_ITERATIONS,
    lr: float = FROM_SCRATCH_LR,
    seed: int = 0,
    device: torch.device | str = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> tuple[NoiseGenerator, list[float]]:
    """A fresh generator (Adam ``lr``, ``iterations`` steps) against a fixed classifier.

    ``batches`` is cycled as often as needed. Returns the generator (eval mode, on
    ``device``) and the CE after each step. ``should_stop`` lets a caller end early.
    """
    device = torch.device(device)
    first_x, _ = next(iter(batches))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = create_generator(kind, channels=first_x.shape[1])
    generator.to(device)
    optimizer = adam(generator.parameters(), lr=lr)
    classifier = classifier.to(device)
    history: list[torch.Tensor] = []  # read once at the end: no device sync per step
    for x, y in itertools.islice(_cycle(batches), iterations):
        if should_stop is not None and should_stop():
            break
        history.append(
            generator_step(
                generator, optimizer, classifier, x.to(device), y.to(device), epsilon=epsilon
            )
        )
    ces = torch.stack(history).tolist() if history else []
    return generator.eval(), ces


def _cycle(batches: Iterable) -> Iterator:
    while True:
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            raise ValueError("train_generator_from_scratch got no batches")
