"""Run a whole program on the golden model: the reference backend's arithmetic.

Numpy only (runs on the board). Each layer applies ``radix.golden`` exactly as the engine does;
a concatenation places its inputs side by side (docs/arithmetic.md §11).
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


def concatenate(layer: Layer, parts: list[np.ndarray]) -> np.ndarray:
    """A concatenation's output: its batched inputs, each in its recorded shape, along channels."""
    batch = parts[0].shape[0]
    return np.concatenate([np.reshape(p, (batch,) + tuple(s)) for p, s in zip(parts, layer.input_shapes)], axis=1)


def skip_of(layer: Layer, skip: np.ndarray) -> np.ndarray:
    """The skip tensor in the shape of the layer's output before pooling (§9)."""
    batch = skip.shape[0]
    if layer.kind == "fc":
        return np.reshape(skip, (batch, -1))
    return np.reshape(skip, (batch, layer.weights.shape[0]) + layer.conv_shape)


def run_layer(layer: Layer, x, *, width: int, skip=None) -> golden.Requantized:
    """One engine layer on a batch of integer inputs (and its skip tensor, with an add), each
    tensor read with the signedness the layer records (§1)."""
    args = {"unsigned_in": layer.unsigned_in, "unsigned_out": layer.unsigned_out}
    if layer.skip is not None:
        args.update(skip=skip_of(layer, skip), skip_shift=layer.skip_shift, unsigned_skip=layer.unsigned_skip)
    if layer.kind == "fc":
        return golden.linear(np.reshape(x, (x.shape[0], -1)), layer.weights, layer.bias, shift=layer.shift,
                             relu=layer.relu, width=width, **args)
    return golden.conv2d(
        x, layer.weights, layer.bias, stride=layer.stride, pad=layer.padding, shift=layer.shift,
        relu=layer.relu, pool=layer.pool, width=width, groups=layer.groups, **args,
    )


def run(program: Program, x_q) -> list[LayerResult]:
    """All layers on quantized inputs; returns every layer's result in program order (the last
    are the logits)."""
    tensors = {INPUT: np.asarray(x_q, dtype=np.int64)}
    results = []
    for layer in program.layers:
        inputs = [tensors[name] for name in layer.inputs]
        if layer.kind == "concat":
            out = golden.Requantized(concatenate(layer, inputs), 0)
        else:
            out = run_layer(layer, inputs[0], width=program.width, skip=inputs[1] if len(inputs) > 1 else None)
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
