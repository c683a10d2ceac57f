"""Device and precision in one place: which device, autocast or not, memory format.

AMP is bf16 autocast on CUDA (no GradScaler needed); on CPU it is off. channels_last
applies to 4-D image batches and conv models on CUDA, where it speeds up cuDNN.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
from torch import nn


class DeviceUnavailableError(RuntimeError):
    """The config asks for a device this machine does not have."""


@dataclass(frozen=True)
class Precision:
    device: torch.device
    amp: bool = False
    channels_last: bool = False

    @classmethod
    def create(cls, device: str = "auto", *, amp: bool = False, channels_last: bool = False):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "runtime.device is cuda but no CUDA device is visible "
                "(use --set runtime.device=cpu, or auto)"
            )
        if amp and dev.type != "cuda":
            warnings.warn("runtime.amp needs CUDA; running in float32", stacklevel=2)
            amp = False
        return cls(dev, amp=amp, channels_last=channels_last and dev.type == "cuda")

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def model(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module
