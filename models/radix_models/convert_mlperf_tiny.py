"""Convert MLCommons' pretrained MLPerf Tiny VWW, KWS and AD models (float TFLite) to PyTorch state_dicts.

Source: mlcommons/tiny (Apache-2.0) at ``1afd2c9820f795965a6134facd0b4dfae41ef23f``, the float
TFLite model of each benchmark (``benchmark/training/*/trained_models``), mapped into Radix's
factories of the same topologies (``radix_models.mlperf_tiny``):

======  ==============================================  ==========================  ==========================
name    float TFLite (converted)                        factory                     writes
======  ==============================================  ==========================  ==========================
vww     ``visual_wake_words/.../vww_96_float.tflite``   ``mobilenet_vww()``         ``weights/mlperf_vww.pt``
kws     ``keyword_spotting/.../kws_ref_model_float32``  ``dscnn()`` (12 classes)    ``weights/mlperf_kws.pt``
ad      ``anomaly_detection/.../ad01_fp32.tflite``      ``autoencoder()``           ``weights/mlperf_ad.pt``
======  ==============================================  ==========================  ==========================

Usage (bench extra: ai-edge-litert, which also brings the TFLite flatbuffer schema)::

    # from a local clone or bare mirror of mlcommons/tiny:
    python -m radix_models.convert_mlperf_tiny --repo /path/to/tiny/.git
    # or from the files themselves (any subset):
    python -m radix_models.convert_mlperf_tiny --vww vww_96_float.tflite --kws kws_ref_model_float32.tflite \\
        --ad ad01_fp32.tflite

Each model is converted only from the file whose git blob id is in :data:`BLOBS` (``--any-version``
to override), checked against the TFLite model it came from (run by ai-edge-litert's reference
kernels), and written only if the check passes; rerunning rewrites the files byte for byte.

The mapping. The converter reads the flatbuffer (``ai_edge_litert.schema_py_generated``): every
operator, its options and its constant tensors, and walks it beside the factory's modules, one
TFLite operator per PyTorch layer, refusing (naming both) any difference of operator kind, kernel,
stride, padding, channel count, fused activation, pooling window or wiring (a plain chain from the
model input to its output):

- ``CONV_2D`` weights ``(O, KH, KW, I)`` -> ``Conv2d`` OIHW (``transpose(0, 3, 1, 2)``);
  ``DEPTHWISE_CONV_2D`` ``(1, KH, KW, C)`` (depth multiplier 1) -> ``Conv2d(groups=C)``
  ``(C, 1, KH, KW)``; ``FULLY_CONNECTED`` ``(out, in)`` -> ``Linear`` as it is.
- TensorFlow's "same" padding is worked out from the map size (``out = ceil(in / stride)``, total
  ``max((out - 1) * stride + k - in, 0)``, the smaller half before) and must equal the factory's
  ``ZeroPad2d`` plus the convolution's own padding: 1 all round on the stride-1 3x3 layers, one row
  and column after on the stride-2 3x3 layers of even maps, and 4 above, 5 below, 1 each side on
  DS-CNN's 10x4 stride-2 stem over 49x10.
- The TFLite converter folded each BatchNormalization into the weights and bias before it and
  fused the ReLU into the operator. The factory's layers are bias-free convolutions followed by
  ``BatchNorm2d`` (and ``Linear`` with its own bias followed by ``BatchNorm1d`` in the
  autoencoder), so the folded weights go into the convolution or linear layer and the BatchNorm is
  made an exact identity plus the folded bias: ``running_mean`` 0, ``running_var`` 1, ``weight``
  ``sqrt(1 + eps)`` (float32; ``eps`` is the factory module's, 1e-5), and ``bias`` the folded bias
  when the layer has no bias of its own, 0 when it has one (the autoencoder's ``Linear`` takes the
  folded bias). ``(x - 0) / sqrt(1 + eps) * sqrt(1 + eps)`` is ``x`` exactly in PyTorch's float32
  batch norm (checked on every converted model: the outputs match TFLite's to float rounding).
- Every fused activation must be ``RELU`` where the factory has ``nn.ReLU`` and ``NONE`` where it
  has none (a ``RELU6`` would be refused; there is none: the Keras sources use ``Activation('relu')``).
- ``AVERAGE_POOL_2D`` with "valid" padding over the whole map is the factory's global pool
  (``AdaptiveAvgPool2d(1)`` or ``AvgPool2d((25, 5))``); the ``RESHAPE`` after it is ``Flatten``, of a
  1x1 map, so TensorFlow's HWC flatten order is PyTorch's CHW order (no permutation of the
  classifier's columns; the converter refuses a flatten of a larger map). The final ``SOFTMAX`` is
  left out: the PyTorch models return logits (the argmax is the same).
- Images are NHWC in TFLite, NCHW in PyTorch (``x.transpose(0, 2, 3, 1)`` to run TFLite).

KWS: ``kws_ref_model_float32.tflite`` is not a float model. MLCommons' ``quantize.py`` sets
``converter.optimizations = [tf.lite.Optimize.DEFAULT]`` before writing it, so the TFLite
converter applied dynamic-range ("hybrid") quantization: the five standard convolutions (the 10x4
stem and the four 1x1 pointwise layers, tensors of at least 1,024 weights) store int8 weights with
one float scale per tensor, and at run time TFLite quantizes each such layer's input to int8 on
the fly (symmetric, one scale per sample: ``max |x| / 127``); the depthwise and dense layers (576
and 768 weights) stay float. Those dequantized weights (``q * scale``) are the only weights of this
training run that exist: the SavedModel beside it (``trained_models/kws_ref_model/``) is a
different run (its folded weights differ from the TFLite ones by more than their size), and the
int8 model ``kws_ref_model.tflite`` agrees with the float32 file's weights to its own quantization
step. So ``mlperf_kws.pt`` holds the dequantized weights, and its PyTorch model is the float model
of them; the check runs it twice against TFLite: with TFLite's per-sample input quantization
emulated before the five hybrid convolutions (:func:`hybrid_inputs`; this must match: the mapping
is exact) and as it is (the float model, which differs from TFLite's hybrid arithmetic by that
activation quantization: reported, not a failure).

The check: the largest logit (KWS, VWW; also softmax) or output (AD) difference between the
converted model and the TFLite model on seeded random inputs (uniform pixels in [0, 1] for VWW,
uniform over the int8 models' input ranges for KWS, -124..26, and AD, -85..15) and, for VWW, on
the test photos of ``radix.datasets.load_split("digitwake96", "test")``; the top-1 agreement of
the classifiers. Written only if every input agrees on top-1 and the largest difference is within
``TOLERANCE`` (1e-4) of the largest output magnitude (float rounding); for the emulated hybrid
model, at least 90 % of the inputs within that and every input within 1e-2: where float rounding
puts a value on the other side of a rounding boundary of the run-time quantization, it moves by a
whole step (``max |x| / 127``) and the difference propagates (1 input of 64). See models/README.md
for the numbers and the blob ids.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radix.engine_spec import pair
from radix.modelspec import sha256_of
from radix_models.convert_mlperf_resnet8 import git_blob_sha, read_from_git
from radix_models.tflite_runner import TFLiteRunner
from radix_models.mlperf_tiny import autoencoder, dscnn, mobilenet_vww

REPO = "mlcommons/tiny"
LICENSE = "Apache-2.0"
COMMIT = "1afd2c9820f795965a6134facd0b4dfae41ef23f"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_VWW = "benchmark/training/visual_wake_words/trained_models/"
_KWS = "benchmark/training/keyword_spotting/trained_models/"
_AD = "benchmark/training/anomaly_detection/trained_models/"
# Inputs from MLCommons' reference submissions (bench/mlperf_tiny_accuracy.py): one real ToyCar
# log-mel spectrogram (200 frames x 128 mel bins, float32) and one real MFCC map (int8).
AD_CLIP_PATH = "benchmark/reference_submissions/anomaly_detection/datasets/dcase01/normal_id_01_00000000_hist_librosa.bin"
KWS_SAMPLE_PATH = "benchmark/reference_submissions/keyword_spotting/kws/kws_input_data.cc"

# The git blob ids of the files the committed weights were converted from and checked against,
# and of the int8 models and inputs the accuracy bench reads (mlcommons/tiny at COMMIT; every one
# last changed by bceb91c, "renaming 0.5 folder to benchmark to prepare next release", 2021-12-13).
BLOBS = {
    _VWW + "vww_96_float.tflite": "8629f30a166d59c5891634d274f0df48e603e426",
    _VWW + "vww_96_int8.tflite": "f3bd64d8328992e4da5c698dd59fdb64e3f1eb0c",
    _KWS + "kws_ref_model_float32.tflite": "de08433d6c45a8f9af4041feb08aa3d3bf8f5387",
    _KWS + "kws_ref_model.tflite": "d23a6fafc122f0e7027ed1946a7eede66d0cf8ab",
    _AD + "ad01_fp32.tflite": "18675df4a5ac167ec529e836eb988645b1d48218",
    _AD + "ad01_int8.tflite": "55f35b7f3ddecfbac94e0e85258620823a2cd97a",
    AD_CLIP_PATH: "f2cc50a006f62de289c258638951be7d7d700228",
    KWS_SAMPLE_PATH: "cfd5a78e1fbfefad8711da30c5ccecebb0f5b80b",
}


@dataclass(frozen=True)
class TinyModel:
    """One MLCommons model and the factory it is converted into."""

    name: str
    factory: object
    input_shape: tuple
    float_path: str
    int8_path: str
    weights: Path
    random_range: tuple  # uniform random check inputs over this range
    task: str  # "classify" or "reconstruct"


MODELS = {
    "vww": TinyModel("vww", mobilenet_vww, (3, 96, 96), _VWW + "vww_96_float.tflite", _VWW + "vww_96_int8.tflite",
                     WEIGHTS_DIR / "mlperf_vww.pt", (0.0, 1.0), "classify"),
    "kws": TinyModel("kws", dscnn, (1, 49, 10), _KWS + "kws_ref_model_float32.tflite", _KWS + "kws_ref_model.tflite",
                     WEIGHTS_DIR / "mlperf_kws.pt", (-124.0, 26.0), "classify"),
    "ad": TinyModel("ad", autoencoder, (640,), _AD + "ad01_fp32.tflite", _AD + "ad01_int8.tflite",
                    WEIGHTS_DIR / "mlperf_ad.pt", (-85.0, 15.0), "reconstruct"),
}
CLASSES = {
    "vww": ("non-person", "person"),  # flow_from_directory's alphabetical class order of vw_coco2014_96
    "kws": ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown"),
}
RANDOM_INPUTS = 64
RANDOM_SEED = 0
VWW_PHOTOS = 1000  # the digitwake96 test split
# Largest output difference from TFLite accepted, relative to the largest output magnitude (at
# least 1): float32 rounding through a dozen layers is ~1e-6 of it.
TOLERANCE = 1e-4
HYBRID_TOLERANCE = 1e-2  # a hybrid model's inputs whose run-time quantization rounds a value the other way
HYBRID_SHARE = 0.9  # of a hybrid model's inputs must match to float rounding (TOLERANCE)


class ConversionError(ValueError):
    """The TFLite model is not the factory's topology (the message names the operator and the layer)."""


