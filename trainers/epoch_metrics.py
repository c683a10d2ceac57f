"""Per-epoch training metrics from per-step ones, and the one line printed per epoch.

The names are read by tests, benchmarks, Tune and MLflow: ``train_loss``,
``train_<part>_loss/acc``, ``generator_ce``, ``images_per_s``, ``longest_step_s`` (and, from
the loop, ``epoch_time_s`` and ``steady_images_per_s``: the rate after the first steps).
"""

from __future__ import annotations

PARTS = ("clean", "noise", "current", "replay", "stylized")
EPOCH_LINE_KEYS = (
    "train_loss",
    "val_clean_acc",
    "val_gaussian_acc",
    "val_generator_acc",
    "val_corruption_acc",
    "live_val_corruption_acc",  # optim.ema_decay: the live weights beside the average
    "best_epoch",  # optim.select_epoch=best_val: the epoch the run serves so far
    "images_per_s",
    "replay_size",
    "restarts_adopted",
)


class EpochTally:
    """Sums of the step metrics of one epoch (one worker)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.longest_step_s = 0.0

    def add(self, metrics: dict[str, float], seconds: float) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.longest_step_s = max(self.longest_step_s, seconds)

    def summary(self, *, epoch: int, step: int, images_per_s: float) -> dict[str, float]:
        sums, steps = self.sums, max(self.steps, 1)
        out: dict[str, float] = {
            "epoch": float(epoch + 1),
            "step": float(step),
            "train_loss": sums.get("loss", 0.0) / steps,
            "images_per_s": images_per_s,
            "longest_step_s": self.longest_step_s,
        }
        for part in PARTS:
            count = sums.get(f"{part}_count", 0.0)
            if count:
                out[f"train_{part}_loss"] = sums[f"{part}_loss_sum"] / count
                out[f"train_{part}_acc"] = sums[f"{part}_correct"] / count
        if "generator_ce" in sums:
            out["generator_ce"] = sums["generator_ce"] / steps
        return out


def epoch_line(m: dict[str, float], epochs: int) -> str:
    shown = " ".join(f"{k}={m[k]:.4g}" for k in EPOCH_LINE_KEYS if k in m)
    return f"epoch {int(m['epoch'])}/{epochs} {shown}"
