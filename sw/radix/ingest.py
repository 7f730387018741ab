"""Model ingestion: a ``torch.nn.Module`` to a graph of float engine layers (host only).

The model is traced with ``torch.fx``; its graph may be any DAG of supported operations.
Conv2d and Linear start an engine layer; what follows one folds or fuses into it while nothing
else reads its output: BatchNorm (folded, docs/arithmetic.md §8), a residual add of a second
tensor (§9), ReLU, 2x2/2 max pooling. Zero padding (``nn.ZeroPad2d``, ``F.pad``) fuses into the
next convolution; average pooling (§10) folds into a following Linear or becomes a layer of its
own; channel concatenation (§11) is data movement. An operation that cannot fuse (a ReLU of the
network input, an add whose operands are both read elsewhere, a BatchNorm after a ReLU) becomes an
*identity layer*, a 1x1 convolution with diagonal weights that carries it. Flatten/view/reshape to
``(N, -1)``, Dropout, Identity and a final Softmax/LogSoftmax (dropped: the argmax is the same) are
free. Everything else is refused, naming the module or function, its type and the root cause,
before any calibration work starts; a layer that does not fit the engine is refused with the
driver's own message (:mod:`radix.jobs`).

The engine operations (convolutions, fully connected layers, residual adds, pooling,
concatenation) are recognised and applied by their own modules (:mod:`radix.ops`,
docs/operations.md); this module walks the graph and does the bookkeeping that belongs to no
engine operation (BatchNorm, ReLU, padding, flattening, free operations).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from . import golden, jobs, ops
from .engine_spec import DEFAULT_CONFIG, EngineConfig
from .errors import InputError
from .ops.torch_graph import (INPUT, AvgPooled, Padded, Refused, Tensor, alias, arg, is_call, is_shape_query,
                              users)

FREE_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)


# What ingestion accepts and what becomes of it: the engine operations' rows come from their
# modules (radix.ops), then what folds into them or costs nothing; the README's table is generated
# from this (supported_operations_markdown(); tests/test_ingest.py keeps the README in step).
SUPPORTED_OPERATIONS = tuple(row for operation in ops.OPERATIONS for row in operation.readme) + (
    ("`nn.BatchNorm1d/2d` (running statistics)", "folded into the Conv2d/Linear before it; elsewhere a per-channel "
                                                  "scale layer"),
    ("`nn.ReLU`, `F.relu`, `torch.relu`, `x.relu()`", "fused into the layer before it; elsewhere an identity layer"),
    ("`nn.ZeroPad2d`, `nn.ConstantPad2d(p, 0)`, `F.pad` (constant 0)", "fused into the next convolution's "
                                                                      "padding, any four sides"),
    ("`nn.Flatten`, `torch.flatten(x, 1)`, `x.view(x.size(0), -1)`, `x.reshape(x.shape[0], -1)`", "free"),
    ("`nn.Dropout`, `nn.Identity`, `F.dropout`", "free at inference"),
    ("`nn.Softmax`, `nn.LogSoftmax`, `F.softmax`, `F.log_softmax` (last operation only)",
     "dropped: monotonic, the argmax of the logits is the same"),
)


def supported_operations_markdown() -> str:
    """The README's table of supported operations."""
    lines = ["| operation | on the engine |", "| --- | --- |"]
    lines += [f"| {operation} | {how} |" for operation, how in SUPPORTED_OPERATIONS]
    return "\n".join(lines) + "\n"


class UnsupportedModelError(ValueError):
    """The model has operations the engine cannot run; ``findings`` lists every one."""

    def __init__(self, findings: list["Finding"]):
        self.findings = findings
        bad = [f for f in findings if not f.supported]
        super().__init__("; ".join(f"{f.name} ({f.type}): {f.reason}" for f in bad))


