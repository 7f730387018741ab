"""The compression flow: the methods in the order given, each with its fine-tuning, then the figures
(parameters, storage, float top-1, MACs and engine cycles) before and after, and optionally the
compressed model calibrated to fixed point and scored on the engine's arithmetic.

Order rules: each method applies once; ``--ttq`` and ``--share`` quantize the weights, so at most
one of them is given and it comes last (any later fine-tuning would move the weights off their
values). Pruned weights stay zero through every later fine-tuning, also those of a model that an
earlier run pruned (any layer with exact zeros); channel pruning keeps them (it only removes
whole channels); an SVD of a pruned layer makes it dense again (with a warning).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn

from .. import network
from ..calibrate import CalibrationSettings, calibrate
from ..ingest import UnsupportedModelError, ingest
from ..program import Program
from ..runner import run_images
from ..command_exec import ReferenceBusTransport
from . import CompressionError, channels, prune, share, svd, ttq
from .storage import encode, program_storage
from .training import FineTune, TrainingData, count_parameters, evaluate, kind_of, prepare, weight_layers

APPLY = {"prune": prune.apply, "prune_channels": channels.apply, "svd": svd.apply, "ttq": ttq.apply,
         "share": share.apply}
FLAGS = {"prune": "--prune", "prune_channels": "--prune-channels", "svd": "--svd", "ttq": "--ttq", "share": "--share"}
QUANTIZERS = ("ttq", "share")
CYCLES_SOURCE = "analytic model"
ENGINE_PROBE_IMAGES = 4  # images that calibrate the program whose geometry gives MACs and cycles


@dataclass(frozen=True, kw_only=True)
class RadixCheck:
    """Calibrate the compressed model to ``bits``-bit dynamic fixed point (``weight_bits`` as
    ``--weight-bits``), on ``images`` training images (a seeded random subset; all when None), and
    score it on the test split with the engine's arithmetic."""

    bits: int = 8
    weight_bits: dict = field(default_factory=dict)
    images: int | None = None

    def __post_init__(self):
        CalibrationSettings(bits=self.bits, weight_bits=dict(self.weight_bits))  # validates both
        if self.images is not None and (not isinstance(self.images, int) or self.images < 1):
            raise CompressionError(f"--calib-images {self.images!r}: must be a positive integer")


@dataclass
class State:
    """What the methods share while they run: the module and what earlier methods left."""

    module: fx.GraphModule
    input_shape: tuple[int, int, int]
    sparse: set = field(default_factory=set)  # layers whose zeros later fine-tuning keeps
    quantized: set = field(default_factory=set)  # layers holding a few shared or ternary values
    huffman: bool = False
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def note(self, name: str, **fields) -> None:
        """Record what a method did to layer ``name`` (rank, codebook, channels...)."""
        self.info.setdefault(name, {}).update(fields)

    def rename(self, old: str, new: list[str]) -> None:
        """Layer ``old`` became the layers ``new`` (an SVD pair): its notes go to each."""
        notes = self.info.pop(old, {})
        for name in new:
            self.info[name] = dict(notes)


@dataclass
class Compressed:
    """The flow's result: the compressed module, the report (JSON-able) and warnings; ``program`` is
    the calibrated program when a :class:`RadixCheck` was asked for and the engine can run the model
    (to run it on an engine backend), else None."""

    module: fx.GraphModule
    report: dict
    warnings: list[str]
    program: Program | None = None


def check_methods(methods) -> None:
    """Refuse a method list the flow cannot apply as given (module docstring), naming the options."""
    names = [method.name for method in methods]
    for name in set(names):
        if names.count(name) > 1:
            raise CompressionError(f"{FLAGS[name]} given {names.count(name)} times: each method applies once")
    quantizers = [name for name in names if name in QUANTIZERS]
    if len(quantizers) > 1:
        raise CompressionError("--ttq and --share both quantize the weights: give one of them")
    if quantizers and names[-1] != quantizers[0]:
        raise CompressionError(f"{FLAGS[quantizers[0]]} must come last: the fine-tuning of {FLAGS[names[-1]]} after "
                               "it would move the weights off their quantized values")


