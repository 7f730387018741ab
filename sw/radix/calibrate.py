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

The network input's fl is chosen by the same activation rule. On a graph (docs/arithmetic.md §7)
layers are calibrated in the program's order: a tensor read by several layers has its one fl, a
residual add's output is the fl_out of the layer it is fused into (§9), and the tensors joined by a
concatenation share one fl chosen by the max-abs rule over all of them (§11).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import golden
from .errors import InputError
from .ingest import INPUT, FloatGraph, FloatLayer
from .program import Layer, Program

ACTIVATION_RULES = ("greedy", "maxabs")
ACTIVATION_WINDOW = 3


class CalibrationError(InputError):
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
        """The weight width of ``layer``: by name or module first, then by kind (``conv``/``fc``);
        kinds select only the model's own layers, not average pooling or identity layers."""
        selectors = (layer.name, *layer.modules) + (() if layer.role else (layer.kind,))
        for selector in selectors:
            if selector in self.weight_bits:
                return self.weight_bits[selector]
        return self.bits

    def check_selectors(self, graph: FloatGraph) -> None:
        """Refuse a ``weight_bits`` selector that names no layer, module or kind of ``graph``."""
        known = {"conv", "fc"}
        for layer in graph.engine_layers():
            known.update((layer.name, *layer.modules))
        unknown = sorted(set(self.weight_bits) - known)
        if unknown:
            raise CalibrationError(f"--weight-bits selector(s) {', '.join(map(repr, unknown))} match no layer: use "
                                   f"'conv', 'fc' or a layer/module name ({', '.join(sorted(known - {'conv', 'fc'}))})")


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


def calibrate(graph: FloatGraph, x_calib, settings: CalibrationSettings, *, progress=None) -> Program:
    """Choose every fl and quantize the network; ``x_calib`` are float images ``(N, C, H, W)``.

    ``progress``, if given, is called with a description after each layer.
    """
    x_calib = np.asarray(x_calib, dtype=np.float64)
    if x_calib.ndim != 4 or tuple(x_calib.shape[1:]) != tuple(graph.input_shape):
        raise CalibrationError(
            f"calibration images have shape {x_calib.shape[1:]}, the model's input is {graph.input_shape}"
        )
    settings.check_selectors(graph)
    width = settings.bits
    floats = graph.forward(x_calib)
    fixed = _fixed_fls(graph, floats, settings, width)
    static_weight_fl = None
    if settings.static:
        static_weight_fl = best_weight_fl(np.concatenate([l.weight.ravel() for l in graph.engine_layers()]), width)
    if INPUT in fixed:
        input_fl = fixed[INPUT]
    else:
        input_fl = _activation_fl(x_calib, None, settings.activation_rule, width)
    fls = {INPUT: int(input_fl)}
    quantized = {INPUT: golden.quantize(x_calib, input_fl, width)}
    remaining = graph.consumers()
    remaining = {name: len(readers) for name, readers in remaining.items()}
    report_layers = []
    program_layers = []
    for layer in graph.layers:
        inputs = [quantized[name] for name in layer.inputs]
        if layer.kind == "concat":
            fl_out = fls[layer.inputs[0]]
            values = np.concatenate([np.reshape(v, (len(x_calib),) + shape) for v, shape in
                                     zip(inputs, layer.input_shapes)], axis=1)
            program_layers.append(_concat_layer(layer, fl_out))
            report_layers.append({"name": layer.name, "kind": "concat", "inputs": list(layer.inputs),
                                  "fl_in": int(fl_out), "fl_out": int(fl_out)})
        else:
            program_layer, values = _calibrate_layer(layer, inputs, fls, floats[layer.name], fixed.get(layer.name),
                                                     settings, width, static_weight_fl)
            program_layers.append(program_layer)
            report_layers.append(_report_entry(program_layer))
            fl_out = program_layer.fl_out
        fls[layer.name] = int(fl_out)
        quantized[layer.name] = values
        floats.pop(layer.name, None)  # only this layer's choice needed the float activation
        for name in layer.inputs:
            remaining[name] -= 1
            if remaining[name] == 0:
                quantized.pop(name, None)
        if progress:
            progress(layer.name)
    report = {"settings": {**asdict(settings)}, "input_fl": int(input_fl), "images": int(x_calib.shape[0]),
              "layers": report_layers}
    return Program(width=width, input_shape=tuple(graph.input_shape), input_fl=int(input_fl),
                   layers=program_layers, report=report)


def _fixed_fls(graph: FloatGraph, floats: dict, settings: CalibrationSettings, width: int) -> dict[str, int]:
    """Tensors whose fl is fixed before the layer-by-layer search: all of them under ``static``
    (one fl for all activations), else the members of concatenation groups (§11)."""
    if settings.static:
        fl = best_weight_fl(np.concatenate([v.ravel() for v in floats.values()]), width)
        return {name: fl for name in floats}
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for layer in graph.layers:
        if layer.kind == "concat":
            for name in layer.inputs:
                parent[find(name)] = find(layer.name)
    groups: dict[str, list[str]] = {}
    for name in list(parent):
        groups.setdefault(find(name), []).append(name)
    fixed = {}
    for members in groups.values():
        peak = max(float(np.max(np.abs(floats[name]))) if floats[name].size else 0.0 for name in members)
        fl = max_abs_fl(np.asarray([peak]), width)
        fixed.update({name: fl for name in members})
    return fixed


