"""Per-layer fractional-length calibration (host only): float engine layers to a ``Program``.

The method of Qiu et al., "Going Deeper with Embedded FPGA Platform for CNN" (FPGA 2016), with
the rules below; by default calibration **chooses** between a few schemes built from them.

- **weights**, per layer or per output channel (``per_channel``), by ``weight_rule``:

  - ``l1`` (the paper's): the fl minimising ``sum |w - q(w, fl) 2^-fl|`` over the candidates
    ``base - W .. base + W``, where ``base = W - 1 - ceil(log2 max|w|)`` is the largest fl that
    does not saturate the largest weight. L1 is content to saturate a few large weights to
    resolve the bulk more finely, which a network whose outputs hang on its largest weights (a
    BatchNorm-folded model trained elsewhere) does not survive;
  - ``mse``: the same search minimising the squared error, which weighs a saturated large weight
    by its square (in practice ``base`` or ``base + 1``);
  - ``maxabs``: ``base`` (nothing saturates);

- **activations**, layer by layer in network order, the layer's input being the already-quantized
  output of the layers before it, by ``activation_rule``:

  - ``greedy`` (the paper's): the output fl minimising the L1 error of the layer's integer output
    (computed exactly as the golden model does) against the float network's activation on the
    calibration images; candidates ``base - 3 .. base + 3``, ``base`` from the float
    activation's max-abs;
  - ``mse``: the same search minimising the squared error (MSE-optimal clipping: large values
    count more, so it clips less);
  - ``maxabs``: Ristretto's rule, ``fl = W - 1 - ceil(log2 max|a|)``;

- **bias**: its own alignment, the accumulator's (docs/arithmetic.md §4). With
  ``bias_correction`` each output channel's float bias is first shifted by the mean error of the
  layer's quantized pre-activation (accumulator plus aligned skip, §3-§4, §9) against the float
  network's pre-activation, over the calibration images: the mean error that weight rounding and
  the quantized layers before it leave in that channel (empirical bias correction, Nagel et
  al., "Data-Free Quantization", ICCV 2019). Only the float bias that §4 quantizes changes, so
  the program stays exactly what the golden model runs;
- **static**: one fl for all weights and one for all activations (a baseline showing what
  dynamic precision buys; the paper's rules).

**Choosing** (``CalibrationSettings()``, every scheme option left ``None``): the calibration
images are split, with a fixed seed, into a fitting part and a held-out part (``holdout``, a
quarter by default, at most ``CHOOSER_HOLDOUT_IMAGES``; the fitting part at most
``CHOOSER_FIT_IMAGES``). Each candidate scheme of :data:`CANDIDATES` (with any option the caller
did set forced into every candidate) is calibrated on the fitting part, and its program runs on
the held-out images (the calibration pass computes the golden model's exact integers for them
too). The candidate with the highest logit SQNR against the float model on the held-out images
wins, unless another agrees with the float model's top-1 on significantly more of them (a
paired sign test; top-1 on a few hundred images alone moves by chance between close schemes).
The winner is then calibrated again on all the calibration images, which gives exactly the
program that forcing its options gives. ``program.report["calibration"]`` lists every candidate
with its held-out scores, the one chosen and why. With every option set
(``CalibrationSettings.paper()`` is the paper's scheme, the default before), nothing is chosen.

The candidates: per-channel MSE weights with bias correction and MSE or max-abs activations,
and the paper's scheme. On MLCommons' ResNet-8 the first agrees with the float model on 93.0 %
of held-out natural images against 72.2 % for the paper's scheme and 89.6 % for MLCommons' own
int8 TFLite model (``bench/mlperf_resnet8_accuracy.py``); max-abs activations are there for
networks whose skip paths carry rare large values (the built-in ResNet-8 on mnist32rgb), and the
paper's scheme is the fallback the others must beat on the held-out images. Choosing costs one
pass per candidate on at most 768 images plus the final pass: on ResNet-8 with 1,000 images about
2.2 times what the paper's scheme took before this module chose (its float64 convolutions of the
integers make each pass faster than it was).

The network input's fl is chosen by the activation rule. On a graph (docs/arithmetic.md §7)
layers are calibrated in the program's order: a tensor read by several layers has its one fl, a
residual add's output is the fl_out of the layer it is fused into (§9), and the tensors joined by a
concatenation share one fl chosen by the max-abs rule over all of them (§11).

**Signedness** (docs/arithmetic.md §1): a tensor known to be non-negative is stored unsigned,
``0 .. 2^W - 1``, which gives it one more bit of range at every fl: the network input when every
calibration image is non-negative, and the output of every layer with a fused ReLU; a
concatenation's tensors only when all of them are (§11). An unsigned tensor's readers must allow
it: a layer reading it as its main input needs ``K`` within the unsigned input's limit (§3),
else the tensor stays signed. Unsigned never loses against signed for a non-negative tensor (the
same steps, twice the range), so it is not a scheme to choose but the default; ``unsigned=False``
(``radix calibrate --signed``) keeps every tensor signed. Not under ``static`` (the paper's
baseline). :func:`int_range` is the one place that says which integers a tensor of ``bits`` bits
holds, signed or not; the fl rules and error measures ask it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import golden, ops
from .errors import InputError
from .ingest import INPUT, FloatGraph, FloatLayer
from .program import Layer, Program
from .schemes import ACTIVATION_RULES, WEIGHT_RULES

ACTIVATION_WINDOW = 3
SCHEME_OPTIONS = ("per_channel", "weight_rule", "activation_rule", "bias_correction")
# The schemes the default calibration tries, in this order (a tie in both scores keeps the earlier).
CANDIDATES = (
    {"per_channel": True, "weight_rule": "mse", "activation_rule": "mse", "bias_correction": True},
    {"per_channel": True, "weight_rule": "mse", "activation_rule": "maxabs", "bias_correction": True},
    {"per_channel": False, "weight_rule": "l1", "activation_rule": "greedy", "bias_correction": False},  # the paper's
)
PAPER = CANDIDATES[-1]
CHOOSER_SEED = 0
CHOOSER_FIT_IMAGES = 512
CHOOSER_HOLDOUT_IMAGES = 256
CHOOSER_MIN_IMAGES = 8  # below this nothing is held out: the candidates are judged on the images they were fitted on


class CalibrationError(InputError):
    """Calibration cannot proceed; the message names the layer or setting at fault."""


@dataclass(frozen=True, kw_only=True)
class CalibrationSettings:
    """Calibration options. A scheme option left ``None`` is chosen by calibration (module
    docstring); set all four to force a scheme.

    ``weight_bits`` maps a selector to a weight bit width for matching layers: ``"fc"`` or
    ``"conv"`` (every layer of that kind) or a layer/module name (e.g. ``"classifier.1"``).
    ``holdout`` is the share of the calibration images held out to judge the candidate schemes.
    ``unsigned`` stores every tensor known to be non-negative unsigned where the contract allows
    (module docstring); False keeps every tensor signed (an engine before version 4, a baseline).
    """

    bits: int = 8
    activation_rule: str | None = None
    per_channel: bool | None = None
    weight_rule: str | None = None
    bias_correction: bool | None = None
    static: bool = False
    weight_bits: dict = field(default_factory=dict)
    holdout: float = 0.25
    unsigned: bool = True

    def __post_init__(self):
        golden.check_width(self.bits)
        if self.activation_rule is not None and self.activation_rule not in ACTIVATION_RULES:
            raise CalibrationError(f"activation rule {self.activation_rule!r}: choose one of {ACTIVATION_RULES}")
        if self.weight_rule is not None and self.weight_rule not in WEIGHT_RULES:
            raise CalibrationError(f"weight rule {self.weight_rule!r}: choose one of {WEIGHT_RULES}")
        for selector, bits in self.weight_bits.items():
            if not isinstance(bits, int) or not 2 <= bits <= self.bits:
                raise CalibrationError(f"weight bits {bits!r} for {selector!r}: must be 2..{self.bits}")
        if self.static and self.per_channel:
            raise CalibrationError("static calibration uses one fl for the whole network: per-channel does not apply")
        if not 0.0 < self.holdout < 1.0:
            raise CalibrationError(f"holdout {self.holdout!r}: must lie strictly between 0 and 1")

    @classmethod
    def paper(cls, **kwargs) -> "CalibrationSettings":
        """The paper's scheme, the default before schemes were chosen: per-layer L1 weights,
        greedy L1 activations, no bias correction."""
        return cls(**{**PAPER, **kwargs})

    @property
    def forced(self) -> bool:
        """Every scheme option is set (``static`` sets them all): nothing to choose."""
        return self.static or all(getattr(self, name) is not None for name in SCHEME_OPTIONS)

    def resolved(self) -> "CalibrationSettings":
        """The forced scheme; under ``static`` the unset options take the paper's values."""
        if not self.forced:
            raise CalibrationError("scheme options left to choose: use candidates()")
        if self.static:
            return replace(self, **{name: PAPER[name] for name in SCHEME_OPTIONS if getattr(self, name) is None})
        return self

    def candidates(self) -> list["CalibrationSettings"]:
        """The schemes to try: :data:`CANDIDATES` with the options set here forced into each,
        duplicates dropped (order kept)."""
        out: list[CalibrationSettings] = []
        for candidate in CANDIDATES:
            chosen = {name: candidate[name] if getattr(self, name) is None else getattr(self, name)
                      for name in SCHEME_OPTIONS}
            settings = replace(self, **chosen)
            if settings not in out:
                out.append(settings)
        return out

    def describe(self) -> str:
        """A short name of the scheme, e.g. ``per-channel mse weights, greedy activations, bias correction``."""
        if self.static:
            return "static (one fl for all weights, one for all activations)"
        parts = [f"{'per-channel' if self.per_channel else 'per-layer'} {self.weight_rule or '?'} weights",
                 f"{self.activation_rule or '?'} activations"]
        if self.bias_correction:
            parts.append("bias correction")
        return ", ".join(parts)

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
        known = {operation.kind for operation in ops.LAYER_OPERATIONS if operation.has_weights}
        for layer in graph.engine_layers():
            known.update((layer.name, *layer.modules))
        unknown = sorted(set(self.weight_bits) - known)
        if unknown:
            raise CalibrationError(f"--weight-bits selector(s) {', '.join(map(repr, unknown))} match no layer: use "
                                   f"'conv', 'fc' or a layer/module name ({', '.join(sorted(known - {'conv', 'fc'}))})")


