"""ONNX models in: an ONNX file to a ``torch.fx.GraphModule`` of standard PyTorch (host only).

:func:`load_onnx` reads the file with the ``onnx`` package and builds, node by node, the PyTorch
that :func:`radix.ingest.ingest` understands, so an ONNX model goes through the same ingestion
(and the same refusals) as a PyTorch one:

- ``Conv`` -> ``nn.Conv2d`` (unequal or "same" padding as an ``F.pad`` in front of it);
- ``Gemm`` or ``MatMul`` with constant weights -> ``nn.Linear``; a constant ``Add`` after a
  Conv2d/Linear that nothing else reads becomes its bias;
- ``BatchNormalization`` -> ``nn.BatchNorm1d/2d``; ``Relu`` (and ``Clip`` to [0, inf)) -> ``nn.ReLU``;
- ``MaxPool`` / ``AveragePool`` -> ``nn.MaxPool2d`` / ``nn.AvgPool2d``; ``GlobalAveragePool`` ->
  ``nn.AdaptiveAvgPool2d(1)``; ``ReduceMean`` -> ``x.mean(axes)`` (axes an attribute, or from
  opset 18 an input);
- ``Flatten(axis=1)``, ``Reshape`` to (N, -1) and ``Squeeze`` of a 1x1 map -> ``torch.flatten(x, 1)``;
- ``Add`` -> ``+``, ``Concat`` -> ``torch.cat(dim=axis)``, ``Pad`` -> ``F.pad``, ``Softmax`` /
  ``LogSoftmax`` -> their modules, ``Dropout`` -> ``nn.Dropout``, ``Identity`` -> nothing.

Shape arithmetic on constants (``Shape``, ``Gather``, ``Unsqueeze``, ``Concat``, ``Slice``,
``Cast``..., as exporters write ``x.view(x.size(0), -1)``) is evaluated here, the batch dimension
kept symbolic; any other operator on constants only is evaluated by ONNX's reference
implementation. Weights are copied bit for bit (float16 ones widen exactly to float32, float64 ones
round to float32, the precision of the modules).
``Sigmoid``, ``Tanh``, ``HardSwish``, ``LeakyRelu`` and ``Elu`` become their modules, which ingest
refuses under the module's name. A node with no such form (another operator, an attribute not
understood, a non-constant weight) becomes an opaque function named after its operator: ingest
refuses it by that name too, and calling the module raises. Modules are named after the
PyTorch module the exporter recorded, so layer names, and so ``--weight-bits`` selectors, match
the original model's: PyTorch's TorchScript exporter (``dynamo=False``) writes it into the node
name (``/features/features.0/Conv`` for the module ``features.0``); its default dynamo exporter
names nodes ``node_<operation>`` and records the scopes in the node's metadata, and as it folds a
BatchNorm into the convolution under the BatchNorm's scope, a Conv/Gemm is named after its
weight (``stem.0.weight``) first.

Why not ``onnx2torch``: it, its forks and ``onnx2pytorch`` all require ``torchvision``, and PyPI's
torchvision for torch 2.13 is a CUDA build whose operators do not load against the CPU torch that
radix pins (``import torchvision`` raises "operator torchvision::nms does not exist"), while a
newer torchvision pulls in torch 2.14 and CUDA. The operators ingest accepts are few and their
ONNX forms simple, so they are mapped here with ``onnx`` alone.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.shape_inference
import torch
from google.protobuf.message import DecodeError
from onnx.reference import ReferenceEvaluator
from torch import fx, nn

from . import ops
from .errors import InputError

MIN_OPSET = 9  # before it BatchNormalization, Dropout... carry attributes (spatial, is_test) not read here
MAX_OPSET = onnx.defs.onnx_opset_version()  # the newest the installed onnx package defines
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
_RANDOM = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                     "Bernoulli"})  # not constants, even of constant inputs
_RESERVED = frozenset(dir(fx.GraphModule))  # module names that would shadow GraphModule attributes


class OnnxImportError(InputError):
    """The file is not an ONNX model radix can import; the message names the file and the fault."""


def load_onnx(path) -> tuple[fx.GraphModule, tuple[int, int, int] | None]:
    """Read the ONNX model at ``path`` as a PyTorch module for :func:`radix.ingest.ingest`.

    Returns the module (eval mode) and one image's input shape ``(C, H, W)`` when the graph's
    input declares it statically (the batch dimension may be symbolic), else None. Raises
    :class:`OnnxImportError` naming the file when it cannot be read, is not an ONNX model, uses an
    opset outside ``MIN_OPSET..MAX_OPSET`` or has other than one input.
    """
    path = Path(path)
    model = _read(path)
    opset = _opset(model, path)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxImportError(f"{path}: invalid ONNX model: {str(exc).strip().splitlines()[0]}") from None
    graph_input = _single_input(model, path)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError as exc:
        raise OnnxImportError(f"{path}: inconsistent ONNX model: {str(exc).strip().splitlines()[0]}") from None
    module = _Converter(model, opset, inferred, path).convert(graph_input.name)
    return module, _image_shape(graph_input)


def _read(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
    except OSError as exc:  # the model file, or a file of external weights it names
        other = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise OnnxImportError(f"{path}: cannot read{other}: {exc.strerror or exc}") from None
    except (DecodeError, ValueError) as exc:
        raise OnnxImportError(f"{path}: not an ONNX model ({exc})") from None
    # protobuf parses many byte strings into some message: a model has an IR version and nodes
    if model.ir_version <= 0 or not model.graph.node:
        raise OnnxImportError(f"{path}: not an ONNX model (no IR version or no graph)")
    return model


def _opset(model: onnx.ModelProto, path: Path) -> int:
    versions = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    version = versions.get("ai.onnx")
    if version is None:
        raise OnnxImportError(f"{path}: imports no standard ONNX opset (ai.onnx)")
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise OnnxImportError(f"{path}: ONNX opset {version} is not supported: radix reads opsets "
                              f"{MIN_OPSET}..{MAX_OPSET} (re-export with an opset in that range)")
    return version


def _single_input(model: onnx.ModelProto, path: Path) -> onnx.ValueInfoProto:
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]  # IR < 4 lists weights too
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs) or "none"
        raise OnnxImportError(f"{path}: the model has {len(inputs)} inputs ({names}): radix runs models with one "
                              "image input")
    value = inputs[0]
    if not value.type.HasField("tensor_type") or value.type.tensor_type.elem_type not in _FLOAT_TYPES:
        raise OnnxImportError(f"{path}: input {value.name!r} is not a float tensor: radix needs float images")
    return value


def _image_shape(value: onnx.ValueInfoProto) -> tuple[int, int, int] | None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[1:]):
        return None
    return tuple(int(d.dim_value) for d in dims[1:])


def _tensor_types(model: onnx.ModelProto) -> tuple[dict[str, tuple], dict[str, int]]:
    """Every tensor's shape (a tuple of ints, None for an unknown size) and element type, as
    ONNX shape inference found them."""
    shapes, types = {}, {}
    graph = model.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
            if value.type.tensor_type.HasField("shape"):
                shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                           for d in value.type.tensor_type.shape.dim)
    return shapes, types


class _Batch:
    """The batch size inside folded shape arithmetic: not a number, so it survives only indexing
    and concatenation, and any arithmetic on it stops the folding."""

    def __repr__(self) -> str:
        return "N"


BATCH = _Batch()


def _sizes(values) -> np.ndarray:
    """Folded sizes: numbers while the batch size is not among them (so they fold on as usual)."""
    values = np.asarray(values, dtype=object)
    return values if any(v is BATCH for v in values.ravel()) else values.astype(np.int64)


class _Unmapped(Exception):
    """The node has no standard PyTorch form here: it becomes an opaque operator."""


@functools.cache
def _opaque(op_type: str):
    """A function standing for the ONNX operator ``op_type``: traced by torch.fx as a call of a
    function of that name (through the ``__torch_function__`` protocol), which ``ingest``
    refuses by name; called on tensors it raises."""

    def op(*args):
        if torch.overrides.has_torch_function(args):
            return torch.overrides.handle_torch_function(op, args, *args)
        raise NotImplementedError(f"the ONNX operator {op_type} has no PyTorch form in radix.onnx_import")

    op.__name__ = op.__qualname__ = op_type
    return op


def _scope(node_name: str) -> str | None:
    """The PyTorch module path that PyTorch's TorchScript exporter writes into a node name: one
    scope per module, each named by its last attribute, or ``parent.index`` inside a Sequential
    (``/stack2/conv1/conv1.0/Conv`` is the module ``stack2.conv1.0``)."""
    scopes = [part for part in node_name.split("/") if part][:-1]  # the last part names the operator
    path: list[str] = []
    for scope in scopes:
        pieces = scope.split(".")
        if not all(re.fullmatch(r"[A-Za-z0-9_]+", piece) for piece in pieces):
            return None
        overlap = 1 if len(pieces) > 1 and path and path[-1] == pieces[0] else 0
        path.extend(pieces[overlap:])
    return ".".join(path) or None


def _module_path(text: str) -> str | None:
    """``text`` if it is a dotted module path (``stack1.conv1.0``), else None."""
    return text if re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", text) else None


def _weight_scope(node: onnx.NodeProto, initializers: set[str]) -> str | None:
    """The module whose parameter a Conv/Gemm/MatMul reads: PyTorch's dynamo exporter keeps
    parameter names (``stem.0.weight``) but records a BatchNorm folded into a convolution under
    the BatchNorm's scope, so the weight names the layer better."""
    if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in initializers:
        return None
    name = node.input[1]
    return _module_path(name[: -len(".weight")]) if name.endswith(".weight") else None


