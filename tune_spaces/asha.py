"""ASHA that never stops a trial at its last epoch (imports Ray Tune: load it lazily).

Ray's ASHA answers STOP to every result at ``max_t``, and its top rung may answer STOP at
the last epoch too. A trial that reports its last epoch is about to end by itself; a STOP
then makes Tune tear the trial's actor down while its Train run is still finishing (the
final checkpoint, shutting down its worker group). The Train controller dies with the actor,
and its workers' placement group is left to Train's placement-group cleaner, which in Ray
2.60 stops working for good after one failed State API query: the group keeps its GPUs and
the next trial waits for them for ever. Here a trial always finishes its last epoch on its
own, and its controller frees what it holds. Earlier rungs stop trials as ASHA does.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler


class FinishingASHA(AsyncHyperBandScheduler):
    """``AsyncHyperBandScheduler`` whose trials end on their own at ``max_t``."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            # Ranked in its rung by on_trial_complete, which Tune calls when it ends.
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)
