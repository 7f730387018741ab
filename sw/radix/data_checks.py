"""Checks of evaluation and calibration data before any work uses it (numpy only).

A data set that is empty, holds NaN or infinity, or labels outside the model's classes is refused
with a :class:`radix.datasets.DatasetError` naming the source; values that look unnormalised
(far beyond the usual [-1, 1] or [0, 1] range) only warn, with the numbers, because a model may
legitimately expect them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .datasets import DatasetError

UNNORMALISED_ABS = 16.0  # inputs beyond this magnitude are almost never what a CNN was trained on


def check_images(x, y=None, *, source: str, classes: int | None = None, numbers=None) -> list[str]:
    """Refuse unusable images/labels from ``source``; return warnings (possibly none).

    ``numbers[i]`` is image ``i``'s number in ``source`` (when ``x`` is a subset of it), so that a
    message points at the image in the file the user has."""
    x = np.asarray(x)
    numbers = np.arange(len(x)) if numbers is None else np.asarray(numbers)
    if x.shape[0] == 0 or x.size == 0:
        raise DatasetError(f"{source}: no images")
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise DatasetError(f"{source}: {int((~finite).sum())} non-finite values (NaN or infinity), the first in "
                           f"image {int(numbers[bad[0]])} at {tuple(int(i) for i in bad[1:])}")
    if y is not None and classes is not None:
        y = np.asarray(y)
        outside = (y < 0) | (y >= classes)
        if outside.any():
            raise DatasetError(f"{source}: {int(outside.sum())} labels outside the model's {classes} classes 0.."
                               f"{classes - 1} (e.g. {int(y[outside][0])} at image {int(numbers[np.flatnonzero(outside)[0]])})")
    warnings = []
    peak = float(np.max(np.abs(x)))
    if peak > UNNORMALISED_ABS:
        warnings.append(f"{source}: input values reach {peak:g} (range {float(x.min()):g}..{float(x.max()):g}); "
                        "is the data normalised the way the model was trained (e.g. pixels / 255)?")
    return warnings


# Fewer calibration images than this per engine layer, and the greedy per-layer fl search fits a
# handful of activations: the fls it picks are noise.
MIN_IMAGES_PER_LAYER = 1


def calibration_warnings(x, y, *, source: str, layers: int) -> list[str]:
    """Warnings, with the numbers, about calibration data that would calibrate without error but
    not represent what the model will see: all zero, constant or identical images, one class only,
    or fewer images than the network has layers. Calibration on such data reports healthy-looking
    SQNR (it measures the error on these very images) and then fails on real ones."""
    x = np.asarray(x)
    count = len(x)
    flat = x.reshape(count, -1)
    warnings = []
    if not flat.any():
        warnings.append(f"{source}: all {count} calibration images are zero: every fl is fitted to nothing")
    else:
        constant = int(np.sum(flat.max(axis=1) == flat.min(axis=1)))
        if constant:
            warnings.append(f"{source}: {constant} of {count} calibration images are constant (one value in every "
                            "pixel)")
        if count > 1 and constant < count and (flat == flat[0]).all():
            warnings.append(f"{source}: all {count} calibration images are identical")
    if y is not None and count > 1:
        labels = np.unique(np.asarray(y))
        if len(labels) == 1:
            warnings.append(f"{source}: all {count} calibration images have one label ({int(labels[0])}): the "
                            "activations of other classes are not seen")
    if count < MIN_IMAGES_PER_LAYER * layers:
        warnings.append(f"{source}: {count} calibration images for {layers} layers: too few for the activation "
                        "fls to be representative (use a few hundred)")
    return warnings


def fingerprint(x, y) -> str:
    """SHA-256 of images and labels (their dtype, shape and bytes): what a stored result measured on
    some data is keyed by, so it is reused for the same data only, whatever the file is called."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