def _exported_scope(node: onnx.NodeProto) -> str | None:
    """The module path that PyTorch's dynamo exporter records in a node's metadata: its scopes
    from the root ``''`` down to the module, then the operation (``['', 'stack1', 'stack1.conv1',
    'conv2d']``)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            scope = scopes[-2] if isinstance(scopes, list) and len(scopes) >= 3 else None
            return _module_path(scope) if isinstance(scope, str) else None
    return None


class _Names:
    """Names for modules and constants: the node's module path when it is free and is nobody's
    parent (a module cannot be both a layer and a container), else one made from the node name."""

    def __init__(self, nodes, initializers: set[str]):
        self.scopes = [_scope(node.name) or _weight_scope(node, initializers) or _exported_scope(node)
                       for node in nodes]
        self.parents = {".".join(parts[:i]) for scope in self.scopes if scope
                        for parts in [scope.split(".")] for i in range(1, len(parts))}
        self.used: set[str] = set()

    def module(self, index: int, node: onnx.NodeProto) -> str:
        scope = self.scopes[index]
        if scope and self.free(scope):
            self.used.add(scope)
            return scope
        # the dynamo exporter names a node node_<its torch.fx node's name>, e.g. node_relu_1
        base = re.sub(r"\W+", "_", node.name.removeprefix("node_")).strip("_")
        return self.fresh(base or node.op_type.lower())

    def fresh(self, base: str) -> str:
        name, n = base, 1
        while not self.free(name):
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name

    def free(self, name: str) -> bool:
        return name not in self.used and name not in self.parents and name.split(".")[0] not in _RESERVED


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _float32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _parameter(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(_float32(array), requires_grad=False)


class _Converter:
    """Builds the fx graph. ``values`` maps every ONNX tensor name to an fx node (computed at run
    time) or a numpy array (a constant: initializer, ``Constant`` or folded shape arithmetic)."""

    def __init__(self, model: onnx.ModelProto, opset: int, inferred: onnx.ModelProto, path: Path):
        self.model = model
        self.opset = opset
        self.path = path
        self.shapes, self.types = _tensor_types(inferred)
        self.graph = fx.Graph()
        self.root: dict[str, object] = {}
        self.names = _Names(model.graph.node, {tensor.name for tensor in model.graph.initializer})
        self.values: dict[str, fx.Node | np.ndarray] = {
            tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
        self.readers = Counter(name for node in model.graph.node for name in node.input)
        self.readers.update(value.name for value in model.graph.output)
        self.layer_of: dict[fx.Node, nn.Module] = {}  # outputs of a Conv2d/Linear a constant Add may join
        self.index = 0
        self.node: onnx.NodeProto | None = None

    def convert(self, input_name: str) -> fx.GraphModule:
        self.values[input_name] = self.graph.placeholder("x")
        for index, node in enumerate(self.model.graph.node):
            self.index, self.node = index, node
            inputs = [self.values[name] if name else None for name in node.input]
            attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
            handler, known = _HANDLERS.get(node.op_type, (None, ()))
            outputs = self.evaluate(node, inputs)
            if outputs is None and handler is not None and node.domain in ("", "ai.onnx") and set(attrs) <= set(known):
                try:
                    outputs = handler(self, node, inputs, attrs)
                except _Unmapped:
                    outputs = None
            if outputs is None:
                outputs = self.opaque(node, inputs)
            for name, value in zip(node.output, outputs):
                if name:
                    self.values[name] = value
        try:
            results = [self.tensor(self.values[value.name], value.name) for value in self.model.graph.output]
        except _Unmapped:
            raise OnnxImportError(f"{self.path}: an output of the model is shape arithmetic, not an image's "
                                  "result") from None
        self.graph.output(results[0] if len(results) == 1 else tuple(results))
        return fx.GraphModule(self.root, self.graph, class_name="OnnxModel").eval()

    def evaluate(self, node: onnx.NodeProto, inputs) -> list[np.ndarray] | None:
        """The outputs of a standard operator on numeric constants, computed by ONNX's reference
        implementation (constants, weight transforms, the exporters' shape arithmetic), or None."""
        numeric = all(v is None or (isinstance(v, np.ndarray) and v.dtype != object) for v in inputs)
        if not numeric or node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM or not (
                inputs or node.op_type == "Constant"):
            return None
        feeds = {name: value for name, value in zip(node.input, inputs) if name}
        try:
            return list(ReferenceEvaluator(node).run(None, feeds))
        except Exception:  # the reference raises many types for what it cannot do: the node stays an operator
            return None

    # -- emitting ---------------------------------------------------------------------------
    def tensor(self, value, name: str) -> fx.Node:
        """An fx value for the ONNX tensor ``name``: a constant becomes a buffer named after it
        (read with get_attr, which ingest refuses naming it); shape arithmetic holding the
        symbolic batch size has no tensor form."""
        if isinstance(value, fx.Node):
            return value
        if value.dtype == object:
            raise _Unmapped()
        buffer = self.names.fresh(re.sub(r"\W+", "_", name).strip("_") or "constant")
        self.root[buffer] = torch.from_numpy(np.array(value, dtype=np.float32 if value.dtype.kind == "f" else None))
        return self.graph.get_attr(buffer)

    def module(self, module: nn.Module, *args) -> fx.Node:
        name = self.names.module(self.index, self.node)
        self.root[name] = module
        return self.graph.call_module(name, args)

    def opaque(self, node: onnx.NodeProto, inputs) -> list:
        op_type = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        # constants are passed by name only: the operator is refused, not run
        args = tuple(v if isinstance(v, fx.Node) or v is None else f"constant {name}"
                     for v, name in zip(inputs, node.input))
        result = self.graph.call_function(_opaque(op_type), args)
        if len(node.output) == 1:
            return [result]
        return [self.graph.call_function(operator.getitem, (result, i)) for i in range(len(node.output))]

    def linear(self, x, weight: np.ndarray, bias) -> fx.Node:
        """``nn.Linear`` with ``weight`` ``(F_out, F_in)`` and ``bias`` (or None) applied to ``x``."""
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        linear.weight = _parameter(weight)
        if bias is not None:
            linear.bias = _parameter(bias)
        out = self.module(linear, x)
        self.layer_of[out] = linear
        return out

    @staticmethod
    def parameter(array: np.ndarray) -> nn.Parameter:
        """A frozen float32 parameter of a converted module."""
        return _parameter(array)

    @staticmethod
    def float32(array: np.ndarray) -> torch.Tensor:
        """A float32 tensor of ``array``."""
        return _float32(array)

    @staticmethod
    def sizes(values) -> np.ndarray:
        """Shape arithmetic's values, the symbolic batch size kept (:func:`_sizes`)."""
        return _sizes(values)

    @staticmethod
    def unmapped() -> None:
        """Give up on the node: it stays an opaque operator, which ingest refuses naming it."""
        raise _Unmapped()

    # -- reading inputs ---------------------------------------------------------------------
    @staticmethod
    def runtime(value) -> fx.Node:
        """A tensor computed at run time (a constant here would need the model folded first)."""
        if not isinstance(value, fx.Node):
            raise _Unmapped()
        return value

    @staticmethod
    def constant(value, *, ndim: int | None = None) -> np.ndarray:
        if not isinstance(value, np.ndarray) or (ndim is not None and value.ndim != ndim):
            raise _Unmapped()
        return value

    def shape(self, i: int = 0) -> tuple:
        """The shape of the node's ``i``-th input; _Unmapped when unknown."""
        shape = self.shapes.get(self.node.input[i])
        if shape is None:
            raise _Unmapped()
        return shape

    def rank(self, i: int = 0) -> int:
        return len(self.shape(i))

    def attr_or_input(self, attrs: dict, name: str, inputs, index: int, default=None):
        """An operand that moved from an attribute to an input in a later opset."""
        if name in attrs:
            return attrs[name]
        if len(inputs) > index and inputs[index] is not None:
            return self.constant(inputs[index]).tolist()
        return default

    def unread(self, node: onnx.NodeProto, first: int) -> bool:
        return all(not name or self.readers[name] == 0 for name in node.output[first:])

    # -- operators that ingest accepts --------------------------------------------------------
    def activation(self, node, inputs, attrs):
        module = _ACTIVATIONS[node.op_type](**{name: float(value) for name, value in attrs.items()})
        return [self.module(module, self.runtime(inputs[0]))]

    def flatten(self, node, inputs, attrs):
        x = self.runtime(inputs[0])
        axis = int(attrs.get("axis", 1))
        if axis < 0:
            axis += self.rank()
        if axis != 1:
            raise _Unmapped()
        return [self.flat(x)]

    def flat(self, x: fx.Node) -> fx.Node:
        return self.graph.call_function(torch.flatten, (x, 1))

    def reshape(self, node, inputs, attrs):
        target = list(self.constant(inputs[1], ndim=1))
        data = inputs[0]
        copy_zeros = not attrs.get("allowzero", 0)  # a 0 copies the input's size
        if isinstance(data, np.ndarray):
            if any(t is BATCH for t in target):
                raise _Unmapped()
            return [_sizes(np.reshape(data, [data.shape[i] if t == 0 and copy_zeros else t
                                             for i, t in enumerate(target)]))]
        shape = self.shape()
        if copy_zeros:
            target = [(BATCH if i == 0 else shape[i]) if t is not BATCH and t == 0 else t for i, t in enumerate(target)]
        if any(t is None for t in target):
            raise _Unmapped()
        features = math.prod(shape[1:]) if None not in shape[1:] else None
        batch_first = target[0] is BATCH or (shape[0] is not None and target[0] == shape[0])
        if len(target) == 2 and target[1] is not BATCH and (
                (batch_first and target[1] in (-1, features)) or (target[0] == -1 and target[1] == features)):
            return [self.flat(data)]
        # any other reshape keeps its form: ingest refuses it with its own explanation
        rest = target[1:] if batch_first else target
        if any(t is BATCH for t in rest):
            raise _Unmapped()
        sizes = [self.graph.call_method("size", (data, 0))] if batch_first else []
        return [self.graph.call_method("reshape", (data, *sizes, *_ints(rest)))]

    def squeeze(self, node, inputs, attrs):
        data = inputs[0]
        axes = self.attr_or_input(attrs, "axes", inputs, 1)
        if isinstance(data, np.ndarray):
            return [_sizes(np.squeeze(data, axis=None if axes is None else tuple(_ints(axes))))]
        shape = self.shape()
        squeezed = {a % len(shape) for a in _ints(axes)} if axes is not None else {
            i for i, d in enumerate(shape) if d == 1}
        if len(shape) != 4 or squeezed != {2, 3} or shape[2:] != (1, 1):
            raise _Unmapped()
        return [self.flat(data)]  # (N, C, 1, 1) -> (N, C)

    def join_bias(self, x: fx.Node, name: str, c: np.ndarray) -> bool:
        """Add the constant ``c`` to the bias of the Conv2d/Linear computing ``x`` when nothing
        else reads ``x`` and ``c`` has one value per output channel (or one for all)."""
        layer = self.layer_of.get(x)
        if layer is None or self.readers[name] != 1 or c.dtype.kind != "f":
            return False
        channels = layer.weight.shape[0]
        per_channel = ((channels,), (1, channels)) if isinstance(layer, nn.Linear) else (
            (channels, 1, 1), (1, channels, 1, 1))
        if c.size != 1 and c.shape not in per_channel:
            return False
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros(channels)
        layer.bias = nn.Parameter(bias + _float32(np.broadcast_to(c.reshape(-1), (channels,))), requires_grad=False)
        return True

    def softmax(self, node, inputs, attrs):
        rank = self.rank()
        axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1)) % rank
        if self.opset < 13 and axis != rank - 1:
            raise _Unmapped()  # before opset 13 the axes from `axis` on form one softmax
        kind = nn.Softmax if node.op_type == "Softmax" else nn.LogSoftmax
        return [self.module(kind(dim=axis), self.runtime(inputs[0]))]

    def dropout(self, node, inputs, attrs):
        ratio = self.attr_or_input(attrs, "ratio", inputs, 1, 0.5)
        training = self.attr_or_input(attrs, "training_mode", inputs, 2, False)
        if training or not self.unread(node, 1):
            raise _Unmapped()
        return [self.module(nn.Dropout(float(ratio)), self.runtime(inputs[0]))]

    def identity(self, node, inputs, attrs):
        return [inputs[0]]

    # -- shape arithmetic holding the symbolic batch size --------------------------------------
    def shape_of(self, node, inputs, attrs):
        shape = self.shape()
        if None in shape[1:]:
            raise _Unmapped()
        dims = [BATCH] + list(shape[1:])
        start, end = int(attrs.get("start", 0)), attrs.get("end")
        dims = dims[start:None if end is None else int(end)]
        return [_sizes(dims)]

    def gather(self, node, inputs, attrs):
        data, indices = self.constant(inputs[0]), self.constant(inputs[1])
        return [_sizes(np.take(data, indices.astype(np.int64), axis=int(attrs.get("axis", 0))))]

    def unsqueeze(self, node, inputs, attrs):
        data = self.constant(inputs[0])
        axes = _ints(self.attr_or_input(attrs, "axes", inputs, 1))
        rank = data.ndim + len(axes)
        for axis in sorted(a % rank for a in axes):
            data = np.expand_dims(data, axis)
        return [_sizes(data)]

    def cast(self, node, inputs, attrs):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(attrs["to"])
        data = inputs[0]
        if isinstance(data, fx.Node):
            # a float32 tensor cast to float32 (exporters write such no-ops) is the tensor itself
            if dtype != np.float32 or self.types.get(node.input[0]) != onnx.TensorProto.FLOAT:
                raise _Unmapped()
            return [data]
        if dtype.kind != "i":
            raise _Unmapped()
        return [data]  # sizes stay sizes in any integer type

    def slice(self, node, inputs, attrs):
        data = self.constant(inputs[0])
        starts = _ints(self.attr_or_input(attrs, "starts", inputs, 1))
        ends = _ints(self.attr_or_input(attrs, "ends", inputs, 2))
        axes = _ints(self.attr_or_input(attrs, "axes", inputs, 3, list(range(len(starts)))))
        steps = _ints(self.attr_or_input(attrs, "steps", inputs, 4, [1] * len(starts)))
        index = [slice(None)] * data.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis] = slice(start, end, step)
        return [_sizes(data[tuple(index)])]

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def window_params(attrs) -> tuple[tuple[int, int], tuple[int, int]]:
        strides = tuple(_ints(attrs.get("strides", (1, 1))))
        dilations = tuple(_ints(attrs.get("dilations", (1, 1))))
        if len(strides) != 2 or len(dilations) != 2:
            raise _Unmapped()
        return strides, dilations

    def pads(self, attrs, kernel, strides, dilations) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` from ``pads`` (ONNX order: begins, then ends) or ``auto_pad``."""
        auto = attrs.get("auto_pad", "NOTSET")
        if auto == "NOTSET":
            pads = _ints(attrs.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4:
                raise _Unmapped()
            return tuple(pads)
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise _Unmapped()
        begins, ends = [], []
        for size, k, s, d in zip(self.shape()[2:], kernel, strides, dilations):
            if size is None:
                raise _Unmapped()
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)  # SAME_UPPER puts the odd one at the end
            ends.append(big if auto == "SAME_UPPER" else small)
        return (begins[0], begins[1], ends[0], ends[1])

    @staticmethod
    def symmetric(pads, kernel) -> tuple[int, int]:
        """A pooling's padding as PyTorch holds it: equal on both sides, at most half the kernel."""
        top, left, bottom, right = pads
        if top != bottom or left != right or top > kernel[0] // 2 or left > kernel[1] // 2:
            raise _Unmapped()
        return (top, left)


# elementwise functions with an exact PyTorch module that the engine does not run (ReLU is
# radix.ops.relu's): ingest refuses them under their module's name, which is the exporter's scope
_ACTIVATIONS = {
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "HardSwish": nn.Hardswish,
    "LeakyRelu": lambda alpha=0.01: nn.LeakyReLU(alpha),
    "Elu": lambda alpha=1.0: nn.ELU(alpha),
}
# operator -> (handler, the attributes it understands: a node with any other stays opaque); the
# operators of radix.ops' operations are converted by their modules, added below
_HANDLERS = {
    **{op: (_Converter.activation, ("alpha",) if op in ("LeakyRelu", "Elu") else ()) for op in _ACTIVATIONS},
    "Flatten": (_Converter.flatten, ("axis",)),
    "Reshape": (_Converter.reshape, ("allowzero",)),
    "Squeeze": (_Converter.squeeze, ("axes",)),
    "Softmax": (_Converter.softmax, ("axis",)),
    "LogSoftmax": (_Converter.softmax, ("axis",)),
    "Dropout": (_Converter.dropout, ("ratio", "seed")),
    "Identity": (_Converter.identity, ()),
    "Shape": (_Converter.shape_of, ("start", "end")),
    "Gather": (_Converter.gather, ("axis",)),
    "Unsqueeze": (_Converter.unsqueeze, ("axes",)),
    "Cast": (_Converter.cast, ("to",)),
    "Slice": (_Converter.slice, ("starts", "ends", "axes")),
}
_HANDLERS.update({op_type: (lambda converter, node, inputs, attrs, operation=operation:
                            operation.onnx_convert(converter, node, inputs, attrs), known)
                  for operation in ops.OPERATIONS + ops.GRAPH_OPERATIONS
                  for op_type, known in operation.onnx_ops.items()})