def load_converted(name: str, weights=None) -> nn.Module:
    """The factory of ``name`` (``vww``, ``kws``, ``ad``) with the converted weights, in eval mode."""
    spec = MODELS[name]
    model = spec.factory()
    model.load_state_dict(torch.load(spec.weights if weights is None else weights, map_location="cpu",
                                     weights_only=True))
    return model.eval()


# ------------------------------------------------------------------------- the TFLite flatbuffer


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple
    dtype: str
    data: np.ndarray | None  # constant tensors: the values (dequantized to float64 if int8)
    quantized: bool = False  # an int8 constant with scales (a hybrid layer's weights)
    scales: tuple = ()


@dataclass
class TFLiteOp:
    index: int
    kind: str
    options: dict
    inputs: list  # TensorInfo or None (an omitted optional input)
    outputs: list

    def describe(self) -> str:
        return f"TFLite operator {self.index} {self.kind} ({self.outputs[0].name.split(';')[0]})"


@dataclass
class TFLiteGraph:
    ops: list
    input: TensorInfo
    output: TensorInfo


def _enum_names(enum) -> dict:
    return {value: key for key, value in vars(enum).items() if not key.startswith("_")}


def read_tflite(data: bytes) -> TFLiteGraph:
    """Operators, options and constant tensors of a one-subgraph TFLite model."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if len(model.subgraphs) != 1:
        raise ConversionError(f"expected one subgraph, the model has {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    act_names = _enum_names(schema.ActivationFunctionType)
    pad_names = _enum_names(schema.Padding)

    def tensor(i: int) -> TensorInfo | None:
        if i < 0:
            return None
        t = graph.tensors[i]
        dtype = type_names[t.type]
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        raw = None
        if buffer is not None and buffer.data is not None and len(buffer.data):
            raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
        elif buffer is not None and getattr(buffer, "offset", 0) > 1:  # stored after the flatbuffer
            raw = bytes(data[buffer.offset:buffer.offset + buffer.size])
        shape = tuple(int(s) for s in t.shape)
        values, quantized, scales = None, False, ()
        if raw is not None:
            np_type = {"FLOAT32": np.float32, "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8}[dtype]
            values = np.frombuffer(raw, dtype=np_type).reshape(shape).astype(np.float64)
            q = t.quantization
            if dtype in ("INT8", "UINT8") and q is not None and q.scale is not None and len(q.scale):
                scales = tuple(float(s) for s in q.scale)
                zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.float64)
                if np.any(zero != 0):
                    raise ConversionError(f"tensor {t.name.decode()}: int8 weights with zero points {zero}")
                scale = np.asarray(scales)
                if len(scales) > 1:
                    view = [1] * len(shape)
                    view[q.quantizedDimension] = -1
                    scale = scale.reshape(view)
                values = values * scale
                quantized = True
        return TensorInfo(i, t.name.decode(), shape, dtype, values, quantized, scales)

    ops = []
    for k, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"code {code.builtinCode}")
        options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        if "fusedActivationFunction" in options:
            options["fusedActivationFunction"] = act_names[options["fusedActivationFunction"]]
        if "padding" in options:
            options["padding"] = pad_names[options["padding"]]
        ops.append(TFLiteOp(k, kind, options, [tensor(i) for i in op.inputs], [tensor(i) for i in op.outputs]))
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ConversionError("expected one input and one output")
    return TFLiteGraph(ops, tensor(graph.inputs[0]), tensor(graph.outputs[0]))


# -------------------------------------------------------------------------- the factory's layers


@dataclass
class FactoryLayer:
    kind: str  # conv, fc, pool, flatten
    name: str
    module: nn.Module
    pad: tuple = (0, 0, 0, 0)  # a preceding ZeroPad2d: (left, right, top, bottom)
    bn: tuple | None = None  # (name, module)
    relu: bool = False
    extra: list = field(default_factory=list)

    def describe(self) -> str:
        return f"factory layer {self.name} ({type(self.module).__name__})"


def factory_layers(model: nn.Module) -> list[FactoryLayer]:
    """The factory's ``nn.Sequential`` grouped into layers: [ZeroPad2d] Conv2d/Linear [BatchNorm] [ReLU],
    pools and Flatten."""
    if not isinstance(model, nn.Sequential):
        raise ConversionError(f"expected an nn.Sequential factory, got {type(model).__name__}")
    layers: list[FactoryLayer] = []
    pad = None
    for name, module in model.named_children():
        if isinstance(module, nn.ZeroPad2d):
            pad = tuple(int(p) for p in module.padding)
            continue
        if pad is not None and not isinstance(module, nn.Conv2d):
            raise ConversionError(f"factory layer {name}: a ZeroPad2d must precede a Conv2d")
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            layers.append(FactoryLayer("conv" if isinstance(module, nn.Conv2d) else "fc", name, module,
                                       pad=pad or (0, 0, 0, 0)))
            pad = None
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not layers or layers[-1].kind not in ("conv", "fc") or layers[-1].bn or layers[-1].relu:
                raise ConversionError(f"factory layer {name}: a BatchNorm must follow a Conv2d or Linear directly")
            layers[-1].bn = (name, module)
        elif isinstance(module, nn.ReLU):
            if not layers or layers[-1].kind not in ("conv", "fc") or layers[-1].relu:
                raise ConversionError(f"factory layer {name}: a ReLU must follow a Conv2d or Linear (and its BatchNorm)")
            layers[-1].relu = True
        elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            layers.append(FactoryLayer("pool", name, module))
        elif isinstance(module, nn.Flatten):
            layers.append(FactoryLayer("flatten", name, module))
        else:
            raise ConversionError(f"factory layer {name}: {type(module).__name__} has no TFLite counterpart here")
    return layers


def _tflite_order(shape: tuple) -> tuple:
    """A PyTorch per-sample shape, ``(C, H, W)`` or ``(F,)``, in TFLite's order (HWC)."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# ------------------------------------------------------------------------------- the mapping


