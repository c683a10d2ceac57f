"""The published constants of MNIST-C's 15 corruptions (Mu & Gilmer 2019), one severity each.

MNIST-C is generated with each corruption function of the authors' ``corruptions.py``
(github.com/google-research/mnist-c) called with its default ``severity`` argument, so every
corruption has exactly one strength. The constants below are the entries those defaults pick
from the per-severity lists (ImageNet-C's lists for the corruptions borrowed from it), written
with the severity index they come from. Only the numbers come from there; the batched torch
implementations live in the sibling modules.

The benchmark is defined on 28x28 gray digits: the affine maps fix the pixel centre 13.5, the
lines and the zigzag are drawn on the 0..27 pixel grid, the stripes cut at columns 7 and 21.
"""

from __future__ import annotations

from typing import Final

SIDE: Final[int] = 28  # MNIST image side (pixels)
CENTRE: Final[float] = (SIDE - 1) / 2  # 13.5: the point the affine maps keep fixed

# shot_noise(severity=5): c = [60, 25, 12, 5, 3][4]; output poisson(x * c) / c, clipped.
SHOT_NOISE_SCALE: Final[float] = 3.0
# impulse_noise(severity=4): c = [.03, .06, .09, .17, .27][3]; salt & pepper amount.
IMPULSE_NOISE_AMOUNT: Final[float] = 0.17
# glass_blur(severity=1): (sigma, max_delta, iterations) = (0.7, 1, 2).
GLASS_BLUR: Final[tuple[float, int, int]] = (0.7, 1, 2)
# motion_blur(severity=1): ImageMagick (radius, sigma) = (10, 3); angle ~ U(-45, 45) degrees.
MOTION_BLUR: Final[tuple[float, float]] = (10.0, 3.0)
# shear(severity=2): c = [0.2, 0.4, 0.6, 0.8, 1.0][1] radians (skimage's shear angle), sign +-1.
SHEAR: Final[float] = 0.4
# scale(severity=3): inverse-map scale 1/0.7 on both axes, i.e. the digit shrinks to 70%.
SCALE: Final[float] = 1 / 0.7
# rotate(severity=2): c = [0.2, 0.4, 0.6, 0.8, 1.0][1] radians (22.9 degrees), sign +-1.
ROTATE: Final[float] = 0.4
# brightness(severity=5): c = [.1, .2, .3, .4, .5][4] added to the HSV value channel.
BRIGHTNESS: Final[float] = 0.5
# translate(severity=3): c = [1, 2, 3, 4, 5][2] pixels along each axis, each sign +-1.
TRANSLATE: Final[int] = 3
# stripe: columns [0, 7) and [21, 28) are inverted (255 - x), half of the image.
STRIPE_COLUMNS: Final[tuple[int, int]] = (7, 21)
# fog(severity=5): (strength, wibble decay) = (3.0, 1.4), the top-left 28x28 of a plasma
# fractal generated at the function's default map size 256.
FOG: Final[tuple[float, float]] = (3.0, 1.4)
FOG_MAPSIZE: Final[int] = 256
# spatter(severity=4): (loc, scale, sigma, threshold, mask sigma, mode) of the reference; the
# MNIST code always paints mud, so mode is unused. Mud colour 63/255, mask kept where >= 0.8.
SPATTER: Final[tuple[float, float, float, float, float]] = (0.65, 0.3, 1.0, 0.65, 1.5)
SPATTER_MASK_FLOOR: Final[float] = 0.8
SPATTER_COLOUR: Final[float] = 63 / 255
# Lines: intensity 1 + log(1 - d / 2.3) at vertical distance d from the line, clipped to [0, 1]
# (so zero from d = 2.3 (1 - 1/e) = 1.45 pixels on).
LINE_WIDTH: Final[float] = 2.3
# dotted_line: end rows r0, r1 ~ randint(0, 27), i.e. 0..26; line from column 0 to 27.
# zigzag: 2-pixel long, 2-pixel high teeth from column 2 to 25, r0 ~ randint(0, 27),
# r1 = r0 + randint(-5, 5).
ZIGZAG: Final[tuple[float, float, int, int]] = (2.0, 2.0, 2, 25)  # (a, b, c0, c1)
# canny_edges: skimage.feature.canny defaults (sigma 1, hysteresis thresholds 0.1 / 0.2).
CANNY_SIGMA: Final[float] = 1.0
