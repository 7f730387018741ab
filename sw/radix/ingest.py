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

Each operation (convolutions, fully connected layers, residual adds, pooling, concatenation,
BatchNorm, ReLU, zero padding) is recognised and applied by its own module (:mod:`radix.ops`,
docs/operations.md); this module walks the graph and handles what costs nothing (flattening,
dropout, a final softmax).
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


# What ingestion accepts and what becomes of it: the rows of radix.ops' operations come from their
# modules, then what costs nothing; the README's table is generated
# from this (supported_operations_markdown(); tests/test_ingest.py keeps the README in step).
SUPPORTED_OPERATIONS = tuple(row for operation in ops.OPERATIONS + ops.GRAPH_OPERATIONS
                             for row in operation.readme) + (
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
class FloatLayer(ops.OperationLayer):
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
        recognised = _recognised(node, module)
        if recognised is not None:
            return recognised.torch_problem(module) if module is not None else None
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
        recognised = _recognised(node, module)
        if recognised is not None:
            return recognised.torch_step(self, node, module, name, x)
        operation = _operation(node, module)
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

    def note_input_mismatch(self, name: str, module_type: str, what: str, expected: int) -> None:
        """Remember the first layer that does not take the network input's shape."""
        if self.input_mismatch is None:
            self.input_mismatch = {"layer": name, "module_type": module_type, "what": what, "expected": expected,
                                   "input_shape": self.input_shape}

    # -- free operations (radix.ops has the others) -------------------------------------------
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


def _recognised(node: fx.Node, module) -> ops.Operation | None:
    """The operation of :mod:`radix.ops` that ``node`` is, or None."""
    return next((operation for operation in ops.OPERATIONS + ops.GRAPH_OPERATIONS
                 if operation.torch_matches(node, module)), None)


def _operation(node: fx.Node, module) -> str | None:
    """Which free operation (one that costs nothing, not one of :mod:`radix.ops`, :func:`_recognised`)
    ``node`` is (``module`` is the one it calls, if any), or None."""
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
