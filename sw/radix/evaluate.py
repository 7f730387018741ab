"""Accuracy of programs and of their float source models, and data loading with its checks.

``program_accuracy`` and ``load_checked`` need numpy alone (the board runs ``radix eval``);
``float_accuracy`` imports torch and returns None where it cannot run (the board, or a source
model that is not on this machine any more).
"""

from __future__ import annotations

import numpy as np

from . import network
from .data_checks import check_images, fingerprint
from .datasets import load_split, subset_indices
from .program import Program

EVAL_BATCH = 256


def load_checked(data: str, split: str, *, images: int | None = None, classes: int | None = None):
    """``(x, y, warnings)``: a split of a data set, cut to ``images``, refused when unusable.

    Messages number an image by its place in the whole file (or split), not in the subset."""
    x, y = load_split(data, split)
    keep = subset_indices(len(y), images)
    x, y = x[keep], y[keep]
    warnings = check_images(x, y, source=data_source(data, split), classes=classes, numbers=keep)
    return x, y, warnings


def data_source(data: str, split: str) -> str:
    """How messages name a split of a data set: the file itself, or the named set and its split."""
    return data if data.endswith(".npz") else f"{data} ({split} split)"


def output_classes(program: Program) -> int:
    """Classes of a program: the size of its last layer's output."""
    return int(np.prod(program.layers[-1].out_shape))


def program_accuracy(program: Program, x, y, *, progress=None) -> tuple[float, int, int]:
    """Top-1 of the program on the golden model, the number of input elements its input
    quantization saturated (§2: clipped, and counted rather than silently lost), and how many of
    those were clipped by more than one step 2^-fl: calibration may choose an fl whose range
    stops one step short of the data's maximum (e.g. pixels of 1.0 at fl 7 become 127/128),
    which costs no more than rounding; a clip beyond that loses information."""
    predictions, saturated, clipped_far = [], 0, 0
    starts = range(0, len(x), EVAL_BATCH)
    for start in (progress(starts) if progress else starts):
        batch = x[start : start + EVAL_BATCH]
        saturated += network.input_saturation(program, batch)
        scaled = np.asarray(batch, dtype=np.float64) * np.ldexp(1.0, program.input_fl)
        clipped_far += int(np.count_nonzero(np.abs(scaled - network.quantize_input(program, batch)) > 1.0))
        predictions.append(network.predict(network.logits(program, batch)))
    return float(np.mean(np.concatenate(predictions) == y)), saturated, clipped_far


def float_accuracy(module, x, y) -> float:
    """Top-1 of a torch module on float images (host only)."""
    import torch

    with torch.no_grad():
        logits = module(torch.from_numpy(np.ascontiguousarray(x)))
    return float(np.mean(logits.reshape(len(x), -1).argmax(dim=1).numpy() == y))


def source_float_accuracy(program: Program, x, y) -> tuple[float | None, str]:
    """The float top-1 of the program's source model on these images, and where it comes from:
    measured at calibration (stored in the program) when these are the very images and labels
    (compared by content, :func:`radix.data_checks.fingerprint`), else measured now when the
    source model still loads here with the same weights, else None."""
    stored = program.source.get("float_accuracy") or {}
    if stored.get("sha256") and stored["sha256"] == fingerprint(x, y):
        return float(stored["top1"]), "measured at calibration"
    try:
        from .modelspec import resolve

        resolved = resolve(program.source["model"], program.source.get("weights"))
    except Exception:  # no torch on the board, or the source model is not on this machine
        return None, "the source model does not load here"
    if program.source.get("weights_sha256") and resolved.weights_sha256 != program.source["weights_sha256"]:
        return None, "the source model's weights changed since calibration"
    return float_accuracy(resolved.module, x, y), "measured now"