def model_storage(module: nn.Module, *, huffman: bool) -> list[dict]:
    """Bytes of every Conv2d/Linear layer's weights and biases as float32 values, in the smallest of
    the formats of :mod:`radix.compress.storage` (Huffman-coded streams when ``huffman``)."""
    rows = []
    for name, layer in weight_layers(module):
        weights = encode(layer.weight.detach().numpy(), huffman=huffman)
        bias = 0 if layer.bias is None else encode(layer.bias.detach().numpy(), huffman=huffman).nbytes
        rows.append({"name": name, "weight_bytes": weights.nbytes, "bias_bytes": bias, "format": weights.format,
                     "codebook": weights.codebook_size, "gap_bits": weights.gap_bits})
    return rows


def engine_program(module: nn.Module, input_shape, x, settings: CalibrationSettings):
    """The module ingested and calibrated, or None with the reason when the engine cannot run it."""
    try:
        graph, _ = ingest(module, tuple(input_shape))
    except UnsupportedModelError as exc:
        return None, f"not runnable on the engine: {exc}"
    return calibrate(graph, x, settings), None


def engine_figures(program) -> dict:
    """MACs per image (all engine layers, and the convolutions') and cycles per image of the analytic
    cycle model through the reference backend (the geometry decides them, not the data)."""
    x = np.zeros((1,) + tuple(program.input_shape), dtype=np.float32)
    run = run_images(ReferenceBusTransport(), program, x, np.zeros(1, dtype=np.int64))
    return {"macs": sum(layer.macs for layer in program.layers),
            "conv_macs": sum(layer.macs for layer in program.layers if layer.operation.windowed),
            "cycles": run["cycles"]["per_image_mean"], "cycles_per_layer": run["cycles"]["per_layer_mean"],
            "cycles_source": CYCLES_SOURCE}


def codebook_errors(module: nn.Module, program, layers) -> dict:
    """For each of ``layers`` (shared or ternary), how exactly the program holds its float values:
    every distinct value against its fixed-point weight ``q * 2^-fl_w``."""
    by_name = {layer.name: layer for layer in program.layers}
    modules = dict(module.named_modules())
    out = {}
    for name in sorted(layers):
        layer = by_name.get(name)
        # an average pool folded into the layer (docs/arithmetic.md §10) spreads each weight over the
        # pool's window, divided: those are no longer the codebook's values
        if layer is None or len(set(layer.fl_w)) != 1 or np.size(layer.weights) != modules[name].weight.numel():
            continue
        floats = modules[name].weight.detach().double().numpy().reshape(-1)
        fixed = np.ldexp(np.asarray(layer.weights, dtype=np.float64).reshape(-1), -layer.fl_w[0])
        values = np.unique(floats[floats != 0])
        errors = np.array([np.max(np.abs(fixed[floats == v] - v)) for v in values])
        worst = int(np.argmax(errors / np.abs(values))) if values.size else 0
        out[name] = {"values": int(values.size), "exact": bool(np.all(errors == 0)), "fl_w": layer.fl_w[0],
                     "weight_bits": layer.weight_bits, "max_error": float(errors.max()) if errors.size else 0.0,
                     "max_relative_error": float(errors[worst] / abs(values[worst])) if values.size else 0.0}
    return out


def _summary(module: nn.Module, data: TrainingData, *, huffman: bool) -> dict:
    weights, nonzero, biases, nonzero_biases = count_parameters(module)
    storage = model_storage(module, huffman=huffman)
    _, accuracy = evaluate(module, data.x_test, data.y_test)
    return {"params": weights + biases, "params_nonzero": nonzero + nonzero_biases, "weights": weights,
            "weights_nonzero": nonzero, "weight_bytes": sum(r["weight_bytes"] for r in storage),
            "bias_bytes": sum(r["bias_bytes"] for r in storage), "storage": storage, "float_accuracy": accuracy}