@dataclass
class Conversion:
    state: dict
    hybrid: list  # names of the Conv2d/Linear modules whose TFLite weights are int8 (hybrid layers)
    layers: list  # one line per mapped layer


def convert(tflite: TFLiteGraph, model: nn.Module, input_shape: tuple) -> Conversion:
    """The factory's state_dict from the TFLite model's weights, every operator checked against the
    factory's layer (:class:`ConversionError` naming both on any difference)."""
    layers = factory_layers(model)
    ops = list(tflite.ops)
    if ops and ops[-1].kind == "SOFTMAX":
        softmax = ops.pop()
        if softmax.inputs[0].index != (ops[-1].outputs[0].index if ops else -1) or \
                softmax.outputs[0].index != tflite.output.index:
            raise ConversionError(f"{softmax.describe()}: expected the model's output to be the softmax of the last layer")
    elif ops and ops[-1].outputs[0].index != tflite.output.index:
        raise ConversionError(f"{ops[-1].describe()}: expected the last operator to give the model's output")
    if len(ops) != len(layers):
        raise ConversionError(f"the TFLite model has {len(ops)} operators before any softmax "
                              f"({', '.join(op.kind for op in ops)}), the factory {len(layers)} layers "
                              f"({', '.join(layer.name + ':' + layer.kind for layer in layers)})")
    # the shape of the running tensor, PyTorch order without the batch: (C, H, W) or (F,)
    shape = tuple(input_shape)
    tf_input = tflite.input.shape[1:]
    if tuple(tf_input) != _tflite_order(shape):
        raise ConversionError(f"TFLite input {tflite.input.shape} is not the factory's input {input_shape} (NHWC)")
    params = model.state_dict()
    state: dict = {}
    hybrid: list = []
    lines: list = []
    source = tflite.input.index
    for op, layer in zip(ops, layers):
        where = f"{op.describe()} / {layer.describe()}"
        if op.inputs[0] is None or op.inputs[0].index != source:
            raise ConversionError(f"{where}: reads tensor {op.inputs[0] and op.inputs[0].index}, not the previous "
                                  f"operator's output {source} (only a plain chain is mapped)")
        source = op.outputs[0].index
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            shape = _map_conv(op, layer, shape, where, state, params)
        elif op.kind == "FULLY_CONNECTED":
            shape = _map_fc(op, layer, shape, where, state, params)
        elif op.kind == "AVERAGE_POOL_2D":
            shape = _map_pool(op, layer, shape, where)
        elif op.kind == "RESHAPE":
            if layer.kind != "flatten":
                raise ConversionError(f"{where}: RESHAPE maps to Flatten only")
            if len(shape) != 3 or shape[1:] != (1, 1):
                raise ConversionError(f"{where}: flattens a {shape} map; TensorFlow's HWC order equals PyTorch's CHW "
                                      "order only for a 1x1 map (no permutation is implemented)")
            shape = (shape[0],)
        else:
            raise ConversionError(f"{where}: operator {op.kind} is not mapped")
        got = op.outputs[0].shape[1:]
        if tuple(got) != _tflite_order(shape):
            raise ConversionError(f"{where}: TFLite output {op.outputs[0].shape}, the factory's {shape} (C,H,W)")
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            weight = op.inputs[1]
            if weight.quantized:
                hybrid.append(layer.name)
            lines.append(f"{op.index:2d} {op.kind:<17} -> {layer.name}{' + ' + layer.bn[0] if layer.bn else ''}: "
                         f"weights {weight.shape} {weight.dtype}"
                         f"{' (hybrid: int8, ' + str(len(weight.scales)) + ' scale(s))' if weight.quantized else ''}, "
                         f"{op.options.get('fusedActivationFunction')}, out {tuple(shape)}")
        else:
            lines.append(f"{op.index:2d} {op.kind:<17} -> {layer.name}: out {tuple(shape)}")
    for key, value in params.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
    missing = [key for key in params if key not in state]
    if missing:
        raise ConversionError(f"factory parameters left unmapped: {missing}")
    return Conversion({key: state[key] for key in params}, hybrid, lines)