# ------------------------------------------------------------------------- numbers and errors


def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integers a ``bits``-bit tensor holds: ``[-2^(bits-1), 2^(bits-1) - 1]`` signed,
    ``[0, 2^bits - 1]`` unsigned (docs/arithmetic.md §1). The one place calibration asks."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def max_abs_fl(values, bits: int, signed: bool = True) -> int:
    """Largest fl that does not saturate ``max|values|`` (Ristretto's integer-length rule):
    ``log2(hi + 1) - ceil(log2 max|v|)``, i.e. ``bits - 1 - ...`` signed."""
    magnitude_bits = (int_range(bits, signed)[1] + 1).bit_length() - 1
    peak = float(np.max(np.abs(values))) if np.size(values) else 0.0
    if peak == 0.0:
        return magnitude_bits
    return magnitude_bits - math.ceil(math.log2(peak))


def _quantized(values, fl, bits: int, signed: bool = True) -> np.ndarray:
    """``q(v, fl) 2^-fl`` in float64: round half up, saturate (§2)."""
    lo, hi = int_range(bits, signed)
    scale = np.ldexp(1.0, np.asarray(fl, dtype=np.int32))
    return np.clip(np.floor(np.asarray(values, dtype=np.float64) * scale + 0.5), lo, hi) / scale