def _probe_images(data: TrainingData) -> np.ndarray:
    return data.x_train[:: max(1, len(data.x_train) // ENGINE_PROBE_IMAGES)][:ENGINE_PROBE_IMAGES].numpy()


def _layer_rows(state: State, summary: dict) -> list[dict]:
    storage = {row["name"]: row for row in summary["storage"]}
    rows = []
    for name, layer in weight_layers(state.module):
        nonzero = int(torch.count_nonzero(layer.weight))
        row = {"name": name, "kind": kind_of(layer), "shape": list(layer.weight.shape),
               "weights": layer.weight.numel(), "nonzero": nonzero, "sparsity": 1 - nonzero / layer.weight.numel(),
               "weight_bytes": storage[name]["weight_bytes"], "bias_bytes": storage[name]["bias_bytes"],
               "format": storage[name]["format"], "gap_bits": storage[name]["gap_bits"]}
        row.update(state.info.get(name, {}))
        rows.append(row)
    return rows


def compress(model: nn.Module, *, input_shape, data: TrainingData, methods, fine_tune: FineTune = FineTune(),
             radix: RadixCheck | None = None) -> Compressed:
    """Apply ``methods`` (instances of Prune, PruneChannels, LowRank, Ternary, Share) to ``model``
    in order and measure the result (module docstring); ``model`` itself is not changed."""
    check_methods(methods)
    started = time.perf_counter()
    state = State(module=prepare(model), input_shape=tuple(int(s) for s in input_shape))
    # a model pruned by an earlier run keeps its zeros too (trained weights are never exactly zero)
    state.sparse.update(name for name, layer in weight_layers(state.module) if bool((layer.weight == 0).any()))
    before = _summary(state.module, data, huffman=False)
    probe = _probe_images(data)
    probe_settings = CalibrationSettings(bits=8, activation_rule="maxabs")
    program_before, problem = engine_program(state.module, input_shape, probe, probe_settings)
    if problem:
        state.warnings.append(f"the model before compression is {problem}")
    stages = []
    for index, method in enumerate(methods, 1):
        stage_start = time.perf_counter()
        stage = APPLY[method.name](state, method, data, fine_tune, stage=index)
        stage["float_accuracy"] = evaluate(state.module, data.x_test, data.y_test)[1]
        stage["seconds"] = round(time.perf_counter() - stage_start, 3)
        stages.append(stage)
    after = _summary(state.module, data, huffman=state.huffman)
    report = {
        "methods": stages,
        "params_before": before["params"], "params_after": after["params_nonzero"],
        "weights_before": before["weights"], "weights_nonzero": after["weights_nonzero"],
        "weights_after": after["weights"], "sparsity": 1 - after["weights_nonzero"] / before["weights"],
        "float_accuracy_before": before["float_accuracy"], "float_accuracy_after": after["float_accuracy"],
        "bytes_dense": 4 * before["weights"], "bytes_compressed": after["weight_bytes"],
        "compression_ratio": 4 * before["weights"] / after["weight_bytes"],
        "bytes_total_dense": 4 * before["params"], "bytes_total_compressed": after["weight_bytes"] + after["bias_bytes"],
        "huffman": state.huffman,
        "layers": _layer_rows(state, after), "test_images": int(len(data.y_test)),
        "train_images": int(len(data.y_train)),
    }
    if radix is not None:
        program, problem = _radix_check(state, data, radix, report)
    else:
        program, problem = engine_program(state.module, input_shape, probe, probe_settings)
    if problem:
        state.warnings.append(f"the compressed model is {problem}")
    for key, program_of in (("before", program_before), ("after", program)):
        if program_of is not None:
            figures = engine_figures(program_of)
            report.update({f"macs_{key}": figures["macs"], f"conv_macs_{key}": figures["conv_macs"],
                           f"cycles_{key}": figures["cycles"], f"cycles_per_layer_{key}": figures["cycles_per_layer"]})
    report["cycles_source"] = CYCLES_SOURCE
    report["seconds"] = round(time.perf_counter() - started, 3)
    return Compressed(module=state.module, report=report, warnings=state.warnings,
                      program=program if radix is not None else None)


def _radix_check(state: State, data: TrainingData, radix: RadixCheck, report: dict):
    x = data.x_train.numpy()
    if radix.images is not None and radix.images < len(x):
        x = x[np.sort(np.random.default_rng(0).permutation(len(x))[: radix.images])]
    settings = CalibrationSettings(bits=radix.bits, weight_bits=dict(radix.weight_bits))
    program, problem = engine_program(state.module, state.input_shape, x, settings)
    if program is None:
        return None, problem
    predictions = network.predict(network.logits(program, data.x_test.numpy()))
    accuracy = float(np.mean(predictions == data.y_test.numpy()))
    errors = codebook_errors(state.module, program, state.quantized)
    report["radix"] = {"bits": radix.bits, "weight_bits": dict(radix.weight_bits), "calibration_images": len(x),
                       "accuracy": accuracy, "loss_pp": 100 * (report["float_accuracy_before"] - accuracy),
                       "codebook_errors": errors, "program_storage": _program_bytes(program)}
    return program, None


def _program_bytes(program) -> dict:
    storage = program_storage(program)
    return {key: storage[key] for key in ("int32_bytes", "packed_bytes", "compressed_bytes")}