def _check_activation(op: TFLiteOp, layer: FactoryLayer, where: str) -> None:
    act = op.options.get("fusedActivationFunction")
    want = "RELU" if layer.relu else "NONE"
    if act != want:
        raise ConversionError(f"{where}: fused activation {act}, the factory has {'nn.ReLU' if layer.relu else 'none'}")


def _bias(op: TFLiteOp, count: int, where: str) -> np.ndarray:
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    if bias is None:
        return np.zeros(count)
    if bias.data is None or bias.data.shape != (count,) or bias.dtype != "FLOAT32":
        raise ConversionError(f"{where}: expected a float32 bias of {count}, got {bias.shape} {bias.dtype}")
    return bias.data


def _put(state: dict, params: dict, key: str, value, where: str) -> None:
    value = torch.as_tensor(np.asarray(value), dtype=params[key].dtype).clone().contiguous()
    if tuple(value.shape) != tuple(params[key].shape):
        raise ConversionError(f"{where}: {key} has shape {tuple(value.shape)} from TFLite, "
                              f"{tuple(params[key].shape)} in the factory")
    state[key] = value


def _put_folded(layer: FactoryLayer, weight: np.ndarray, bias: np.ndarray, where: str, state: dict,
                params: dict) -> None:
    """The folded weights and bias into the layer and its BatchNorm (an exact identity plus the bias)."""
    _put(state, params, f"{layer.name}.weight", weight.astype(np.float32), where)
    own_bias = getattr(layer.module, "bias", None) is not None
    if own_bias:
        _put(state, params, f"{layer.name}.bias", bias.astype(np.float32), where)
    if layer.bn is None:
        if not own_bias:
            raise ConversionError(f"{where}: the folded bias has nowhere to go (no bias, no BatchNorm)")
        return
    name, bn = layer.bn
    n = bn.num_features
    if n != len(bias):
        raise ConversionError(f"{where}: {name} has {n} features, the layer {len(bias)} outputs")
    if not bn.affine or not bn.track_running_stats:
        raise ConversionError(f"{where}: {name} needs affine parameters and running statistics")
    _put(state, params, f"{name}.running_mean", np.zeros(n, np.float32), where)
    _put(state, params, f"{name}.running_var", np.ones(n, np.float32), where)
    _put(state, params, f"{name}.weight", np.full(n, np.sqrt(np.float32(1) + np.float32(bn.eps)), np.float32), where)
    _put(state, params, f"{name}.bias", np.zeros(n, np.float32) if own_bias else bias.astype(np.float32), where)


