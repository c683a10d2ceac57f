"""Periodic progress lines with rate and ETA (rank 0 prints)."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class ProgressMeter:
    def __init__(self, total_steps: int, *, every: int, enabled: bool, prefix: str = "") -> None:
        self.total, self.every, self.enabled, self.prefix = total_steps, every, enabled, prefix
        self.start = time.perf_counter()
        self.images = 0
        self.done = 0

    def update(self, step: int, images: int, loss: float) -> None:
        self.images += images
        self.done += 1
        if not self.enabled or step % self.every:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.images / max(elapsed, 1e-9)
        eta = (self.total - step) * elapsed / max(self.done, 1)
        print(
            f"{self.prefix}step {step}/{self.total} loss {loss:.4f} "
            f"{rate:.0f} img/s ETA {format_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)
