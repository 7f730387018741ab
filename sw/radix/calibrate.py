"""Per-layer fractional-length calibration (host only): float engine layers to a ``Program``.

The method of Qiu et al., "Going Deeper with Embedded FPGA Platform for CNN" (FPGA 2016):

- **weights**: per layer (or per output channel), the fl minimising the L1 quantization error
  ``sum |w - q(w, fl) 2^-fl|`` over the candidates ``base - W .. base + W``, where
  ``base = bits - 1 - ceil(log2 max|w|)`` is the largest fl that does not saturate the largest weight;
- **activations** (``greedy``): layer by layer in network order, the layer's input is the
  already-quantized output of the previous layer, and the output fl minimises the L1 error of the
  layer's integer output (computed with the golden model, i.e. the hardware's exact arithmetic)
  against the float network's activation on the calibration batch; candidates ``base - 3 ..
  base + 3`` with ``base`` from the float activation's max-abs;
- **activations** (``maxabs``): Ristretto's rule, ``fl = W - 1 - ceil(log2 max|a|)``;
- **bias**: its own alignment, the accumulator's (docs/arithmetic.md §4);
- **static**: one fl for all weights and one for all activations (a baseline showing what
  dynamic precision buys).

The network input's fl is chosen by the same activation rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import golden
from .ingest import FloatLayer, float_forward
from .program import Layer, Program

ACTIVATION_RULES = ("greedy", "maxabs")
ACTIVATION_WINDOW = 3


class CalibrationError(ValueError):
    """Calibration cannot proceed; the message names the layer or setting at fault."""


@dataclass(frozen=True, kw_only=True)
class CalibrationSettings:
    """Calibration options.

    ``weight_bits`` maps a selector to a weight bit width for matching layers: ``"fc"`` or
    ``"conv"`` (every layer of that kind) or a layer/module name (e.g. ``"classifier.1"``).
    """

    bits: int = 8
    activation_rule: str = "greedy"
    per_channel: bool = False
    static: bool = False
    weight_bits: dict = field(default_factory=dict)

    def __post_init__(self):
        golden.check_width(self.bits)
        if self.activation_rule not in ACTIVATION_RULES:
            raise CalibrationError(f"activation rule {self.activation_rule!r}: choose one of {ACTIVATION_RULES}")
        for selector, bits in self.weight_bits.items():
            if not isinstance(bits, int) or not 2 <= bits <= self.bits:
                raise CalibrationError(f"weight bits {bits!r} for {selector!r}: must be 2..{self.bits}")
        if self.static and self.per_channel:
            raise CalibrationError("static calibration uses one fl for the whole network: per-channel does not apply")

    def bits_for(self, layer: FloatLayer) -> int:
        for selector in (layer.name, *layer.modules, layer.kind):
            if selector in self.weight_bits:
                return self.weight_bits[selector]
        return self.bits


def max_abs_fl(values, bits: int) -> int:
    """Largest fl that does not saturate ``max|values|`` (Ristretto's integer-length rule)."""
    peak = float(np.max(np.abs(values))) if np.size(values) else 0.0
    if peak == 0.0:
        return bits - 1
    return bits - 1 - math.ceil(math.log2(peak))


def l1_error(values, fl: int, bits: int) -> float:
    """``sum |v - q(v, fl) 2^-fl|`` (the paper's objective)."""
    q = golden.quantize(values, fl, bits)
    return float(np.sum(np.abs(np.asarray(values, dtype=np.float64) - np.ldexp(q.astype(np.float64), -fl))))


def best_weight_fl(values, bits: int) -> int:
    """The fl minimising the L1 error over ``base - bits .. base + bits`` (ties: the larger fl)."""
    base = max_abs_fl(values, bits)
    candidates = range(base - bits, base + bits + 1)
    errors = [l1_error(values, fl, bits) for fl in candidates]
    best = min(errors)
    return max(fl for fl, e in zip(candidates, errors) if e == best)


def sqnr_db(reference, approx) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - approx) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def calibrate(layers: list[FloatLayer], x_calib, settings: CalibrationSettings, *, progress=None) -> Program:
    """Choose every fl and quantize the network; ``x_calib`` are float images ``(N, C, H, W)``.

    ``progress``, if given, is called with a description after each layer.
    """
    x_calib = np.asarray(x_calib, dtype=np.float64)
    if x_calib.ndim != 4 or tuple(x_calib.shape[1:]) != tuple(layers[0].in_shape):
        raise CalibrationError(
            f"calibration images have shape {x_calib.shape[1:]}, the model's input is {layers[0].in_shape}"
        )
    width = settings.bits
    float_acts = float_forward(layers, x_calib)
    if settings.static:
        fl_w_static = best_weight_fl(np.concatenate([l.weight.ravel() for l in layers]), width)
        fl_act_static = best_weight_fl(np.concatenate([x_calib.ravel()] + [a.ravel() for a in float_acts]), width)
        input_fl = fl_act_static
    else:
        input_fl = _activation_fl(x_calib, None, settings.activation_rule, width)
    x_q = golden.quantize(x_calib, input_fl, width)
    report_layers = []
    program_layers = []
    fl_in = input_fl
    for layer, float_out in zip(layers, float_acts):
        wbits = settings.bits_for(layer)
        if settings.static:
            fl_w = [fl_w_static]
        elif settings.per_channel:
            fl_w = [best_weight_fl(w, wbits) for w in layer.weight]
        else:
            fl_w = [best_weight_fl(layer.weight, wbits)]
        fl_w_col = np.asarray(fl_w).reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        w_q = golden.quantize(layer.weight, fl_w_col, wbits)
        fl_b = fl_in + np.asarray(fl_w)
        b_q = golden.quantize_bias(layer.bias, fl_b, width)
        acc = _accumulate(layer, x_q, w_q, b_q)
        if settings.static:
            fl_out = fl_act_static
        else:
            fl_out = _activation_fl(float_out, (layer, acc, fl_in, fl_w), settings.activation_rule, width)
        out = _requantize(layer, acc, fl_in, fl_w, fl_out, width)
        w_deq = np.ldexp(w_q.astype(np.float64), -fl_w_col)
        unsat_bias = np.floor(layer.bias * np.ldexp(1.0, fl_b) + 0.5)
        stats = {
            "weight_sqnr_db": _finite(sqnr_db(layer.weight, w_deq)),
            "weight_saturated": _saturated_share(layer.weight * np.ldexp(1.0, fl_w_col), wbits),
            "bias_saturated": int(np.count_nonzero(unsat_bias != b_q)),
            "act_sqnr_db": _finite(sqnr_db(float_out, np.ldexp(out.values.astype(np.float64), -fl_out))),
            "act_saturated": out.saturated / acc.size,
        }
        program_layers.append(
            Layer(
                name=layer.name, kind=layer.kind, modules=list(layer.modules),
                in_shape=tuple(layer.in_shape), out_shape=tuple(layer.out_shape),
                kernel=layer.kernel, stride=layer.stride, pad=layer.pad, relu=layer.relu, pool=layer.pool,
                fl_in=int(fl_in), fl_w=[int(f) for f in fl_w], fl_out=int(fl_out), weight_bits=wbits,
                weights=w_q, bias=b_q, stats=stats,
            )
        )
        report_layers.append({"name": layer.name, "fl_in": int(fl_in), "fl_w": [int(f) for f in fl_w],
                              "fl_b": [int(f) for f in fl_b], "fl_out": int(fl_out), "weight_bits": wbits, **stats})
        x_q = out.values
        fl_in = fl_out
        if progress:
            progress(layer.name)
    report = {"settings": {**asdict(settings)}, "input_fl": int(input_fl), "images": int(x_calib.shape[0]),
              "layers": report_layers}
    return Program(width=width, input_shape=tuple(layers[0].in_shape), input_fl=int(input_fl),
                   layers=program_layers, report=report)