def _map_conv(op, layer, shape, where, state, params) -> tuple:
    if layer.kind != "conv":
        raise ConversionError(f"{where}: a convolution maps to Conv2d")
    conv: nn.Conv2d = layer.module
    c, h, w = shape
    o = op.options
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    weight = op.inputs[1]
    if weight is None or weight.data is None:
        raise ConversionError(f"{where}: the weights are not a constant tensor")
    if depthwise:
        if o.get("depthMultiplier", 1) != 1 or conv.groups != c or conv.out_channels != c:
            raise ConversionError(f"{where}: depthwise with multiplier {o.get('depthMultiplier')}, the factory's "
                                  f"Conv2d has groups={conv.groups}, {conv.in_channels}->{conv.out_channels} on {c} channels")
        kh, kw = weight.shape[1:3]
        torch_weight = weight.data.transpose(3, 0, 1, 2)  # (1, KH, KW, C) -> (C, 1, KH, KW)
    else:
        if conv.groups != 1:
            raise ConversionError(f"{where}: CONV_2D is a full convolution, the factory's has groups={conv.groups}")
        kh, kw = weight.shape[1:3]
        if weight.shape[3] != c:
            raise ConversionError(f"{where}: the TFLite kernel reads {weight.shape[3]} channels, the map has {c}")
        torch_weight = weight.data.transpose(0, 3, 1, 2)  # (O, KH, KW, I) -> (O, I, KH, KW)
    if (kh, kw) != pair(conv.kernel_size):
        raise ConversionError(f"{where}: kernel {kh}x{kw}, the factory's {conv.kernel_size}")
    stride = (o.get("strideH"), o.get("strideW"))
    if stride != pair(conv.stride):
        raise ConversionError(f"{where}: stride {stride}, the factory's {conv.stride}")
    if (o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)) != (1, 1) or pair(conv.dilation) != (1, 1):
        raise ConversionError(f"{where}: dilation is not mapped")
    if o.get("padding") == "SAME":
        top, bottom = _same_padding(h, kh, stride[0])
        left, right = _same_padding(w, kw, stride[1])
    elif o.get("padding") == "VALID":
        top = bottom = left = right = 0
    else:
        raise ConversionError(f"{where}: padding {o.get('padding')}")
    ph, pw = pair(conv.padding)
    pl, pr, pt, pb = layer.pad
    factory_pad = (pt + ph, pb + ph, pl + pw, pr + pw)
    if (top, bottom, left, right) != factory_pad:
        raise ConversionError(f"{where}: TensorFlow pads {o.get('padding')} (top, bottom, left, right) = "
                              f"{(top, bottom, left, right)} on the {h}x{w} map, the factory {factory_pad}")
    _check_activation(op, layer, where)
    out_c = torch_weight.shape[0]
    bias = _bias(op, out_c, where)
    _put_folded(layer, torch_weight, bias, where, state, params)
    out_h = (h + top + bottom - kh) // stride[0] + 1
    out_w = (w + left + right - kw) // stride[1] + 1
    return (out_c, out_h, out_w)