def _calibrate_layer(layer: FloatLayer, inputs, fls: dict, float_out, fixed_fl, settings: CalibrationSettings,
                     width: int, static_weight_fl: int | None) -> tuple[Layer, np.ndarray]:
    """One conv/fc layer: weight and bias fls, accumulators, output fl, statistics."""
    x_q = inputs[0]
    fl_in = fls[layer.inputs[0]]
    wbits = settings.bits_for(layer)
    if static_weight_fl is not None:
        fl_w = [static_weight_fl]
    elif settings.per_channel:
        fl_w = [best_weight_fl(w, wbits) for w in layer.weight]
    else:
        fl_w = [best_weight_fl(layer.weight, wbits)]
    fl_w_col = np.asarray(fl_w).reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    w_q = golden.quantize(layer.weight, fl_w_col, wbits)
    fl_b = fl_in + np.asarray(fl_w)
    b_q = golden.quantize_bias(layer.bias, fl_b, width)
    fl_skip = fls[layer.skip] if layer.skip is not None else None
    skip = (inputs[1], fl_skip - fl_b) if layer.skip is not None else None
    try:
        acc = _accumulate(layer, x_q, w_q, b_q, skip, width)
    except golden.ContractError as exc:
        raise CalibrationError(f"layer {layer.name}: {exc} (skip fl {fl_skip}, accumulator fl {fl_b.tolist()})") from None
    if fixed_fl is not None:
        fl_out = fixed_fl
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
    program_layer = Layer(
        name=layer.name, kind=layer.kind, modules=list(layer.modules), inputs=list(layer.inputs),
        in_shape=tuple(layer.in_shape), out_shape=tuple(layer.out_shape), kernel=layer.kernel, stride=layer.stride,
        padding=tuple(layer.padding), relu=layer.relu, pool=layer.pool, fl_in=int(fl_in),
        fl_w=[int(f) for f in fl_w], fl_out=int(fl_out), fl_skip=None if fl_skip is None else int(fl_skip),
        weight_bits=wbits, weights=w_q, bias=b_q, role=layer.role, stats=stats,
    )
    return program_layer, out.values


def _concat_layer(layer: FloatLayer, fl: int) -> Layer:
    return Layer(name=layer.name, kind="concat", modules=list(layer.modules), inputs=list(layer.inputs),
                 in_shape=tuple(layer.in_shape), out_shape=tuple(layer.out_shape), kernel=1, stride=1,
                 padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=int(fl), fl_w=[0], fl_out=int(fl), weight_bits=0,
                 weights=np.zeros(0, dtype=np.int64), bias=np.zeros(0, dtype=np.int64),
                 input_shapes=[tuple(s) for s in layer.input_shapes])


def _report_entry(layer: Layer) -> dict:
    entry = {"name": layer.name, "kind": layer.kind, "role": layer.role, "inputs": list(layer.inputs),
             "modules": list(layer.modules), "fl_in": layer.fl_in, "fl_w": list(layer.fl_w), "fl_b": layer.fl_b,
             "fl_out": layer.fl_out, "weight_bits": layer.weight_bits, **layer.stats}
    if layer.skip is not None:
        entry["fl_skip"] = layer.fl_skip
    return entry


def _finite(value: float):
    """JSON has no infinity: an exact quantization reports ``None`` SQNR."""
    return None if math.isinf(value) else round(value, 3)


def _saturated_share(scaled, bits: int) -> float:
    lo, hi = golden.int_range(bits)
    rounded = np.floor(scaled + 0.5)
    return float(np.count_nonzero((rounded < lo) | (rounded > hi)) / rounded.size)


def _accumulate(layer: FloatLayer, x_q, w_q, b_q, skip, width: int) -> np.ndarray:
    """Exact accumulators, with the aligned skip tensor of a residual add (§9) when ``skip`` is
    ``(values, per-channel skip shift)``."""
    if layer.kind == "fc":
        acc = x_q.reshape(x_q.shape[0], -1) @ w_q.T + b_q.reshape(1, -1)
        if skip is not None:
            acc = acc + golden.align_skip(skip[0].reshape(acc.shape), skip[1].reshape(1, -1), width)
        return acc
    skip_args = {}
    if skip is not None:
        top, left, bottom, right = layer.padding
        _, h, w = layer.in_shape
        out = (w_q.shape[0], golden.conv_output_size(h, layer.kernel, layer.stride, top, bottom),
               golden.conv_output_size(w, layer.kernel, layer.stride, left, right))
        skip_args = {"skip": skip[0].reshape((x_q.shape[0],) + out), "skip_shift": skip[1], "width": width}
    return golden.conv_accumulate(x_q, w_q, b_q, stride=layer.stride, pad=layer.padding, **skip_args)


def _requantize(layer: FloatLayer, acc, fl_in: int, fl_w, fl_out: int, width: int) -> golden.Requantized:
    shift = fl_in + np.asarray(fl_w) - fl_out
    return golden.output_stage(acc, shift if shift.size > 1 else shift[0], relu=layer.relu, pool=layer.pool,
                               width=width)


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
