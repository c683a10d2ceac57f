"""Early stopping on validation: the epoch whose served classifier scored best.

With ``optim.select_epoch: best_val`` rank 0 keeps, beside the training state, a copy of
the served weights (the weight average when ``optim.ema_decay`` is on, else the live ones)
of the epoch with the highest validation score so far. The checkpoint carries it, so a
resumed run continues the comparison, and ``antray eval`` and ``model.pt`` serve it
instead of the last epoch's weights. Training itself is unchanged: only which weights come
out of the run depends on it.

The score is read from the validation split carved from the training images, never the
test images: the generated corruption suite's mean (``val_corruption_acc``) when
``data.val_suite`` is on, else the clean accuracy (``val_clean_acc``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from trainers.generator_service import Snapshot, cpu_state


def selection_metric(val_suite: str) -> str:
    """What ``best_val`` ranks epochs by for a config's ``data.val_suite``."""
    return "val_corruption_acc" if val_suite != "none" else "val_clean_acc"


def reported_metric(val_suite: str) -> str:
    """The best epoch's score as each epoch reports it (what Tune ranks such runs by)."""
    return "best_" + selection_metric(val_suite)


@dataclass
class BestEpoch:
    """The best epoch seen so far (0-based ``epoch``; -1 before the first offer)."""

    metric: str
    epoch: int = -1
    score: float = -math.inf
    weights: Snapshot | None = None

    def offer(self, epoch: int, metrics: dict[str, float], served: nn.Module) -> bool:
        """Keep ``served``'s weights if this epoch beats every earlier one (a tie keeps
        the earlier epoch). Returns whether it was kept."""
        if not self.record(epoch, metrics):
            return False
        self.weights = cpu_state(served)
        return True

    def record(self, epoch: int, metrics: dict[str, float]) -> bool:
        """The ranking alone: take ``epoch`` as the best if its score is strictly higher
        (a tie keeps the earlier epoch, NaN never wins). Returns whether it was taken."""
        if self.metric not in metrics:
            raise KeyError(
                f"optim.select_epoch=best_val ranks epochs by {self.metric}, which this "
                "epoch's validation did not report"
            )
        score = float(metrics[self.metric])
        if not score > self.score:
            return False
        self.epoch, self.score = epoch, score
        return True

    def metrics(self) -> dict[str, float]:
        """``best_epoch`` (1-based, as ``epoch``) and ``best_<metric>``, for reports."""
        if self.weights is None:
            return {}
        return {"best_epoch": float(self.epoch + 1), "best_" + self.metric: self.score}

    def state(self) -> dict[str, Any] | None:
        if self.weights is None:
            return None
        return {
            "metric": self.metric,
            "epoch": self.epoch,
            "score": self.score,
            "weights": self.weights,
        }

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's best epoch; one ranked by another metric (the
        config changed on resume) is dropped and the comparison starts again."""
        if not state or state.get("metric") != self.metric:
            return
        self.epoch, self.score = int(state["epoch"]), float(state["score"])
        self.weights = state["weights"]