def _map_fc(op, layer, shape, where, state, params) -> tuple:
    if layer.kind != "fc":
        raise ConversionError(f"{where}: FULLY_CONNECTED maps to Linear")
    if len(shape) != 1:
        raise ConversionError(f"{where}: reads a {shape} map, expected a vector (a Flatten first)")
    weight = op.inputs[1]
    if weight is None or weight.data is None or weight.shape != (layer.module.out_features, layer.module.in_features):
        raise ConversionError(f"{where}: weights {weight and weight.shape}, the factory's Linear is "
                              f"{layer.module.in_features}->{layer.module.out_features}")
    if weight.shape[1] != shape[0]:
        raise ConversionError(f"{where}: reads {weight.shape[1]} inputs, the vector has {shape[0]}")
    if op.options.get("keepNumDims") or op.options.get("weightsFormat", 0) != 0:
        raise ConversionError(f"{where}: options {op.options} are not mapped")
    _check_activation(op, layer, where)
    bias = _bias(op, weight.shape[0], where)
    _put_folded(layer, weight.data, bias, where, state, params)
    return (weight.shape[0],)


def _map_pool(op, layer, shape, where) -> tuple:
    if layer.kind != "pool":
        raise ConversionError(f"{where}: AVERAGE_POOL_2D maps to AvgPool2d or AdaptiveAvgPool2d")
    c, h, w = shape
    o = op.options
    window = (o.get("filterHeight"), o.get("filterWidth"))
    stride = (o.get("strideH"), o.get("strideW"))
    if o.get("padding") != "VALID" or o.get("fusedActivationFunction") != "NONE":
        raise ConversionError(f"{where}: padding {o.get('padding')}, activation {o.get('fusedActivationFunction')}")
    pool = layer.module
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        if pair(pool.output_size) != (1, 1) or window != (h, w):
            raise ConversionError(f"{where}: a {window} pool of the {h}x{w} map, the factory's {pool}")
        return (c, 1, 1)
    if window != pair(pool.kernel_size) or stride != pair(pool.stride) or pair(pool.padding) != (0, 0) \
            or pool.ceil_mode:
        raise ConversionError(f"{where}: window {window} stride {stride}, the factory's {pool}")
    return (c, (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1)


# --------------------------------------------------------------------------------- running TFLite


def _symmetric_int8_per_sample(module, inputs):
    """TFLite's hybrid input quantization (``SymmetricQuantizeFloats``, one scale per sample):
    ``q = clamp(round(x * 127 / r), -127, 127)`` with ``r = max |x|`` and round half away from
    zero, and the layer then sees ``q * r / 127``."""
    (x,) = inputs
    r = x.abs().flatten(1).amax(1).reshape((-1,) + (1,) * (x.ndim - 1))
    safe = torch.where(r > 0, r, torch.ones_like(r))
    v = x * (torch.tensor(127.0, dtype=x.dtype) / safe)
    q = torch.clamp(torch.sign(v) * torch.floor(v.abs() + 0.5), -127, 127)
    return (torch.where(r > 0, q * (safe / torch.tensor(127.0, dtype=x.dtype)), torch.zeros_like(x)),)


@contextlib.contextmanager
def hybrid_inputs(model: nn.Module, names: list):
    """Within the block, the named layers see their input quantized as TFLite's hybrid kernels do."""
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_pre_hook(_symmetric_int8_per_sample) for name in names]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def torch_outputs(model: nn.Module, x, *, batch: int = 256) -> np.ndarray:
    """The model's float outputs ``(N, outputs)`` as float64."""
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32)))
                          for i in range(0, len(x), batch)]).double().reshape(len(x), -1).numpy()


