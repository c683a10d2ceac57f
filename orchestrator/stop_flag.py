"""The stop flag: one tiny actor on the head node that the driver sets on Ctrl-C (or
``ray job stop``) and rank 0 polls every few steps (``trainers/ray_env.py``), so all ranks
stop at the same step with a checkpoint."""

from __future__ import annotations


class StopFlag:
    """Set by the driver; read by rank 0. A plain class, wrapped with ``ray.remote``."""

    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag

    def ping(self) -> bool:
        return self.flag
