"""MNIST-C's Canny edges: the digit replaced by its binary edge map (scikit-image's Canny)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.feature import canny
from torch import Tensor

from evaluation.corruptions.mnist_c.params import CANNY_SIGMA


def canny_edges(x: Tensor, generator: torch.Generator) -> Tensor:
    """1 on the edges that ``skimage.feature.canny`` finds with its defaults, else 0.

    The reference calls exactly this (gaussian smoothing sigma 1, Sobel gradients, non-maximum
    suppression, hysteresis between 0.1 and 0.2 of the float range). Canny's hysteresis is a
    connected-component search, so the well-tested library implementation is used image by
    image on the CPU rather than re-written in torch. Deterministic.
    """
    del generator
    images = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    edges = np.zeros(images.shape, dtype=np.float64)
    for index in np.ndindex(*images.shape[:2]):
        edges[index] = canny(images[index], sigma=CANNY_SIGMA)
    return torch.from_numpy(edges).to(device=x.device, dtype=x.dtype)