def compare(reference: np.ndarray, logits: np.ndarray, task: str) -> dict:
    """The largest difference of ``reference`` (PyTorch) from TFLite's ``logits`` and, for a
    classifier, top-1 agreement and the largest softmax difference."""
    diff = np.abs(reference - logits).max(axis=1)
    bound = TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    out = {"inputs": int(len(reference)), "max_abs_diff": float(np.max(diff)),
           "max_abs_reference": float(np.max(np.abs(reference))),
           "inputs_within_float_rounding": int(np.count_nonzero(diff <= bound))}
    if task == "classify":
        soft = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)  # noqa: E731
        out["max_abs_softmax_diff"] = float(np.max(np.abs(soft(reference) - soft(logits))))
        out["top1_agreement"] = float(np.mean(reference.argmax(1) == logits.argmax(1)))
    return out


def check_inputs(spec: TinyModel) -> dict:
    """The named input sets the converted model is checked on."""
    rng = np.random.default_rng(RANDOM_SEED)
    lo, hi = spec.random_range
    sets = {f"uniform random {lo:g}..{hi:g}": rng.uniform(lo, hi, (RANDOM_INPUTS,) + spec.input_shape).astype(np.float32)}
    if spec.name == "vww":
        from radix.datasets import load_split

        sets["digitwake96 test photos"] = np.asarray(load_split("digitwake96", "test")[0][:VWW_PHOTOS])
    return sets


