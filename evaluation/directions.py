"""Noise directions for eps*: Gaussian, uniform, a noise generator's samples, or a callable.

Every built-in or generator direction is drawn per image from a CPU generator seeded from
``(seed, index)``, so an image's direction does not depend on how the set is batched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from generators.networks import NoiseGenerator

DirectionFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Direction = str | NoiseGenerator | DirectionFn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block (warns if it was training); the mode is restored after."""
    was_training = model.training
    if was_training:
        warnings.warn(
            "model was in train mode; evaluating it in eval mode", UserWarning, stacklevel=3
        )
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def image_rng(seed: int, index: int) -> torch.Generator:
    """CPU generator for image ``index``: directions do not depend on the batching."""
    mixed = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % (2**63)
    return torch.Generator().manual_seed(mixed)


def draw_directions(
    x: torch.Tensor, direction: Direction, *, seed: int, start_index: int = 0
) -> torch.Tensor:
    """Directions for the images ``x`` (same shape, float32, on ``x.device``).

    ``direction``: ``"gaussian"`` (N(0, 1)), ``"uniform"`` (U(-1, 1)), a ``NoiseGenerator``
    (its raw, un-rescaled sample), or a callable ``fn(like, rng) -> Tensor`` called once for
    the whole batch with a CPU ``torch.Generator`` seeded from ``(seed, start_index)``.
    """
    like = x.detach().float()
    batch = like.shape[0]
    if isinstance(direction, str):
        if direction not in ("gaussian", "uniform"):
            raise ValueError(f"unknown direction {direction!r}; use 'gaussian' or 'uniform'")
        shape = tuple(like.shape[1:])
        draws = []
        for i in range(batch):
            rng = image_rng(seed, start_index + i)
            if direction == "gaussian":
                draws.append(torch.randn(shape, generator=rng))
            else:
                draws.append(torch.rand(shape, generator=rng) * 2.0 - 1.0)
        return torch.stack(draws).to(like.device)
    if isinstance(direction, NoiseGenerator):
        _, _, h, w = like.shape
        latent = direction.latent_shape(1, h, w)[1:]
        z = torch.stack(
            [torch.randn(latent, generator=image_rng(seed, start_index + i)) for i in range(batch)]
        )
        with torch.no_grad():
            out = direction(z.to(model_device(direction)))
        return out.float().to(like.device)
    if callable(direction):
        out = direction(like, image_rng(seed, start_index))
        if out.shape != like.shape:
            raise ValueError(f"direction gave shape {tuple(out.shape)}, expected {like.shape}")
        return out.detach().float().to(like.device)
    raise TypeError(f"unsupported direction {direction!r}")


__all__ = ["Direction", "DirectionFn", "draw_directions", "eval_mode", "image_rng", "model_device"]
