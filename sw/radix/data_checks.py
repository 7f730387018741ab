"""Checks of evaluation and calibration data before any work uses it (numpy only).

A data set that is empty, holds NaN or infinity, or labels outside the model's classes is refused
with a :class:`radix.datasets.DatasetError` naming the source; values that look unnormalised
(far beyond the usual [-1, 1] or [0, 1] range) only warn, with the numbers, because a model may
legitimately expect them.
"""

from __future__ import annotations

import numpy as np

from .datasets import DatasetError

UNNORMALISED_ABS = 16.0  # inputs beyond this magnitude are almost never what a CNN was trained on


def check_images(x, y=None, *, source: str, classes: int | None = None) -> list[str]:
    """Refuse unusable images/labels from ``source``; return warnings (possibly none)."""
    x = np.asarray(x)
    if x.shape[0] == 0 or x.size == 0:
        raise DatasetError(f"{source}: no images")
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise DatasetError(f"{source}: {int((~finite).sum())} non-finite values (NaN or infinity), the first in "
                           f"image {int(bad[0])} at {tuple(int(i) for i in bad[1:])}")
    if y is not None and classes is not None:
        y = np.asarray(y)
        outside = (y < 0) | (y >= classes)
        if outside.any():
            raise DatasetError(f"{source}: {int(outside.sum())} labels outside the model's {classes} classes 0.."
                               f"{classes - 1} (e.g. {int(y[outside][0])} at image {int(np.flatnonzero(outside)[0])})")
    warnings = []
    peak = float(np.max(np.abs(x)))
    if peak > UNNORMALISED_ABS:
        warnings.append(f"{source}: input values reach {peak:g} (range {float(x.min()):g}..{float(x.max()):g}); "
                        "is the data normalised the way the model was trained (e.g. pixels / 255)?")
    return warnings