class InputShapeMismatch(UnsupportedModelError, InputError):
    """The Conv2d or Linear that reads the network input does not take the input shape given:
    the shape (``--input-shape``, or the data's) is at fault, not the model.

    ``layer`` names the module and ``module_type`` its type; ``what`` is ``"channels"`` (a
    Conv2d: ``expected`` is its in_channels, ``given`` the input's C) or ``"features"`` (a
    Linear on the flattened input: its in_features and the input's C*H*W); ``input_shape`` is the
    ``(C, H, W)`` given; ``channels_last`` says the shape looks like an image given as H,W,C.
    ``findings`` lists every module, as for :class:`UnsupportedModelError`.
    """

    def __init__(self, findings: list["Finding"], *, layer: str, module_type: str, what: str, expected: int,
                 input_shape: tuple[int, ...]):
        super().__init__(findings)
        self.layer, self.module_type, self.what, self.expected = layer, module_type, what, expected
        self.input_shape = tuple(input_shape)
        self.given = self.input_shape[0] if what == "channels" else int(np.prod(self.input_shape))
        self.channels_last = what == "channels" and self.input_shape[-1] == expected
        shape = "x".join(map(str, self.input_shape))
        message = (f"{layer} ({module_type}) expects {expected} input {what}, the input has {self.given} {what} "
                   f"({shape} as C,H,W)")
        if self.channels_last:
            message += (f": its last dimension is {expected}, so the images look channels-last (N,H,W,C), not N,C,H,W "
                        "(numpy: x.transpose(0, 3, 1, 2))")
        self.args = (message,)


@dataclass
class Finding:
    """What ``check`` says about one module or function of the model."""

    name: str
    type: str
    supported: bool
    reason: str = ""


@dataclass
class FloatLayer:
    """A node of the float engine graph, BN folded.

    ``kind`` is ``"conv"`` (weights ``(C_out, C_in / groups, KH, KW)``, ``kernel`` ``(KH, KW)`` and
    ``stride`` ``(SH, SW)``), ``"fc"`` (``(F_out, F_in)``) or
    ``"concat"`` (no weights). ``inputs`` names the tensors read: the main input first and, for a
    conv/fc layer with a residual add, the skip tensor second; a concatenation's inputs in order.
    A layer's output tensor is named by the layer. ``padding`` is ``(top, left, bottom, right)``.
    ``role`` says what the layer stands for when it is not a Conv2d/Linear of the model
    (``"avgpool"``, ``"identity"``). :attr:`operation` is its operation (:mod:`radix.ops`).
    """

    name: str
    kind: str
    modules: list[str]
    inputs: list[str]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    relu: bool = False
    pool: bool = False
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    role: str = ""
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    groups: int = 1

    def __post_init__(self):
        self.kernel, self.stride = golden.pair(self.kernel, "kernel"), golden.pair(self.stride, "stride")

    @property
    def operation(self) -> ops.LayerOperation:
        """The layer's operation (:mod:`radix.ops`)."""
        return ops.of(self)

    @property
    def skip(self) -> str | None:
        """The residual add's skip tensor, or None."""
        return self.inputs[1] if self.operation.has_weights and len(self.inputs) > 1 else None

    def forward(self, tensors: dict) -> torch.Tensor:
        """The layer in float64 on the float tensors it reads, in the engine's order of operations."""
        operation = ops.of(self)
        if not operation.has_weights:
            return operation.torch_forward(self, [tensors[name] for name in self.inputs])
        y = operation.torch_map(self, tensors[self.inputs[0]], torch.from_numpy(self.weight), torch.from_numpy(self.bias))
        if self.skip is not None:
            y = y + tensors[self.skip].reshape(y.shape)
        if self.relu:
            y = torch.relu(y)
        if self.pool:
            y = F.max_pool2d(y, 2)
        return y

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one image (a concatenation: 0)."""
        if self.weight is None:
            return 0
        pixels = int(np.prod(self.out_shape[1:])) * (4 if self.pool else 1)  # a pooled layer computes 2x2 per output
        return int(self.weight.size) * pixels

    def geometry(self) -> jobs.Geometry:
        """The layer as :func:`radix.jobs.band_rows` sees it."""
        return ops.of(self).geometry(self)


@dataclass
class FloatGraph:
    """The engine graph of a model: layers in a topological order, the last one the output."""

    input_shape: tuple[int, ...]
    layers: list[FloatLayer]

    @property
    def output(self) -> str:
        return self.layers[-1].name

    def engine_layers(self) -> list[FloatLayer]:
        return [layer for layer in self.layers if ops.of(layer).has_weights]

    def forward(self, x) -> dict[str, np.ndarray]:
        """Every tensor's float64 value for float images ``x`` (the calibration reference)."""
        tensors = {INPUT: torch.as_tensor(np.asarray(x), dtype=torch.float64)}
        with torch.no_grad():
            for layer in self.layers:
                tensors[layer.name] = layer.forward(tensors)
        return {name: value.numpy() for name, value in tensors.items()}

    def consumers(self) -> dict[str, list[str]]:
        """For every tensor, the layers that read it."""
        readers: dict[str, list[str]] = {INPUT: []}
        for layer in self.layers:
            readers.setdefault(layer.name, [])
            for name in layer.inputs:
                readers.setdefault(name, []).append(layer.name)
        return readers


