"""Run a whole program on the golden model: the reference backend's arithmetic.

Numpy only (runs on the board). Each layer applies its operation's arithmetic (:mod:`radix.ops`,
on ``radix.golden``) exactly as the engine does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden
from .datasets import DatasetError
from .program import INPUT, Layer, Program


@dataclass
class LayerResult:
    """A layer's integer output and its saturated-element count."""

    name: str
    values: np.ndarray
    saturated: int


def quantize_input(program: Program, x) -> np.ndarray:
    """Quantize float images ``(N, C, H, W)`` to the program's input format, fl and signedness (§2, §7)."""
    x = np.asarray(x)
    if tuple(x.shape[1:]) != tuple(program.input_shape):
        raise DatasetError(f"images of shape {tuple(x.shape[1:])} do not fit the program's input {program.input_shape}")
    return golden.quantize(x, program.input_fl, program.width, unsigned=program.input_unsigned)


def input_saturation(program: Program, x) -> int:
    """How many input elements the quantization of ``x`` saturates (§2): clipped, not lost silently
    (an unsigned input counts every negative value)."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * np.ldexp(1.0, program.input_fl) + 0.5)
    lo, hi = golden.tensor_range(program.width, unsigned=program.input_unsigned)
    return int(np.count_nonzero((scaled < lo) | (scaled > hi)))


def run_layer(layer: Layer, x, *, width: int, skip=None) -> golden.Requantized:
    """One layer on a batch of integer inputs (and its skip tensor, with an add), each tensor read
    with the signedness the layer records (§1): its operation's arithmetic (:mod:`radix.ops`)."""
    return layer.operation.run(layer, [np.asarray(x)] + ([np.asarray(skip)] if skip is not None else []), width=width)


def run(program: Program, x_q) -> list[LayerResult]:
    """All layers on quantized inputs; returns every layer's result in program order (the last
    are the logits)."""
    tensors = {INPUT: np.asarray(x_q, dtype=np.int64)}
    results = []
    for layer in program.layers:
        out = layer.operation.run(layer, [tensors[name] for name in layer.inputs], width=program.width)
        tensors[layer.name] = out.values
        results.append(LayerResult(layer.name, out.values, out.saturated))
    return results


def logits(program: Program, x) -> np.ndarray:
    """Integer logits of float images."""
    return np.reshape(run(program, quantize_input(program, x))[-1].values, (len(x), -1))


def predict(logits_int) -> np.ndarray:
    """Class = index of the largest logit, the first on ties (§7)."""
    logits_int = np.asarray(logits_int)
    return np.argmax(np.reshape(logits_int, (logits_int.shape[0], -1)), axis=1)
