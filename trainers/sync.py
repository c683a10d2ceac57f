"""Rank 0 decides, every rank follows at the same step.

Small decisions (a restart is ready, stop now) travel as one tiny integer tensor
broadcast: that is a single small collective, cheap enough for every step. Objects (a
fresh generator's state dict) are pickled and broadcast only when there is one to send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


def agree(env: Any, flags: Sequence[bool], device: torch.device) -> list[bool]:
    """Rank 0's ``flags`` on every rank."""
    if env.world_size == 1:
        return list(flags)
    if dist.is_available() and dist.is_initialized():
        # NCCL only moves CUDA tensors; gloo only CPU ones.
        where = device if dist.get_backend() == "nccl" else torch.device("cpu")
        box = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=where)
        dist.broadcast(box, src=0)
        return [bool(v) for v in box.tolist()]
    return [bool(v) for v in env.broadcast([bool(f) for f in flags])]  # no process group