@dataclass(frozen=True)
class _Blocked:
    """The value of an operation that was refused, or whose input was: ``root`` names the
    nearest refused operation (a refusal is reported where it happened, not again downstream)."""

    root: str


class _Walker:
    """Walks an fx graph in order, building the float engine graph."""

    def __init__(self, graph: fx.GraphModule, input_shape: tuple[int, int, int]):
        self.graph = graph
        self.modules = dict(graph.named_modules())
        self.layers: list[FloatLayer] = []
        self.by_name: dict[str, FloatLayer] = {}
        self.findings: list[Finding] = []
        self.values: dict[fx.Node, object] = {}
        self.input_shape = input_shape
        self.output: object = None
        self.input_mismatch: dict | None = None  # InputShapeMismatch's arguments, for the first layer at fault

    # -- helpers ------------------------------------------------------------------------------
    def new_layer(self, layer: FloatLayer) -> Tensor:
        base, n = layer.name, 1
        while layer.name in self.by_name or layer.name == INPUT:
            n += 1
            layer.name = f"{base}_{n}"
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        return Tensor(layer.name, layer.out_shape, exclusive=True)

    def settle(self, value, node: fx.Node):
        """Pending average pooling becomes its layer before an elementwise operation, which may
        then fuse into it."""
        if isinstance(value, AvgPooled):
            tensor = self.materialise(value)
            return Tensor(tensor.name, value.shape, len(users(node.all_input_nodes[0])) == 1)
        return value

    def open_layer(self, value, node: fx.Node, *, kinds=(ops.CONVOLUTION.kind, ops.FULLY_CONNECTED.kind)
                   ) -> FloatLayer | None:
        """The layer that may absorb an operation on ``value``: its output, read by ``node`` alone."""
        if not isinstance(value, Tensor) or not value.exclusive or value.name == INPUT:
            return None
        source = node.all_input_nodes[0] if node.all_input_nodes else None
        if source is None or len(users(source)) != 1:
            return None
        layer = self.by_name[value.name]
        return layer if layer.kind in kinds else None

    def materialise(self, value) -> Tensor:
        """A tensor for ``value``: pending average pooling becomes a layer named after its own
        module; padding must not linger."""
        if isinstance(value, Tensor):
            return value
        if isinstance(value, AvgPooled):
            tensor = ops.AVERAGE_POOL.materialise(self, value)
            if value.flat:
                return Tensor(tensor.name, (int(np.prod(tensor.shape)),), tensor.exclusive)
            return tensor
        if isinstance(value, Padded):
            raise Refused(f"zero padding ({value.module}) must be followed by a Conv2d, which absorbs it")
        raise Refused("its input is not a tensor the engine computes")

    def tensor_of(self, layer: FloatLayer) -> Tensor:
        """The output of ``layer``, read by the operation that fused into it alone."""
        return Tensor(layer.name, layer.out_shape, True)

    def identity_layer(self, source: Tensor, name: str, module: str, *, skip: Tensor | None = None) -> FloatLayer:
        """A 1x1 convolution (or, for vectors, a fully connected layer) with identity weights."""
        shape = source.shape
        channels = shape[0]
        weight = np.eye(channels)
        kind = ops.FULLY_CONNECTED.kind if len(shape) == 1 else ops.CONVOLUTION.kind
        if len(shape) != 1:
            weight = weight.reshape(channels, channels, 1, 1)
        inputs = [source.name] + ([skip.name] if skip is not None else [])
        layer = FloatLayer(name, kind, [module], inputs, weight, np.zeros(channels), in_shape=shape, out_shape=shape,
                           role="identity")
        self.new_layer(layer)
        return layer

    # -- the walk -----------------------------------------------------------------------------
    def walk(self) -> None:
        for node in self.graph.graph.nodes:
            if node.op == "placeholder":
                if self.values:
                    raise _RefusedModel("the model takes more than one input")
                self.values[node] = Tensor(INPUT, tuple(self.input_shape))
                continue
            if node.op == "get_attr":
                self.refuse(node, node.target, "get_attr", "uses a parameter or buffer as a tensor")
                continue
            if node.op == "output":
                self.finish(node)
                continue
            if is_shape_query(node):
                self.values[node] = ("shape", node)
                continue
            name, kind = _describe(node, self.modules)
            inputs = [self.values.get(arg) for arg in node.all_input_nodes]
            blocked = next((value for value in inputs if isinstance(value, _Blocked)), None)
            if blocked is not None:
                # listed, but blamed only for a fault of its own parameters: the root cause is
                # reported where it happened
                problem = self.intrinsic_problem(node)
                if problem:
                    self.refuse(node, name, kind, problem)
                else:
                    self.values[node] = blocked
                    self.findings.append(Finding(name, kind, True, f"its input comes from the refused {blocked.root}: "
                                                                   "checked on its own only"))
                continue
            try:
                value, note = self.step(node, name)
            except Refused as refusal:
                self.refuse(node, name, kind, str(refusal))
                continue
            except golden.ContractError as refusal:
                self.refuse(node, name, kind, str(refusal))
                continue
            self.values[node] = value
            self.findings.append(Finding(name, kind, True, note))

    def intrinsic_problem(self, node: fx.Node) -> str | None:
        """What is wrong with an operation whatever its input: a conv or pooling's parameters,
        an operation the engine does not have."""
        module = self.modules.get(node.target) if node.op == "call_module" else None
        operation = _engine_operation(node, module)
        if operation is not None:
            return operation.torch_problem(module) if module is not None else None
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return _batchnorm_problem(module)
        if _operation(node, module) is None:
            return "not supported by the engine"
        return None

    def refuse(self, node, name, kind, reason) -> None:
        self.values[node] = _Blocked(name)
        self.findings.append(Finding(name, kind, False, reason))

    def finish(self, node: fx.Node) -> None:
        result = node.args[0]
        if not isinstance(result, fx.Node):
            self.findings.append(Finding("<output>", "output", False, "the model must return one tensor"))
            return
        value = self.values.get(result)
        if isinstance(value, _Blocked):
            return
        try:
            tensor = self.materialise(value)
        except Refused as refusal:
            self.findings.append(Finding("<output>", "output", False, str(refusal)))
            return
        if tensor.name == INPUT:
            self.findings.append(Finding("<output>", "output", False, "the model computes nothing on the engine"))
            return
        self.output = tensor

    def step(self, node: fx.Node, name: str):
        """Apply one operation; returns its value and a note for ``check``."""
        module = self.modules.get(node.target) if node.op == "call_module" else None
        x = self.values.get(node.all_input_nodes[0]) if node.all_input_nodes else None
        engine_operation = _engine_operation(node, module)
        if engine_operation is not None:
            return engine_operation.torch_step(self, node, module, name, x)
        operation = _operation(node, module)
        if operation == "batchnorm":
            return self.batchnorm(node, module, name, x)
        if operation == "relu":
            return self.relu(node, name, x)
        if operation == "pad" and module is not None:
            if isinstance(module, nn.ConstantPad2d) and module.value != 0:
                raise Refused(f"constant padding with {module.value}: only zero padding")
            left, right, top, bottom = module.padding
            return self.pad(x, (top, left, bottom, right), name)
        if operation == "pad":
            return self.pad(x, _pad_call_params(node), name)
        if operation == "flatten":
            _flatten_params(node, module)
            return self.flatten(x, node), ""
        if operation == "view":
            _check_view(node, x)
            return self.flatten(x, node), ""
        if operation == "free":
            return alias(x, node), "free at inference"
        if operation == "softmax":
            return self.softmax(node, x)
        raise Refused("not supported by the engine")

    # -- operations that are not engine operations of their own ------------------------------
    def note_input_mismatch(self, name: str, module_type: str, what: str, expected: int) -> None:
        """Remember the first layer that does not take the network input's shape."""
        if self.input_mismatch is None:
            self.input_mismatch = {"layer": name, "module_type": module_type, "what": what, "expected": expected,
                                   "input_shape": self.input_shape}

    def batchnorm(self, node, bn, name: str, x):
        x = self.settle(x, node)
        problem = _batchnorm_problem(bn)
        if problem:
            raise Refused(problem)
        layer = self.open_layer(x, node)
        if layer is not None and not (layer.relu or layer.pool or layer.skip) and bn.num_features == layer.weight.shape[0]:
            _fold_batchnorm(layer, bn)
            layer.modules.append(name)
            return Tensor(layer.name, x.shape, True), f"folded into {layer.name}"
        source = self.materialise(x)
        if source.shape[0] != bn.num_features:
            raise Refused(f"BatchNorm of {bn.num_features} features on a tensor of shape {source.shape}")
        identity = self.identity_layer(source, name, name)
        _fold_batchnorm(identity, bn)
        return Tensor(identity.name, source.shape, True), "a per-channel scale layer (it follows no Conv2d/Linear)"

    def relu(self, node, name: str, x):
        x = self.settle(x, node)
        layer = self.open_layer(x, node)
        if layer is not None:
            layer.relu = True
            layer.modules.append(name)
            return Tensor(layer.name, x.shape, True), f"fused into {layer.name}"
        source = self.materialise(x)
        if source.name != INPUT and self.by_name[source.name].relu:
            return alias(source, node), "no-op: the input is already rectified"
        identity = self.identity_layer(source, name, name)
        identity.relu = True
        return Tensor(identity.name, source.shape, True), "an identity layer with ReLU"

    def pad(self, x, padding, name: str):
        if isinstance(x, Padded):
            padding = tuple(a + b for a, b in zip(padding, x.padding))
            x = x.source
        source = self.materialise(x)
        if len(source.shape) != 3:
            raise Refused("zero padding needs a feature map")
        if min(padding) < 0:
            raise Refused(f"negative padding {padding} (cropping) is not supported")
        return Padded(source, tuple(int(p) for p in padding), name), "fused into the next Conv2d"

    def flatten(self, x, node: fx.Node):
        if isinstance(x, AvgPooled):
            return AvgPooled(x.source, x.window, x.module, flat=True)
        if isinstance(x, Tensor):
            return Tensor(x.name, (int(np.prod(x.shape)),), alias(x, node).exclusive)
        raise Refused("flattening of padding is not supported")

    def softmax(self, node, x):
        if len(node.users) != 1 or next(iter(node.users)).op != "output":
            raise Refused("Softmax/LogSoftmax is supported only as the model's last operation")
        return alias(x, node), "dropped: monotonic, the argmax of the logits is the same"