def quantization_error(values, fl, bits: int, norm: str = "l1", signed: bool = True) -> float:
    """``sum |v - q(v, fl) 2^-fl|`` (``l1``) or ``sum (v - q(v, fl) 2^-fl)^2`` (``mse``)."""
    diff = np.asarray(values, dtype=np.float64) - _quantized(values, fl, bits, signed)
    return float(np.sum(np.abs(diff)) if norm == "l1" else np.sum(diff * diff))


def l1_error(values, fl: int, bits: int) -> float:
    """``sum |v - q(v, fl) 2^-fl|`` (the paper's objective)."""
    return quantization_error(values, fl, bits, "l1")


def weight_fl(values, bits: int, rule: str = "l1") -> int:
    """The fl of a weight tensor (or one output channel of it) by ``rule`` (module docstring):
    ``maxabs``, or the fl minimising the ``l1`` or ``mse`` error over ``base - bits .. base + bits``
    (ties: the larger fl)."""
    base = max_abs_fl(values, bits)
    if rule == "maxabs":
        return base
    candidates = range(base - bits, base + bits + 1)
    errors = [quantization_error(values, fl, bits, "l1" if rule == "l1" else "mse") for fl in candidates]
    best = min(errors)
    return max(fl for fl, e in zip(candidates, errors) if e == best)


def best_weight_fl(values, bits: int) -> int:
    """The paper's weight fl: the L1-optimal one (:func:`weight_fl` with ``l1``)."""
    return weight_fl(values, bits, "l1")


def sqnr_db(reference, approx) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - approx) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


# ---------------------------------------------------------------------------------- calibration