def _finite(value: float):
    """JSON has no infinity: an exact quantization reports ``None`` SQNR."""
    return None if math.isinf(value) else round(value, 3)


def _saturated_share(scaled, bits: int) -> float:
    lo, hi = golden.int_range(bits)
    rounded = np.floor(scaled + 0.5)
    return float(np.count_nonzero((rounded < lo) | (rounded > hi)) / rounded.size)


def _accumulate(layer: FloatLayer, x_q, w_q, b_q) -> np.ndarray:
    if layer.kind == "fc":
        return x_q.reshape(x_q.shape[0], -1) @ w_q.T + b_q.reshape(1, -1)
    return golden.conv_accumulate(x_q, w_q, b_q, stride=layer.stride, pad=layer.pad)


def _requantize(layer: FloatLayer, acc, fl_in: int, fl_w, fl_out: int, width: int) -> golden.Requantized:
    shift = (fl_in + np.asarray(fl_w) - fl_out).reshape((1, -1) + (1,) * (acc.ndim - 2))
    out = golden.requantize(acc, shift, relu=layer.relu, width=width)
    if layer.pool:
        return golden.Requantized(golden.maxpool2x2(out.values), out.saturated)
    return out


def _activation_fl(float_values, layer_state, rule: str, width: int) -> int:
    """Output fl by ``rule``; ``layer_state`` is None for the network input."""
    base = max_abs_fl(float_values, width)
    if rule == "maxabs":
        return base
    candidates = range(base - ACTIVATION_WINDOW, base + ACTIVATION_WINDOW + 1)
    if layer_state is None:
        errors = [l1_error(float_values, fl, width) for fl in candidates]
    else:
        layer, acc, fl_in, fl_w = layer_state
        errors = []
        for fl in candidates:
            y = _requantize(layer, acc, fl_in, fl_w, fl, width).values
            errors.append(float(np.sum(np.abs(float_values - np.ldexp(y.astype(np.float64), -fl)))))
    best = min(errors)
    return max(fl for fl, e in zip(candidates, errors) if e == best)