class _RefusedModel(Exception):
    """The model as a whole cannot be ingested."""


def _engine_operation(node: fx.Node, module) -> ops.Operation | None:
    """The engine operation (:mod:`radix.ops`) ``node`` is, or None."""
    return next((operation for operation in ops.OPERATIONS if operation.torch_matches(node, module)), None)


def _operation(node: fx.Node, module) -> str | None:
    """Which operation of the graph alone (not an engine operation, :func:`_engine_operation`)
    ``node`` is (``module`` is the one it calls, if any), or None."""
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    if isinstance(module, nn.ReLU) or is_call(node, (F.relu, torch.relu), "relu"):
        return "relu"
    if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d)) or is_call(node, (F.pad,), None):
        return "pad"
    if isinstance(module, nn.Flatten) or is_call(node, (torch.flatten,), "flatten"):
        return "flatten"
    if is_call(node, (), ("view", "reshape")):
        return "view"
    if isinstance(module, FREE_MODULES) or is_call(node, (F.dropout,), "contiguous"):
        return "free"
    if isinstance(module, SOFTMAX_MODULES) or is_call(
            node, (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax), ("softmax", "log_softmax")):
        return "softmax"
    return None


def _describe(node: fx.Node, modules: dict) -> tuple[str, str]:
    if node.op == "call_module":
        return str(node.target), type(modules[node.target]).__name__
    if node.op == "call_method":
        return node.name, f"Tensor.{node.target}"
    target = node.target
    if target in (operator.add, operator.iadd, torch.add):
        return node.name, "add"
    module = getattr(target, "__module__", "") or ""
    prefix = "F." if module.startswith("torch.nn.functional") else ("torch." if module.startswith("torch") else "")
    return node.name, prefix + getattr(target, "__name__", str(target))