def calibrate(graph: FloatGraph, x_calib, settings: CalibrationSettings | None = None, *, progress=None) -> Program:
    """Choose every fl and quantize the network; ``x_calib`` are float images ``(N, C, H, W)``
    (or vectors ``(N, F)``, as the graph's input is).

    ``progress``, if given, is called with a description after each layer of each pass.
    ``program.report["calibration"]`` says which schemes were tried and which was chosen.
    """
    settings = CalibrationSettings() if settings is None else settings
    x_calib = np.asarray(x_calib, dtype=np.float64)
    if tuple(x_calib.shape[1:]) != tuple(graph.input_shape):
        raise CalibrationError(
            f"calibration images have shape {x_calib.shape[1:]}, the model's input is {graph.input_shape}"
        )
    if len(x_calib) == 0:
        raise CalibrationError("no calibration images")
    settings.check_selectors(graph)
    floats = graph.forward(x_calib)
    if settings.forced:
        start = time.perf_counter()
        chosen = settings.resolved()
        program, _ = _calibrate_pass(graph, x_calib, floats, chosen, slice(None), progress)
        program.report["calibration"] = {
            "mode": "forced", "chosen": chosen.describe(), "criterion": None,
            "candidates": [{"scheme": chosen.describe(), "settings": _scheme(chosen), "chosen": True,
                            "seconds": round(time.perf_counter() - start, 3)}]}
        return program
    fit, holdout = _chooser_split(len(x_calib), settings.holdout)
    weight_cache: dict = {}  # the weight fls depend on the weights alone: computed once for every pass
    reference = floats[graph.output][holdout].reshape(len(holdout), -1)
    float_top1 = np.argmax(reference, axis=1)
    rows, agrees = [], []
    for candidate in settings.candidates():
        start = time.perf_counter()
        program, logits = _calibrate_pass(graph, x_calib, floats, candidate, fit, progress, extra=holdout,
                                          weight_cache=weight_cache)
        logits = logits.reshape(len(holdout), -1)
        agrees.append(np.argmax(logits, axis=1) == float_top1)
        sqnr = sqnr_db(reference, np.ldexp(logits.astype(np.float64), -program.output_fl))
        agree = int(np.count_nonzero(agrees[-1]))
        rows.append({"scheme": candidate.describe(), "settings": _scheme(candidate),
                     "holdout_agreement": agree / len(holdout), "holdout_agree_images": agree,
                     "holdout_logit_sqnr_db": _finite(sqnr), "seconds": round(time.perf_counter() - start, 3),
                     "chosen": False, "_settings": candidate, "_sqnr": sqnr})
    best, reason = _choose(rows, agrees)
    rows[best]["chosen"] = True
    chosen = rows[best]["_settings"]
    start = time.perf_counter()
    program, _ = _calibrate_pass(graph, x_calib, floats, chosen, slice(None), progress, weight_cache=weight_cache)
    for row in rows:
        del row["_settings"], row["_sqnr"]
    program.report["calibration"] = {
        "mode": "chosen", "chosen": chosen.describe(), "reason": reason, "criterion": CRITERION,
        "fit_images": int(len(fit)), "holdout_images": int(len(holdout)), "seed": CHOOSER_SEED,
        "held_out": len(x_calib) >= CHOOSER_MIN_IMAGES,  # else judged on the fitting images themselves
        "final_seconds": round(time.perf_counter() - start, 3), "candidates": rows}
    return program


CRITERION = ("on the held-out images: the highest logit SQNR against the float model, unless the candidate whose "
             "top-1 agrees with the float model's most often does so on significantly more images (paired sign "
             "test: more than two standard deviations)")


def _choose(rows: list[dict], agrees: list[np.ndarray]) -> tuple[int, str]:
    """The candidate to keep and why (:data:`CRITERION`). Top-1 agreement on a few hundred images
    moves by an image or two between close schemes, so it decides only when the difference is
    beyond chance: ``b - a > 2 sqrt(a + b)``, where ``a`` counts the images on which only the
    highest-SQNR candidate agrees with float and ``b`` those on which only the other one does.
    Ties keep the earlier candidate."""
    by_sqnr = max(range(len(rows)), key=lambda i: (rows[i]["_sqnr"], -i))
    by_top1 = max(range(len(rows)), key=lambda i: (int(np.count_nonzero(agrees[i])), rows[i]["_sqnr"], -i))
    if by_top1 == by_sqnr:
        return by_sqnr, "highest logit SQNR and top-1 agreement on the held-out images"
    only_sqnr = int(np.count_nonzero(agrees[by_sqnr] & ~agrees[by_top1]))
    only_top1 = int(np.count_nonzero(agrees[by_top1] & ~agrees[by_sqnr]))
    if only_top1 - only_sqnr > 2.0 * math.sqrt(only_top1 + only_sqnr):
        return by_top1, (f"significantly higher top-1 agreement on the held-out images than the highest-SQNR scheme "
                         f"({only_top1} images against {only_sqnr})")
    return by_sqnr, (f"highest logit SQNR on the held-out images; the best top-1 agreement ({rows[by_top1]['scheme']}: "
                     f"{only_top1} images against {only_sqnr}) is within chance")


def calibration_passes(settings: CalibrationSettings | None = None) -> int:
    """How many layer-by-layer passes :func:`calibrate` makes (its ``progress`` is called once per
    layer per pass): one for a forced scheme, else one per candidate and the final one."""
    settings = CalibrationSettings() if settings is None else settings
    return 1 if settings.forced else len(settings.candidates()) + 1


def _scheme(settings: CalibrationSettings) -> dict:
    return {name: getattr(settings, name) for name in SCHEME_OPTIONS}


