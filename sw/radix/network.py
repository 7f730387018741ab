"""Run a whole program on the golden model: the reference backend's arithmetic.

Numpy only (runs on the board). Each layer applies ``radix.golden`` exactly as the engine does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden
from .program import Layer, Program


@dataclass
class LayerResult:
    """A layer's integer output and its saturated-element count."""

    name: str
    values: np.ndarray
    saturated: int


def quantize_input(program: Program, x) -> np.ndarray:
    """Quantize float images ``(N, C, H, W)`` to the program's input format (§2, §7)."""
    x = np.asarray(x)
    if tuple(x.shape[1:]) != tuple(program.input_shape):
        raise ValueError(f"images of shape {tuple(x.shape[1:])} do not fit the program's input {program.input_shape}")
    return golden.quantize(x, program.input_fl, program.width)


def run_layer(layer: Layer, x, *, width: int) -> golden.Requantized:
    """One engine layer on integer inputs (a batch)."""
    if layer.kind == "fc":
        return golden.linear(np.reshape(x, (x.shape[0], -1)), layer.weights, layer.bias, shift=layer.shift, relu=layer.relu, width=width)
    return golden.conv2d(
        x, layer.weights, layer.bias, stride=layer.stride, pad=layer.pad, shift=layer.shift,
        relu=layer.relu, pool=layer.pool, width=width,
    )


def run(program: Program, x_q) -> list[LayerResult]:
    """All layers on quantized inputs; returns every layer's result (the last are the logits)."""
    results = []
    current = np.asarray(x_q, dtype=np.int64)
    for layer in program.layers:
        out = run_layer(layer, current, width=program.width)
        results.append(LayerResult(layer.name, out.values, out.saturated))
        current = out.values
    return results


def logits(program: Program, x) -> np.ndarray:
    """Integer logits of float images."""
    return run(program, quantize_input(program, x))[-1].values


def predict(logits_int) -> np.ndarray:
    """Class = index of the largest logit, the first on ties (§7)."""
    return np.argmax(np.asarray(logits_int), axis=1)