def _batchnorm_problem(bn) -> str | None:
    if not bn.track_running_stats or bn.running_mean is None:
        return ("BatchNorm without running statistics (track_running_stats=False) normalises each batch by its own "
                "statistics: there is no inference form to fold")
    return None


def _pad_call_params(node: fx.Node) -> tuple[int, int, int, int]:
    pads = arg(node, 1, "pad")
    mode = arg(node, 2, "mode", "constant")
    value = arg(node, 3, "value", None)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise Refused(f"F.pad mode={mode!r} value={value!r}: only constant zero padding")
    pads = tuple(pads)
    if len(pads) == 2:
        pads = pads + (0, 0)
    if len(pads) != 4 or not all(isinstance(p, int) for p in pads):
        raise Refused(f"F.pad {pads}: give (left, right, top, bottom) as integers")
    left, right, top, bottom = pads
    return (top, left, bottom, right)


def _flatten_params(node: fx.Node, module) -> None:
    start = module.start_dim if module is not None else arg(node, 1, "start_dim", 0 if node.op == "call_function" else 0)
    end = module.end_dim if module is not None else arg(node, 2, "end_dim", -1)
    if node.op == "call_function" and start == 0 and len(node.args) < 2 and "start_dim" not in node.kwargs:
        raise Refused("torch.flatten(x) also flattens the batch dimension: use torch.flatten(x, 1)")
    if start not in (1, -3) or end != -1:
        raise Refused(f"flatten from dim {start} to {end}: only flatten(1) to (N, features)")