def check(spec: TinyModel, model: nn.Module, tflite_bytes: bytes, hybrid: list) -> dict:
    """Every check input set through the converted model and the TFLite model; for a hybrid model
    both with TFLite's input quantization emulated (``emulated``: must match) and without
    (``float``: the converted float model, reported)."""
    runner = TFLiteRunner(tflite_bytes)
    result = {}
    for label, x in check_inputs(spec).items():
        t_logits, _ = runner.run(x)
        row = {}
        if hybrid:
            with hybrid_inputs(model, hybrid):
                row["emulated"] = compare(torch_outputs(model, x), t_logits, spec.task)
        row["float"] = compare(torch_outputs(model, x), t_logits, spec.task)
        result[label] = row
    return result


def passed(result: dict, hybrid: list) -> bool:
    """A float model must match on every input to float rounding. A hybrid one (emulated) on
    nearly every input: where float rounding moves a value across a rounding boundary of TFLite's
    run-time input quantization, that value differs by one quantization step (``max |x| / 127``)
    and the difference propagates, so a few inputs may differ by more, within HYBRID_TOLERANCE."""
    for row in result.values():
        r = row["emulated" if hybrid else "float"]
        if "top1_agreement" in r and r["top1_agreement"] < 1.0:
            return False
        scale = max(1.0, r["max_abs_reference"])
        if not hybrid and r["max_abs_diff"] > TOLERANCE * scale:
            return False
        if hybrid and (r["max_abs_diff"] > HYBRID_TOLERANCE * scale
                       or r["inputs_within_float_rounding"] < HYBRID_SHARE * r["inputs"]):
            return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="a clone or bare mirror of mlcommons/tiny (git dir) to read the files from")
    parser.add_argument("--rev", default="HEAD", help="the revision of --repo (default HEAD)")
    for name, spec in MODELS.items():
        parser.add_argument(f"--{name}", metavar="TFLITE", help=f"{Path(spec.float_path).name} (instead of --repo)")
    parser.add_argument("--only", choices=list(MODELS), action="append", help="convert only these (repeatable)")
    parser.add_argument("--output-dir", type=Path, default=WEIGHTS_DIR, help=f"where to write (default {WEIGHTS_DIR})")
    parser.add_argument("--any-version", action="store_true", help="convert files whose git blob differs from BLOBS")
    parser.add_argument("--verbose", action="store_true", help="print the operator-to-layer mapping")
    args = parser.parse_args(argv)
    names = [n for n in MODELS if (args.only is None or n in args.only) and (args.repo or getattr(args, n))]
    if not names:
        parser.error("give --repo, or --vww/--kws/--ad TFLITE")
    status = 0
    for name in names:
        spec = MODELS[name]
        path = getattr(args, name)
        data = Path(path).read_bytes() if path else read_from_git(args.repo, spec.float_path, args.rev)
        blob = git_blob_sha(data)
        print(f"{name}: {spec.float_path}: git blob {blob}, {len(data)} bytes")
        if blob != BLOBS[spec.float_path] and not args.any_version:
            print(f"  not the blob the committed weights come from ({BLOBS[spec.float_path]}): give --any-version "
                  "to convert it anyway", file=sys.stderr)
            status = 1
            continue
        model = spec.factory()
        try:
            conversion = convert(read_tflite(data), model, spec.input_shape)
        except ConversionError as exc:
            print(f"  {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.verbose:
            print("\n".join("  " + line for line in conversion.layers))
        model.load_state_dict(conversion.state, strict=True)
        model.eval()
        if conversion.hybrid:
            print(f"  hybrid (int8-weight) layers, TFLite quantizes their inputs at run time: {', '.join(conversion.hybrid)}")
        result = check(spec, model, data, conversion.hybrid)
        print(json.dumps(result, indent=1))
        if not passed(result, conversion.hybrid):
            print(f"  {name}: the converted model does not match the TFLite model: not written", file=sys.stderr)
            status = 1
            continue
        args.output_dir.mkdir(parents=True, exist_ok=True)
        out = args.output_dir / spec.weights.name
        torch.save(model.state_dict(), out)
        print(f"  wrote {out} (sha256 {sha256_of(out)})")
    return status


if __name__ == "__main__":
    sys.exit(main())