def _chooser_split(n: int, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices ``(fit, held out)`` of ``n`` calibration images, a seeded random split;
    below ``CHOOSER_MIN_IMAGES`` images both are all of them."""
    if n < CHOOSER_MIN_IMAGES:
        every = np.arange(n)
        return every, every
    order = np.random.default_rng(CHOOSER_SEED).permutation(n)
    n_hold = min(max(1, round(holdout * n)), CHOOSER_HOLDOUT_IMAGES)
    n_fit = min(n - n_hold, CHOOSER_FIT_IMAGES)
    return np.sort(order[n_hold:n_hold + n_fit]), np.sort(order[:n_hold])


def _calibrate_pass(graph: FloatGraph, x_all, floats: dict, settings: CalibrationSettings, fit, progress=None, *,
                    extra=None, weight_cache: dict | None = None) -> tuple[Program, np.ndarray]:
    """One calibration with a forced scheme. Statistics (every fl, the bias correction) come from
    the images ``fit`` selects (indices, or ``slice(None)`` for all); the integers are computed for
    those and, when ``extra`` (indices) is given, for those images too, whose logits are returned
    (else the fitting images' logits)."""
    width = settings.bits
    if extra is None and isinstance(fit, slice):
        rows = None  # every image, in order: no copies
        n_fit = len(x_all)
    else:
        rows = np.arange(len(x_all))[fit] if extra is None else np.concatenate([np.arange(len(x_all))[fit], extra])
        n_fit = len(np.arange(len(x_all))[fit])

    def float_of(name):  # a float tensor's rows for the images calibrated here
        return floats[name] if rows is None else floats[name][rows]

    x_calib = x_all if rows is None else x_all[rows]
    unsigned = unsigned_tensors(graph, x_all, settings)
    wanted = list(floats) if settings.static else _concat_members(graph)
    fixed = _fixed_fls(graph, {name: float_of(name)[:n_fit] for name in wanted}, settings, width, unsigned)
    static_weight_fl = None
    if settings.static:
        static_weight_fl = weight_fl(np.concatenate([l.weight.ravel() for l in graph.engine_layers()]), width,
                                     settings.weight_rule)
    if INPUT in fixed:
        input_fl = fixed[INPUT]
    else:
        input_fl = _input_fl(x_calib[:n_fit], settings.activation_rule, width, signed=INPUT not in unsigned)
    fls = {INPUT: int(input_fl)}
    quantized = {INPUT: golden.quantize(x_calib, input_fl, width, unsigned=INPUT in unsigned)}
    remaining = {name: len(readers) for name, readers in graph.consumers().items()}
    report_layers = []
    program_layers = []
    for layer in graph.layers:
        inputs = [quantized[name] for name in layer.inputs]
        if layer.operation is ops.CONCATENATION:
            fl_out = fls[layer.inputs[0]]
            values = layer.operation.run(layer, inputs, width=width).values
            program_layers.append(_concat_layer(layer, fl_out))
            report_layers.append({"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs),
                                  "fl_in": int(fl_out), "fl_out": int(fl_out)})
        else:
            float_inputs = [float_of(name)[:n_fit] for name in layer.inputs] if settings.bias_correction else None
            program_layer, values = _calibrate_layer(layer, inputs, fls, float_of(layer.name), fixed.get(layer.name),
                                                     settings, width, static_weight_fl, n_fit, float_inputs,
                                                     exact=extra is None, weight_cache=weight_cache,
                                                     unsigned=unsigned)
            program_layers.append(program_layer)
            report_layers.append(_report_entry(program_layer))
            fl_out = program_layer.fl_out
        fls[layer.name] = int(fl_out)
        quantized[layer.name] = values
        for name in layer.inputs:
            remaining[name] -= 1
            if remaining[name] == 0:
                quantized.pop(name, None)
        if progress:
            progress(layer.name)
    report = {"settings": {**asdict(settings)}, "input_fl": int(input_fl), "images": int(n_fit),
              "layers": report_layers}
    program = Program(width=width, input_shape=tuple(graph.input_shape), input_fl=int(input_fl),
                      layers=program_layers, report=report, input_unsigned=INPUT in unsigned)
    program.link_signedness()
    report["unsigned_tensors"] = sorted(unsigned)
    logits = quantized[graph.output]
    return program, (logits[n_fit:] if extra is not None else logits)


def unsigned_tensors(graph: FloatGraph, x_calib, settings: CalibrationSettings) -> set[str]:
    """The tensors calibration stores unsigned (module docstring, "Signedness"): the network input
    when every calibration image is non-negative and every layer output with a fused ReLU, less
    those a reader cannot take unsigned (a main input beyond the unsigned reduction limit, §3) and
    concatenation groups with a signed member (§11)."""
    if not settings.unsigned or settings.static:
        return set()
    unsigned = {layer.name for layer in graph.layers if layer.operation.has_weights and layer.relu}
    if float(np.min(x_calib)) >= 0:
        unsigned.add(INPUT)
    blocked = {layer.inputs[0] for layer in graph.engine_layers()
               if int(np.prod(layer.weight.shape[1:])) > golden.max_reduction(add=layer.skip is not None,
                                                                               unsigned_in=True)}
    unsigned -= blocked
    # groups are disjoint (a tensor joins one group), so one pass settles every one of them
    for members, concats in _concat_groups(graph).items():
        if members - concats <= unsigned and not members & blocked:
            unsigned |= members
        else:
            unsigned -= members
    return unsigned


def _concat_groups(graph: FloatGraph) -> dict[frozenset, set[str]]:
    """Every group of tensors that concatenations tie to one fl and one signedness (§11): the
    group's members, mapped to the concatenations' own outputs among them."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for layer in graph.layers:
        if layer.operation is ops.CONCATENATION:
            for name in layer.inputs:
                parent[find(name)] = find(layer.name)
    groups: dict[str, set[str]] = {}
    for name in list(parent):
        groups.setdefault(find(name), set()).add(name)
    concats = {layer.name for layer in graph.layers if layer.operation is ops.CONCATENATION}
    return {frozenset(members): members & concats for members in groups.values()}


def _concat_members(graph: FloatGraph) -> list[str]:
    members = []
    for layer in graph.layers:
        if layer.operation is ops.CONCATENATION:
            members += [*layer.inputs, layer.name]
    return members


def _fixed_fls(graph: FloatGraph, floats: dict, settings: CalibrationSettings, width: int,
               unsigned: set[str]) -> dict[str, int]:
    """Tensors whose fl is fixed before the layer-by-layer search: all of them under ``static``
    (one fl for all activations, the paper's L1 rule over all of them), else the members of
    concatenation groups (§11)."""
    if settings.static:
        fl = best_weight_fl(np.concatenate([v.ravel() for v in floats.values()]), width)
        return {name: fl for name in floats}
    fixed = {}
    for members in _concat_groups(graph):
        peak = max(float(np.max(np.abs(floats[name]))) if floats[name].size else 0.0 for name in members)
        signed = not members & unsigned  # a group has one signedness (unsigned_tensors)
        fl = max_abs_fl(np.asarray([peak]), width, signed)
        fixed.update({name: fl for name in members})
    return fixed


def _calibrate_layer(layer: FloatLayer, inputs, fls: dict, float_out, fixed_fl, settings: CalibrationSettings,
                     width: int, static_weight_fl: int | None, n_fit: int,
                     float_inputs=None, *, exact: bool = True, weight_cache: dict | None = None,
                     unsigned: set[str] = frozenset()) -> tuple[Layer, np.ndarray]:
    """One conv/fc layer: weight and bias fls, accumulators, output fl, statistics. Statistics use
    the first ``n_fit`` images; ``float_inputs`` (the float tensors the layer reads, fitting images)
    are given with bias correction; ``unsigned`` names the tensors stored unsigned."""
    out_unsigned = layer.name in unsigned
    x_q = inputs[0]
    fl_in = fls[layer.inputs[0]]
    wbits = settings.bits_for(layer)
    if static_weight_fl is not None:
        fl_w = [static_weight_fl]
    else:
        fl_w = _layer_weight_fls(layer, wbits, bool(settings.per_channel), settings.weight_rule, weight_cache)
    fl_w_col = np.asarray(fl_w).reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    w_q = golden.quantize(layer.weight, fl_w_col, wbits)
    fl_b = fl_in + np.asarray(fl_w)
    bias = np.asarray(layer.bias, dtype=np.float64)
    b_q = golden.quantize_bias(bias, fl_b, width)
    fl_skip = fls[layer.skip] if layer.skip is not None else None
    skip = (inputs[1], fl_skip - fl_b, layer.skip in unsigned) if layer.skip is not None else None
    try:
        acc = _accumulate(layer, x_q, w_q, b_q, skip, width)
    except golden.ContractError as exc:
        hint = "; radix calibrate --signed keeps the skip tensor signed" if layer.skip in unsigned else ""
        raise CalibrationError(f"layer {layer.name}: {exc} (skip fl {fl_skip}, accumulator fl {fl_b.tolist()})"
                               f"{hint}") from None
    correction = None
    if float_inputs is not None:
        fl_acc = np.broadcast_to(fl_b, (acc.shape[1],))
        float_mean = _mean_preactivation(layer, float_inputs)
        quant_mean = np.ldexp(_channel_mean(acc[:n_fit]), -fl_acc)
        correction = float_mean - quant_mean
        bias = bias + correction
        corrected = golden.quantize_bias(bias, fl_b, width)
        acc = acc + (corrected - b_q).reshape((1, -1) + (1,) * (acc.ndim - 2))
        b_q = corrected
    if fixed_fl is not None:
        fl_out = fixed_fl
    else:
        fl_out = _activation_fl(float_out[:n_fit], layer, acc[:n_fit], fl_in, fl_w, settings.activation_rule, width,
                                unsigned=out_unsigned)
    out = _output(layer, acc, fl_in, fl_w, fl_out, width, exact=exact, unsigned=out_unsigned)
    w_deq = np.ldexp(w_q.astype(np.float64), -fl_w_col)
    unsat_bias = np.floor(bias * np.ldexp(1.0, fl_b) + 0.5)
    stats = {
        "weight_sqnr_db": _finite(sqnr_db(layer.weight, w_deq)),
        "weight_saturated": _saturated_share(layer.weight * np.ldexp(1.0, fl_w_col), wbits),
        "bias_saturated": int(np.count_nonzero(unsat_bias != b_q)),
        "act_sqnr_db": _finite(sqnr_db(float_out[:n_fit], np.ldexp(out.values[:n_fit].astype(np.float64), -fl_out))),
        "act_saturated": out.saturated / acc.size,
    }
    if correction is not None:  # the float bias the program quantized is layer.bias + this, per output channel
        stats["bias_correction"] = [float(c) for c in correction]
        stats["bias_correction_max_abs"] = float(np.max(np.abs(correction))) if correction.size else 0.0
    program_layer = Layer(
        name=layer.name, kind=layer.kind, modules=list(layer.modules), inputs=list(layer.inputs),
        in_shape=tuple(layer.in_shape), out_shape=tuple(layer.out_shape), kernel=layer.kernel, stride=layer.stride,
        padding=tuple(layer.padding), groups=layer.groups, relu=layer.relu, pool=layer.pool, fl_in=int(fl_in),
        fl_w=[int(f) for f in fl_w], fl_out=int(fl_out), fl_skip=None if fl_skip is None else int(fl_skip),
        weight_bits=wbits, weights=w_q, bias=b_q, role=layer.role, stats=stats, unsigned_out=out_unsigned,
    )
    return program_layer, out.values


def _layer_weight_fls(layer: FloatLayer, bits: int, per_channel: bool, rule: str, cache: dict | None) -> list[int]:
    """The weight fls of a layer, one or one per output channel (memoised in ``cache``)."""
    key = (layer.name, bits, per_channel, rule)
    if cache is not None and key in cache:
        return cache[key]
    if per_channel:
        fls = [weight_fl(w, bits, rule) for w in layer.weight]
    else:
        fls = [weight_fl(layer.weight, bits, rule)]
    if cache is not None:
        cache[key] = fls
    return fls


def _concat_layer(layer: FloatLayer, fl: int) -> Layer:
    return Layer(name=layer.name, kind=layer.kind, modules=list(layer.modules), inputs=list(layer.inputs),
                 in_shape=tuple(layer.in_shape), out_shape=tuple(layer.out_shape), kernel=(1, 1),
                 stride=(1, 1), padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=int(fl), fl_w=[0], fl_out=int(fl),
                 weight_bits=0,
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
    lo, hi = int_range(bits)
    rounded = np.floor(scaled + 0.5)
    return float(np.count_nonzero((rounded < lo) | (rounded > hi)) / rounded.size)


# ------------------------------------------------------------------------------ the arithmetic


def _accumulate(layer: FloatLayer, x_q, w_q, b_q, skip, width: int) -> np.ndarray:
    """Exact accumulators (§3), with the aligned skip tensor of a residual add (§9) when ``skip``
    is ``(values, per-channel skip shift, unsigned)``: the golden model's accumulators, computed as
    the layer's float64 map of the integers (its operation's ``torch_map``). That is exact: every
    product and partial sum is an integer below 2^(2W+15) <= 2^47 in magnitude (§3), and float64
    holds every integer below 2^53, so no operation rounds, in any order (tests/test_calibrate.py
    checks it against the golden model)."""
    import torch

    with torch.no_grad():
        y = layer.operation.torch_map(layer, torch.from_numpy(np.asarray(x_q, dtype=np.float64)),
                                      torch.from_numpy(np.asarray(w_q, dtype=np.float64)), None).numpy()
    if not np.array_equal(y, np.floor(y)):
        raise RuntimeError(f"layer {layer.name}: torch rounded an integer accumulation in float64 (internal error)")
    acc = y.astype(np.int64)
    per_channel = (1, -1) + (1,) * (acc.ndim - 2)
    acc += np.asarray(b_q, dtype=np.int64).reshape(per_channel)
    if skip is not None:
        shifts = np.broadcast_to(np.asarray(skip[1], dtype=np.int64), (acc.shape[1],)).reshape(per_channel)
        acc += golden.align_skip(skip[0].reshape(acc.shape), shifts, width, unsigned=skip[2])
    return acc


def _channel_mean(values) -> np.ndarray:
    """Per-channel mean of ``(N, C, ...)`` over everything but the channel axis."""
    values = np.asarray(values, dtype=np.float64)
    return values.mean(axis=(0, *range(2, values.ndim)))


def _mean_preactivation(layer: FloatLayer, float_inputs) -> np.ndarray:
    """The float network's mean pre-activation per output channel (before ReLU and pooling, the
    skip added) over the given images: the layer is linear, so the mean of its output is the layer
    applied to the mean image, averaged over the output's pixels."""
    import torch

    x = np.asarray(float_inputs[0], dtype=np.float64)
    with torch.no_grad():
        y = layer.operation.torch_map(layer, torch.from_numpy(x.mean(axis=0, keepdims=True)),
                                      torch.from_numpy(np.asarray(layer.weight, dtype=np.float64)),
                                      torch.from_numpy(np.asarray(layer.bias, dtype=np.float64))).numpy()
    mean = _channel_mean(y)
    if layer.skip is not None:
        skip = np.asarray(float_inputs[1], dtype=np.float64)
        mean = mean + _channel_mean(skip.reshape((len(skip), len(mean), -1)))
    return mean


def _requantize(layer: FloatLayer, acc, fl_in: int, fl_w, fl_out: int, width: int, *,
                unsigned: bool = False) -> golden.Requantized:
    shift = fl_in + np.asarray(fl_w) - fl_out
    return golden.output_stage(acc, shift if shift.size > 1 else shift[0], relu=layer.relu, pool=layer.pool,
                               width=width, unsigned=unsigned)


def _fast_output(layer: FloatLayer, acc, fl_in: int, fl_w, fl_out: int, width: int, *,
                 count: bool = False, unsigned: bool = False) -> tuple[np.ndarray, int]:
    """The layer's integer output at ``fl_out`` as float64 integers, and (with ``count``) the
    elements §5 counts as saturated: §5's round-half-up shift (exact in float64: ``acc`` and
    ``acc 2^-s`` are integers or halves below 2^52, and a larger value saturates either way),
    ReLU, saturation to the W-bit range (:func:`int_range`) and §6's pooling. The same integers
    as the golden model's output stage (tests/test_calibrate.py checks it), several times faster
    with per-channel shifts."""
    shift = golden.clamp_shift(fl_in + np.asarray(fl_w) - fl_out, width)
    shift = shift.reshape((1, -1) + (1,) * (acc.ndim - 2)) if shift.size > 1 else shift.reshape(())
    if layer.pool:
        acc = golden.even_crop(acc)
    r = np.floor(acc * np.ldexp(1.0, -shift) + 0.5)
    if layer.relu:
        np.maximum(r, 0.0, out=r)
    lo, hi = int_range(width, signed=not unsigned)
    saturated = int(np.count_nonzero((r < lo) | (r > hi))) if count else 0
    np.clip(r, lo, hi, out=r)
    if layer.pool:
        r = golden.maxpool2x2(r)
    return r, saturated


def _output(layer: FloatLayer, acc, fl_in: int, fl_w, fl_out: int, width: int, *, exact: bool,
            unsigned: bool = False) -> golden.Requantized:
    """The layer's output integers and saturation count at ``fl_out``: the golden model's output
    stage when ``exact`` (the final pass), else :func:`_fast_output` (the candidates' passes)."""
    if exact:
        return _requantize(layer, acc, fl_in, fl_w, fl_out, width, unsigned=unsigned)
    values, saturated = _fast_output(layer, acc, fl_in, fl_w, fl_out, width, count=True, unsigned=unsigned)
    return golden.Requantized(values.astype(np.int64), saturated)


def _input_fl(x, rule: str, width: int, *, signed: bool = True) -> int:
    """The network input's fl by the activation ``rule``, for a ``signed`` or unsigned input."""
    base = max_abs_fl(x, width, signed)
    if rule == "maxabs":
        return base
    candidates = range(base - ACTIVATION_WINDOW, base + ACTIVATION_WINDOW + 1)
    norm = "l1" if rule == "greedy" else "mse"
    errors = [quantization_error(x, fl, width, norm, signed) for fl in candidates]
    best = min(errors)
    return max(fl for fl, e in zip(candidates, errors) if e == best)


def _activation_fl(float_values, layer: FloatLayer, acc, fl_in: int, fl_w, rule: str, width: int, *,
                   unsigned: bool = False) -> int:
    """A layer's output fl by ``rule``: ``maxabs``, or the candidate whose exact output (the golden
    model's, computed by :func:`_fast_output`) has the least L1 (``greedy``) or squared (``mse``)
    error against the float activation (ties: the larger fl)."""
    base = max_abs_fl(float_values, width, signed=not unsigned)
    if rule == "maxabs":
        return base
    candidates = range(base - ACTIVATION_WINDOW, base + ACTIVATION_WINDOW + 1)
    reference = np.asarray(float_values, dtype=np.float64)
    errors = []
    for fl in candidates:
        values = _fast_output(layer, acc, fl_in, fl_w, fl, width, unsigned=unsigned)[0]
        diff = reference - np.ldexp(values, -fl).reshape(reference.shape)
        errors.append(float(np.sum(np.abs(diff)) if rule == "greedy" else np.sum(diff * diff)))
    best = min(errors)
    return max(fl for fl, e in zip(candidates, errors) if e == best)