def _check_view(node: fx.Node, x) -> None:
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    shape = getattr(x, "shape", None)
    features = int(np.prod(shape)) if shape else None

    def batch(arg) -> bool:
        return (isinstance(arg, fx.Node) and is_shape_query(arg)) or arg == -1

    if len(sizes) == 2 and batch(sizes[0]) and (sizes[1] == -1 or sizes[1] == features) and not (
            sizes[0] == -1 and sizes[1] == -1):
        return
    raise Refused(f"{node.target} to {tuple(str(s) for s in sizes)}: only to (N, -1), e.g. x.view(x.size(0), -1)")


def _fold_batchnorm(layer: FloatLayer, bn) -> None:
    """Fold inference BatchNorm into the layer's weights and bias (docs/arithmetic.md §8)."""
    scale = bn.weight.detach().double().numpy() if bn.affine else np.ones(bn.num_features)
    shift = bn.bias.detach().double().numpy() if bn.affine else np.zeros(bn.num_features)
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    factor = scale / np.sqrt(var + bn.eps)
    layer.weight = layer.weight * factor.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    layer.bias = (layer.bias - mean) * factor + shift


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many exception types for untraceable code
        raise UnsupportedModelError(
            [Finding("<model>", type(model).__name__, False, f"cannot be traced with torch.fx ({exc})")]
        ) from None


