"""An exponential moving average of the classifier's weights (Polyak averaging).

``optim.ema_decay`` > 0 keeps, on rank 0, ``avg <- decay * avg + (1 - decay) * w`` after
every classifier step. Floating buffers (batch-norm running statistics) are averaged the
same way, not recomputed for the averaged weights; integer buffers
(``num_batches_tracked``) stay near their first value, which matters only to a batch norm
with ``momentum=None``. The first update copies the live weights (no warm-up), so early
epochs still hold some of the first steps' weights (0.998^430 = 42 % after one MNIST
epoch).

The average is what validation measures and what a checkpoint serves to ``antray eval``;
training, the generator step and the generator restarts keep using the live weights, so
the algorithm of docs/METHOD.md runs unchanged and a run with the average on trains exactly the
same weights as one without it. It only changes which weights are read at the end: the
last ones, or a smoothed version of the last ~1 / (1 - decay) steps.

torch's ``AveragedModel`` does the bookkeeping (one fused ``lerp`` per device and dtype).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from trainers.generator_service import cpu_state


class WeightAverage:
    """The averaged copy of ``model`` and how many steps went into it."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self._averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self._averaged.eval()

    @property
    def model(self) -> nn.Module:
        """The averaged classifier (same class as the live one; eval mode)."""
        return self._averaged.module

    @property
    def updates(self) -> int:
        return int(self._averaged.n_averaged)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the live weights in (the first call copies them)."""
        self._averaged.update_parameters(model)

    def state(self) -> dict[str, Any]:
        """A copy (never views of the live average) for a checkpoint."""
        return {
            "weights": cpu_state(self.model),
            "updates": self.updates,
            "decay": self.decay,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["weights"])
        self._averaged.n_averaged.fill_(int(state["updates"]))


def create_average(model: nn.Module, decay: float) -> WeightAverage | None:
    """The run's weight average, or None when ``decay`` is 0 (off)."""
    return WeightAverage(model, decay) if decay > 0 else None