def _refuse_layer(findings: list[Finding], layer: FloatLayer, reason: str) -> None:
    """Refuse ``layer`` in the finding of the module that starts it (one line per module); a
    module refused already keeps its first reason."""
    for index, finding in enumerate(findings):
        if finding.name == layer.modules[0]:
            if finding.supported:
                findings[index] = Finding(finding.name, finding.type, False, reason)
            return


def _reachable(layers: list[FloatLayer], output: str) -> list[FloatLayer]:
    """The layers the output depends on, in order (an unused branch is not computed)."""
    by_name = {layer.name: layer for layer in layers}
    needed, stack = set(), [output]
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        stack.extend(by_name[name].inputs)
    kept = [layer for layer in layers if layer.name in needed]
    # the output's producer goes last: everything else it needs is before it already
    kept.remove(by_name[output])
    return kept + [by_name[output]]


def ingest(model: nn.Module, input_shape: tuple[int, int, int], *,
           config: EngineConfig = DEFAULT_CONFIG) -> tuple[FloatGraph, list[Finding]]:
    """Map ``model`` to a float engine graph; raise :class:`UnsupportedModelError` listing every problem.

    ``input_shape`` is one image's ``(C, H, W)``. Every layer is checked against the
    contract's limits (docs/arithmetic.md) and against ``config`` with the driver's own fit rule,
    so a model that passes runs on such an engine. The error's findings list every module once;
    it is an :class:`InputShapeMismatch` when the Conv2d or Linear reading the input does not take
    ``input_shape``.
    """
    model = model.eval()
    graph = _trace(model)
    walker = _Walker(graph, tuple(int(s) for s in input_shape))
    try:
        walker.walk()
    except _RefusedModel as refusal:
        raise UnsupportedModelError([Finding("<model>", type(model).__name__, False, str(refusal))]) from None
    findings = walker.findings
    if walker.input_mismatch is not None:
        raise InputShapeMismatch(findings, **walker.input_mismatch)
    # the layers built so far are checked against the engine even when a refusal stops the model
    layers = _reachable(walker.layers, walker.output.name) if walker.output is not None else walker.layers
    shapes = {INPUT: tuple(int(s) for s in input_shape), **{layer.name: tuple(layer.out_shape) for layer in layers}}
    for layer in layers:
        if not ops.of(layer).has_weights:
            continue
        try:
            jobs.band_rows(layer.geometry(), config)
        except jobs.LayerFitError as exc:
            operation = ops.of(layer)
            if not (operation is ops.FULLY_CONNECTED
                    and operation.runs_summed(layer, shapes.get(layer.inputs[0], ()), config)):
                _refuse_layer(findings, layer, f"does not fit the engine: {exc}")
    if any(not f.supported for f in findings) or walker.output is None:
        if walker.output is None and all(f.supported for f in findings):
            findings.append(Finding("<model>", type(model).__name__, False, "has no Conv2d or Linear layer"))
        raise UnsupportedModelError(findings)
    return FloatGraph(tuple(int(s) for s in input_shape), layers), findings
