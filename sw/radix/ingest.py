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
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from . import golden, jobs
from .engine_spec import DEFAULT_CONFIG, EngineConfig
from .errors import InputError

INPUT = "input"  # the network input's tensor name
FREE_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)


def fc_input_limit(config: EngineConfig = DEFAULT_CONFIG) -> int:
    """The most inputs a Linear takes on ``config`` (:func:`radix.jobs.band_rows`): all its weight rows,
    one per input rounded up to whole array rows, fill one weight bank, and its input pixel groups
    the input buffer. An average pool folded into the Linear multiplies its inputs (§10)."""
    return min(config.wt_depth // config.rows, config.in_depth) * config.rows


# What ingestion accepts and what becomes of it: the README's table is generated from this
# (supported_operations_markdown(); tests/test_ingest.py keeps the README in step).
SUPPORTED_OPERATIONS = (
    ("`nn.Conv2d`", f"an engine layer: kernel KH x KW of {golden.KERNEL_RANGE[0]}..{golden.KERNEL_RANGE[1]} each, "
                    f"strides {golden.STRIDE_RANGE[0]}..{golden.STRIDE_RANGE[1]} each, zero padding per side below "
                    "the kernel (`padding=\"same\"` as PyTorch places it), `groups` (depthwise: `groups = C`), "
                    "no dilation"),
    ("`nn.Linear`", "an engine layer (a 1x1 convolution of a 1x1 map); its input flattened first; at most "
                    f"{fc_input_limit():,} inputs on the default engine, of which a global average pool folded "
                    "into it counts only the channels (one summed job)"),
    ("`nn.BatchNorm1d/2d` (running statistics)", "folded into the Conv2d/Linear before it; elsewhere a per-channel "
                                                  "scale layer"),
    ("`nn.ReLU`, `F.relu`, `torch.relu`, `x.relu()`", "fused into the layer before it; elsewhere an identity layer"),
    ("`nn.MaxPool2d(2)`, `F.max_pool2d(x, 2)`", "2x2 stride 2, fused into the convolution before it"),
    ("`x + y`, `torch.add`, `operator.add`", "residual add of two tensors of one shape, fused into the layer that "
                                             "produces one of them, the one with more multiply-accumulates "
                                             "(docs/arithmetic.md §9), else an identity layer"),
    ("`nn.ZeroPad2d`, `nn.ConstantPad2d(p, 0)`, `F.pad` (constant 0)", "fused into the next convolution's "
                                                                      "padding, any four sides"),
    ("`nn.AvgPool2d(k)`, `nn.AdaptiveAvgPool2d`, `F.avg_pool2d`, `x.mean((2, 3))`",
     "kh x kw with stride kh x kw, or global: folded into a following Linear, else a layer with diagonal weights "
     "(§10)"),
    ("`torch.cat(dim=1)`", "channel concatenation: data movement, its inputs share one fl (§11)"),
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
    (``"avgpool"``, ``"identity"``).
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
    def skip(self) -> str | None:
        """The residual add's skip tensor, or None."""
        return self.inputs[1] if self.kind != "concat" and len(self.inputs) > 1 else None

    def forward(self, tensors: dict) -> torch.Tensor:
        """The layer in float64 on the float tensors it reads, in the engine's order of operations."""
        if self.kind == "concat":
            parts = [tensors[name].reshape((-1,) + shape) for name, shape in zip(self.inputs, self.input_shapes)]
            return torch.cat(parts, dim=1)
        x = tensors[self.inputs[0]]
        w = torch.from_numpy(self.weight)
        b = torch.from_numpy(self.bias)
        if self.kind == "fc":
            y = F.linear(x.reshape(x.shape[0], -1), w, b)
        else:
            top, left, bottom, right = self.padding
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=self.stride, groups=self.groups)
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
        return jobs.geometry_of(kind=self.kind, in_shape=self.in_shape, c_out=self.weight.shape[0],
                                kernel=self.kernel, stride=self.stride, padding=self.padding, pool=self.pool,
                                groups=self.groups)


@dataclass
class FloatGraph:
    """The engine graph of a model: layers in a topological order, the last one the output."""

    input_shape: tuple[int, ...]
    layers: list[FloatLayer]

    @property
    def output(self) -> str:
        return self.layers[-1].name

    def engine_layers(self) -> list[FloatLayer]:
        return [layer for layer in self.layers if layer.kind != "concat"]

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


# -- values flowing through the fx graph ---------------------------------------------------------

@dataclass
class _Tensor:
    """A tensor of the engine graph, viewed with ``shape`` (per image; flattened or not).
    ``exclusive`` says the fx value is the producing layer's output read by nobody else so far."""

    name: str
    shape: tuple[int, ...]
    exclusive: bool = False


@dataclass
class _Padded:
    """Zero padding ``(top, left, bottom, right)`` waiting for the convolution that absorbs it."""

    source: _Tensor
    padding: tuple[int, int, int, int]
    module: str


@dataclass
class _AvgPooled:
    """Average pooling of ``source`` over ``window`` = ``(kh, kw)`` windows with stride ``window``
    (global pooling: the whole map), waiting to fold into a Linear or to become a layer; ``flat``
    once flattened."""

    source: _Tensor
    window: tuple[int, int]
    module: str
    flat: bool = False

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.source.shape
        return (c, h // self.window[0], w // self.window[1])

    @property
    def is_global(self) -> bool:
        return self.window == tuple(self.source.shape[1:])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(np.prod(self.out_shape)),) if self.flat else self.out_shape


class _Refused(Exception):
    """One operation is refused; the message is the reason."""


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
    def new_layer(self, layer: FloatLayer) -> _Tensor:
        base, n = layer.name, 1
        while layer.name in self.by_name or layer.name == INPUT:
            n += 1
            layer.name = f"{base}_{n}"
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        return _Tensor(layer.name, layer.out_shape, exclusive=True)

    def settle(self, value, node: fx.Node):
        """Pending average pooling becomes its layer before an elementwise operation, which may
        then fuse into it."""
        if isinstance(value, _AvgPooled):
            tensor = self.materialise(value)
            return _Tensor(tensor.name, value.shape, len(_users(node.all_input_nodes[0])) == 1)
        return value

    def open_layer(self, value, node: fx.Node, *, kinds=("conv", "fc")) -> FloatLayer | None:
        """The layer that may absorb an operation on ``value``: its output, read by ``node`` alone."""
        if not isinstance(value, _Tensor) or not value.exclusive or value.name == INPUT:
            return None
        source = node.all_input_nodes[0] if node.all_input_nodes else None
        if source is None or len(_users(source)) != 1:
            return None
        layer = self.by_name[value.name]
        return layer if layer.kind in kinds else None

    def materialise(self, value) -> _Tensor:
        """A tensor for ``value``: pending average pooling becomes a layer named after its own
        module; padding must not linger."""
        if isinstance(value, _Tensor):
            return value
        if isinstance(value, _AvgPooled):
            tensor = self.avgpool_layer(value)
            if value.flat:
                return _Tensor(tensor.name, (int(np.prod(tensor.shape)),), tensor.exclusive)
            return tensor
        if isinstance(value, _Padded):
            raise _Refused(f"zero padding ({value.module}) must be followed by a Conv2d, which absorbs it")
        raise _Refused("its input is not a tensor the engine computes")

    def identity_layer(self, source: _Tensor, name: str, module: str, *, skip: _Tensor | None = None) -> FloatLayer:
        """A 1x1 convolution (or, for vectors, a fully connected layer) with identity weights."""
        shape = source.shape
        channels = shape[0]
        weight = np.eye(channels)
        kind = "fc" if len(shape) == 1 else "conv"
        if kind == "conv":
            weight = weight.reshape(channels, channels, 1, 1)
        inputs = [source.name] + ([skip.name] if skip is not None else [])
        layer = FloatLayer(name, kind, [module], inputs, weight, np.zeros(channels), in_shape=shape, out_shape=shape,
                           role="identity")
        self.new_layer(layer)
        return layer

    def avgpool_layer(self, pooled: _AvgPooled) -> _Tensor:
        """Average pooling as an engine layer with diagonal weights ``1/(kh kw)`` (§10)."""
        source, name = pooled.source, pooled.module
        c, h, w = source.shape
        kh, kw = pooled.window
        out_shape = pooled.out_shape
        if pooled.is_global:  # a fully connected layer whose weights repeat per pixel: one summed job
            weight = np.zeros((c, c, h * w))
            for ch in range(c):
                weight[ch, ch, :] = 1.0 / (h * w)
            layer = FloatLayer(name, "fc", [pooled.module], [source.name], weight.reshape(c, c * h * w), np.zeros(c),
                               in_shape=(c * h * w,), out_shape=out_shape, role="avgpool")
            return self.new_layer(layer)
        if max(kh, kw) > golden.STRIDE_RANGE[1]:
            raise _Refused(f"{kh}x{kw} average pooling with stride {kh}x{kw}: the engine's stride limit is "
                           f"{golden.STRIDE_RANGE[1]} unless the pooling is global or folds into a following Linear")
        stride = (kh, kw)
        weight = np.zeros((c, c, kh, kw))
        for ch in range(c):
            weight[ch, ch] = 1.0 / (kh * kw)
        layer = FloatLayer(name, "conv", [pooled.module], [source.name], weight, np.zeros(c), kernel=(kh, kw),
                           stride=stride, in_shape=source.shape, out_shape=out_shape, role="avgpool")
        return self.new_layer(layer)

    # -- the walk -----------------------------------------------------------------------------
    def walk(self) -> None:
        for node in self.graph.graph.nodes:
            if node.op == "placeholder":
                if self.values:
                    raise _RefusedModel("the model takes more than one input")
                self.values[node] = _Tensor(INPUT, tuple(self.input_shape))
                continue
            if node.op == "get_attr":
                self.refuse(node, node.target, "get_attr", "uses a parameter or buffer as a tensor")
                continue
            if node.op == "output":
                self.finish(node)
                continue
            if _is_shape_query(node):
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
            except _Refused as refusal:
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
        if isinstance(module, nn.Conv2d):
            return _conv_problem(module)
        if isinstance(module, nn.MaxPool2d):
            return _pool_problem(*_maxpool_module_params(module))
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return _batchnorm_problem(module)
        if isinstance(module, nn.Linear):
            try:
                golden.check_reduction(module.in_features)
            except golden.ContractError as refusal:
                return str(refusal)
            return None
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
        except _Refused as refusal:
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
        operation = _operation(node, module)
        if operation == "conv":
            grouped = ("" if module.groups == 1 else
                       f"{'depthwise' if module.groups == module.in_channels == module.out_channels else 'grouped'}: "
                       "runs on the array as block-diagonal jobs, exact but slow (docs/engine.md)")
            return self.conv(node, module, name, x), grouped
        if operation == "linear":
            return self.linear(node, module, name, x)
        if operation == "batchnorm":
            return self.batchnorm(node, module, name, x)
        if operation == "relu":
            return self.relu(node, name, x)
        if operation == "maxpool":
            params = _maxpool_module_params(module) if module is not None else _maxpool_call_params(node)
            return self.maxpool(node, name, x, params)
        if operation == "pad" and module is not None:
            if isinstance(module, nn.ConstantPad2d) and module.value != 0:
                raise _Refused(f"constant padding with {module.value}: only zero padding")
            left, right, top, bottom = module.padding
            return self.pad(x, (top, left, bottom, right), name)
        if operation == "pad":
            return self.pad(x, _pad_call_params(node), name)
        if operation == "avgpool":
            return self.avgpool(node, module, name, x)
        if operation == "flatten":
            _flatten_params(node, module)
            return self.flatten(x, node), ""
        if operation == "view":
            _check_view(node, x)
            return self.flatten(x, node), ""
        if operation == "free":
            return _alias(x, node), "free at inference"
        if operation == "add":
            return self.add(node, name)
        if operation == "concat":
            return self.concat(node, name)
        if operation == "softmax":
            return self.softmax(node, x)
        raise _Refused("not supported by the engine")

    # -- operations ---------------------------------------------------------------------------
    def conv(self, node, conv: nn.Conv2d, name: str, x):
        problem = _conv_problem(conv)
        if problem:
            raise _Refused(problem)
        extra, fused = (0, 0, 0, 0), []
        if isinstance(x, _Padded):
            extra, x, fused = x.padding, x.source, [x.module]
        source = self.materialise(x)
        if len(source.shape) != 3 or source.shape[0] != conv.in_channels:
            if source.name == INPUT:
                self.note_input_mismatch(name, "Conv2d", "channels", conv.in_channels)
            raise _Refused(f"expects {conv.in_channels} input channels, gets shape {source.shape}")
        (kh, kw), (sh, sw) = tuple(conv.kernel_size), tuple(conv.stride)
        own = _conv_padding(conv)
        padding = tuple(a + b for a, b in zip(own, extra))
        c, h, w = source.shape
        golden.check_conv_geometry(c_in=c, height=h, width_px=w, kernel=(kh, kw), stride=(sh, sw), pad=padding,
                                   groups=conv.groups, c_out=conv.out_channels)
        top, left, bottom, right = padding
        out = (conv.out_channels, golden.conv_output_size(h, kh, sh, top, bottom),
               golden.conv_output_size(w, kw, sw, left, right))
        weight = conv.weight.detach().double().numpy().copy()
        layer = FloatLayer(name, "conv", [name] + fused, [source.name], weight, _bias_of(conv, weight.shape[0]),
                           kernel=(kh, kw), stride=(sh, sw), padding=padding, in_shape=source.shape, out_shape=out,
                           groups=conv.groups)
        return self.new_layer(layer)

    def linear(self, node, linear: nn.Linear, name: str, x):
        note = ""
        if isinstance(x, _AvgPooled) and x.flat:
            weight, source, note = _fold_avgpool(linear, x), x.source, f"average pooling {x.module} folded in (§10)"
            modules = [name, x.module]
            in_shape = (int(np.prod(source.shape)),)
        else:
            source = self.materialise(x)
            if len(source.shape) != 1:
                raise _Refused(f"Linear on a {'x'.join(map(str, source.shape))} map acts on its last dimension only: "
                               "flatten the map first (torch.flatten(x, 1) or x.view(x.size(0), -1))")
            weight, modules, in_shape = linear.weight.detach().double().numpy().copy(), [name], source.shape
        if weight.shape[1] != in_shape[0]:
            if source.name == INPUT:
                self.note_input_mismatch(name, "Linear", "features", weight.shape[1])
            raise _Refused(f"expects {weight.shape[1]} inputs, gets {in_shape[0]}")
        golden.check_reduction(in_shape[0])
        layer = FloatLayer(name, "fc", modules, [source.name], weight, _bias_of(linear, weight.shape[0]),
                           in_shape=in_shape, out_shape=(weight.shape[0],))
        return self.new_layer(layer), note

    def note_input_mismatch(self, name: str, module_type: str, what: str, expected: int) -> None:
        """Remember the first layer that does not take the network input's shape."""
        if self.input_mismatch is None:
            self.input_mismatch = {"layer": name, "module_type": module_type, "what": what, "expected": expected,
                                   "input_shape": self.input_shape}

    def batchnorm(self, node, bn, name: str, x):
        x = self.settle(x, node)
        problem = _batchnorm_problem(bn)
        if problem:
            raise _Refused(problem)
        layer = self.open_layer(x, node)
        if layer is not None and not (layer.relu or layer.pool or layer.skip) and bn.num_features == layer.weight.shape[0]:
            _fold_batchnorm(layer, bn)
            layer.modules.append(name)
            return _Tensor(layer.name, x.shape, True), f"folded into {layer.name}"
        source = self.materialise(x)
        if source.shape[0] != bn.num_features:
            raise _Refused(f"BatchNorm of {bn.num_features} features on a tensor of shape {source.shape}")
        identity = self.identity_layer(source, name, name)
        _fold_batchnorm(identity, bn)
        return _Tensor(identity.name, source.shape, True), "a per-channel scale layer (it follows no Conv2d/Linear)"

    def relu(self, node, name: str, x):
        x = self.settle(x, node)
        layer = self.open_layer(x, node)
        if layer is not None:
            layer.relu = True
            layer.modules.append(name)
            return _Tensor(layer.name, x.shape, True), f"fused into {layer.name}"
        source = self.materialise(x)
        if source.name != INPUT and self.by_name[source.name].relu:
            return _alias(source, node), "no-op: the input is already rectified"
        identity = self.identity_layer(source, name, name)
        identity.relu = True
        return _Tensor(identity.name, source.shape, True), "an identity layer with ReLU"

    def maxpool(self, node, name: str, x, params):
        x = self.settle(x, node)
        problem = _pool_problem(*params)
        if problem:
            raise _Refused(problem)
        layer = self.open_layer(x, node, kinds=("conv",))
        if layer is None or layer.pool or len(x.shape) != 3:
            source = self.materialise(x)
            if len(source.shape) != 3:
                raise _Refused("max pooling needs a feature map")
            layer = self.identity_layer(source, name, name)
        else:
            layer.modules.append(name)
        c, h, w = layer.out_shape
        if h < 2 or w < 2:
            raise _Refused(f"max pooling needs a 2x2 map, the layer gives {h}x{w}")
        layer.pool = True
        layer.out_shape = (c, h // 2, w // 2)
        return _Tensor(layer.name, layer.out_shape, True), f"fused into {layer.name}"

    def pad(self, x, padding, name: str):
        if isinstance(x, _Padded):
            padding = tuple(a + b for a, b in zip(padding, x.padding))
            x = x.source
        source = self.materialise(x)
        if len(source.shape) != 3:
            raise _Refused("zero padding needs a feature map")
        if min(padding) < 0:
            raise _Refused(f"negative padding {padding} (cropping) is not supported")
        return _Padded(source, tuple(int(p) for p in padding), name), "fused into the next Conv2d"

    def avgpool(self, node, module, name: str, x):
        source = self.materialise(x)
        if len(source.shape) != 3:
            raise _Refused("average pooling needs a feature map")
        _, h, w = source.shape
        window, flat = _avgpool_window(node, module, h, w)
        window = window or (h, w)
        if window[0] > h or window[1] > w:
            raise _Refused(f"{window[0]}x{window[1]} average pooling of a {h}x{w} map")
        return _AvgPooled(source, window, name, flat=flat), "folded into the next Linear, else a layer (§10)"

    def flatten(self, x, node: fx.Node):
        if isinstance(x, _AvgPooled):
            return _AvgPooled(x.source, x.window, x.module, flat=True)
        if isinstance(x, _Tensor):
            alias = _alias(x, node)
            return _Tensor(x.name, (int(np.prod(x.shape)),), alias.exclusive)
        raise _Refused("flattening of padding is not supported")

    def add(self, node, name: str):
        if node.kwargs.get("alpha", 1) != 1 or len(node.args) > 2:
            raise _Refused("add with alpha: only a plain sum of two tensors")
        operands = list(node.args[:2])
        if not all(isinstance(a, fx.Node) for a in operands) or len(operands) != 2:
            raise _Refused("add of a tensor and a constant: only the sum of two tensors (a residual add)")
        values = [self.values[a] for a in operands]
        candidates = []
        for operand, value in zip(operands, values):
            if isinstance(value, _Tensor) and value.exclusive and value.name != INPUT and len(_users(operand)) == 1 \
                    and operands[0] is not operands[1]:
                layer = self.by_name[value.name]
                # a grouped convolution's output tiles run as separate jobs: its add is an identity layer
                if layer.kind in ("conv", "fc") and not (layer.relu or layer.pool or layer.skip) and layer.groups == 1:
                    candidates.append((self.layers.index(layer), layer, value))
        tensors = [self.materialise(v) for v in values]
        if tensors[0].shape != tensors[1].shape:
            raise _Refused(f"add of tensors of shapes {tensors[0].shape} and {tensors[1].shape}: they must be equal "
                           "(broadcasting is not supported)")
        if candidates:
            # The add joins a layer whose reduction stays in the accumulator's limit with it (§9), of
            # those the one with more multiply-accumulates (the later one on a tie): the skip streams
            # in beside the layer's passes, which the longer layer has more of to hide it behind (a
            # ResNet's 3x3 convolution rather than its 1x1 projection shortcut).
            limit = golden.max_reduction(add=True)
            _, layer, value = max(candidates, key=lambda entry: (
                int(np.prod(entry[1].weight.shape[1:])) <= limit, entry[1].macs, entry[0]))
            skip = tensors[1] if value is values[0] else tensors[0]
            layer.inputs.append(skip.name)
            layer.modules.append(name)
            # the layer now reads the skip: it runs after the skip's producer
            self.layers.remove(layer)
            self.layers.append(layer)
            golden.check_reduction(int(np.prod(layer.weight.shape[1:])), add=True)
            return _Tensor(layer.name, value.shape, True), f"fused into {layer.name} (§9)"
        identity = self.identity_layer(tensors[0], name, name, skip=tensors[1])
        return _Tensor(identity.name, tensors[0].shape, True), "an identity layer carrying the add (§9)"

    def concat(self, node, name: str):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        parts = node.args[0]
        if not isinstance(parts, (list, tuple)) or not all(isinstance(p, fx.Node) for p in parts):
            raise _Refused("concatenation of something other than a list of tensors")
        tensors = [self.materialise(self.values[p]) for p in parts]
        ndim = len(tensors[0].shape) + 1
        if dim not in (1, 1 - ndim) or any(len(t.shape) != ndim - 1 for t in tensors):
            raise _Refused(f"concatenation along dim {dim}: only channels (dim=1) of tensors of one rank")
        if len({t.shape[1:] for t in tensors}) != 1:
            raise _Refused(f"concatenation of shapes {[t.shape for t in tensors]}: spatial sizes must be equal")
        shape = (sum(t.shape[0] for t in tensors),) + tensors[0].shape[1:]
        layer = FloatLayer(name, "concat", [name], [t.name for t in tensors], in_shape=shape, out_shape=shape,
                           input_shapes=[t.shape for t in tensors])
        return self.new_layer(layer), "data movement: its inputs share one fl (§11)"

    def softmax(self, node, x):
        if len(node.users) != 1 or next(iter(node.users)).op != "output":
            raise _Refused("Softmax/LogSoftmax is supported only as the model's last operation")
        return _alias(x, node), "dropped: monotonic, the argmax of the logits is the same"


class _RefusedModel(Exception):
    """The model as a whole cannot be ingested."""


def _operation(node: fx.Node, module) -> str | None:
    """Which supported operation ``node`` is (``module`` is the one it calls, if any), or None."""
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    if isinstance(module, nn.ReLU) or _is_call(node, (F.relu, torch.relu), "relu"):
        return "relu"
    if isinstance(module, nn.MaxPool2d) or _is_call(node, (F.max_pool2d, torch.max_pool2d), None):
        return "maxpool"
    if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d)) or _is_call(node, (F.pad,), None):
        return "pad"
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or _is_call(
            node, (F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean), "mean"):
        return "avgpool"
    if isinstance(module, nn.Flatten) or _is_call(node, (torch.flatten,), "flatten"):
        return "flatten"
    if _is_call(node, (), ("view", "reshape")):
        return "view"
    if isinstance(module, FREE_MODULES) or _is_call(node, (F.dropout,), "contiguous"):
        return "free"
    if _is_call(node, (operator.add, operator.iadd, torch.add), "add"):
        return "add"
    if _is_call(node, (torch.cat, torch.concat), None):
        return "concat"
    if isinstance(module, SOFTMAX_MODULES) or _is_call(
            node, (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax), ("softmax", "log_softmax")):
        return "softmax"
    return None


def _alias(value, node: fx.Node):
    """The same value through a free operation; a tensor stays exclusive only if read once."""
    if isinstance(value, _Tensor):
        return _Tensor(value.name, value.shape, value.exclusive and len(_users(node.all_input_nodes[0])) == 1)
    return value


def _users(node: fx.Node) -> list[fx.Node]:
    """The operations that read a node's tensor (shape queries such as ``x.size(0)`` do not)."""
    return [user for user in node.users if not _is_shape_query(user)]


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1] in ("shape",):
        return True
    if node.op == "call_function" and node.target is operator.getitem:
        source = node.args[0]
        return isinstance(source, fx.Node) and _is_shape_query(source)
    return False


def _is_call(node: fx.Node, functions: tuple, methods) -> bool:
    if node.op == "call_function" and node.target in functions:
        return True
    if node.op == "call_method" and methods is not None:
        names = (methods,) if isinstance(methods, str) else methods
        return node.target in names
    return False


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


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _runs_summed(layer: FloatLayer, source_shape: tuple, config: EngineConfig) -> bool:
    """Whether a fully connected layer over a ``(C, H, W)`` map runs as one summed job per image
    (its weights repeat over the map's pixels, as after a folded global average pool, and the map
    fits one job: the placement's rule, ``radix.placement``), so that only its ``C`` weights per
    output count against the weight bank."""
    if layer.kind != "fc" or layer.skip is not None or len(source_shape) != 3 or source_shape[1:] == (1, 1):
        return False
    channels, height, width = source_shape
    return (golden.summed_weights(layer.weight, channels, height * width) is not None
            and jobs.summed_job_fits(c_in=channels, height=height, width=width, c_out=layer.weight.shape[0],
                                     config=config))


def _batchnorm_problem(bn) -> str | None:
    if not bn.track_running_stats or bn.running_mean is None:
        return ("BatchNorm without running statistics (track_running_stats=False) normalises each batch by its own "
                "statistics: there is no inference form to fold")
    return None


def _conv_problem(conv: nn.Conv2d) -> str | None:
    kh, kw = conv.kernel_size
    if not all(golden.KERNEL_RANGE[0] <= k <= golden.KERNEL_RANGE[1] for k in (kh, kw)):
        return f"kernel {kh}x{kw} outside {golden.KERNEL_RANGE[0]}..{golden.KERNEL_RANGE[1]} per dimension"
    if not all(golden.STRIDE_RANGE[0] <= s <= golden.STRIDE_RANGE[1] for s in conv.stride):
        return (f"stride {conv.stride[0]}x{conv.stride[1]} outside {golden.STRIDE_RANGE[0]}..{golden.STRIDE_RANGE[1]} "
                "per dimension")
    if conv.padding_mode != "zeros":
        return f"padding mode {conv.padding_mode!r}: only zeros"
    if conv.dilation != (1, 1):
        return f"dilation {conv.dilation}: only 1"
    return None


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)``; ``padding="same"`` (stride 1 in PyTorch) puts the odd one of an
    even kernel's ``k - 1`` padding after, as PyTorch does."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        (kh, kw) = conv.kernel_size
        top, left = (kh - 1) // 2, (kw - 1) // 2
        return (top, left, kh - 1 - top, kw - 1 - left)
    ph, pw = conv.padding
    return (ph, pw, ph, pw)


def _maxpool_module_params(pool: nn.MaxPool2d):
    return pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, pool.return_indices


def _maxpool_call_params(node: fx.Node):
    kernel = _arg(node, 1, "kernel_size")
    return (kernel, _arg(node, 2, "stride"), _arg(node, 3, "padding", 0), _arg(node, 4, "dilation", 1),
            _arg(node, 5, "ceil_mode", False), _arg(node, 6, "return_indices", False))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pool_problem(kernel, stride, padding, dilation, ceil_mode, return_indices) -> str | None:
    stride = stride if stride not in (None, (), []) else kernel
    if _pair(kernel) != (2, 2) or _pair(stride) != (2, 2):
        return f"kernel {kernel} stride {stride}: only 2x2 stride 2 max pooling"
    if _pair(padding) != (0, 0) or _pair(dilation) != (1, 1) or ceil_mode or return_indices:
        return "only padding 0, dilation 1, floor mode"
    return None


def _pad_call_params(node: fx.Node) -> tuple[int, int, int, int]:
    pads = _arg(node, 1, "pad")
    mode = _arg(node, 2, "mode", "constant")
    value = _arg(node, 3, "value", None)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise _Refused(f"F.pad mode={mode!r} value={value!r}: only constant zero padding")
    pads = tuple(pads)
    if len(pads) == 2:
        pads = pads + (0, 0)
    if len(pads) != 4 or not all(isinstance(p, int) for p in pads):
        raise _Refused(f"F.pad {pads}: give (left, right, top, bottom) as integers")
    left, right, top, bottom = pads
    return (top, left, bottom, right)


def _avgpool_window(node: fx.Node, module, h: int, w: int) -> tuple[tuple[int, int] | None, bool]:
    """``(window, flattened)``: the pooling window (None for global pooling) and whether the
    result is already flat (``x.mean((2, 3))`` without keepdim)."""
    if isinstance(module, nn.AvgPool2d):
        kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        if stride != kernel or _pair(module.padding) != (0, 0) or module.ceil_mode or module.divisor_override:
            raise _Refused("only k x k average pooling with stride k, padding 0, floor mode, no divisor override")
        return kernel, False
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _adaptive_window(module.output_size, h, w), False
    if node.op == "call_function" and node.target is F.avg_pool2d:
        kernel = _pair(_arg(node, 1, "kernel_size"))
        stride = _arg(node, 2, "stride", None)
        stride = kernel if stride in (None, (), []) else _pair(stride)
        if stride != kernel or _pair(_arg(node, 3, "padding", 0)) != (0, 0) or _arg(node, 4, "ceil_mode", False) \
                or _arg(node, 6, "divisor_override", None):
            raise _Refused("only k x k average pooling with stride k, padding 0, floor mode, no divisor override")
        return kernel, False
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return _adaptive_window(_arg(node, 1, "output_size"), h, w), False
    dims = _arg(node, 1, "dim")
    keepdim = _arg(node, 2, "keepdim", False)
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    if sorted(d % 4 for d in dims) != [2, 3]:
        raise _Refused(f"mean over dims {dims}: only the spatial mean (2, 3), i.e. global average pooling")
    return None, not keepdim


def _adaptive_window(output_size, h: int, w: int) -> tuple[int, int] | None:
    out = _pair(output_size)
    if out == (1, 1):
        return None
    if None in out or h % out[0] or w % out[1]:
        raise _Refused(f"adaptive average pooling to {output_size} of a {h}x{w} map: windows must divide the map")
    return (h // out[0], w // out[1])


def _flatten_params(node: fx.Node, module) -> None:
    start = module.start_dim if module is not None else _arg(node, 1, "start_dim", 0 if node.op == "call_function" else 0)
    end = module.end_dim if module is not None else _arg(node, 2, "end_dim", -1)
    if node.op == "call_function" and start == 0 and len(node.args) < 2 and "start_dim" not in node.kwargs:
        raise _Refused("torch.flatten(x) also flattens the batch dimension: use torch.flatten(x, 1)")
    if start not in (1, -3) or end != -1:
        raise _Refused(f"flatten from dim {start} to {end}: only flatten(1) to (N, features)")


def _check_view(node: fx.Node, x) -> None:
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    shape = getattr(x, "shape", None)
    features = int(np.prod(shape)) if shape else None

    def batch(arg) -> bool:
        return (isinstance(arg, fx.Node) and _is_shape_query(arg)) or arg == -1

    if len(sizes) == 2 and batch(sizes[0]) and (sizes[1] == -1 or sizes[1] == features) and not (
            sizes[0] == -1 and sizes[1] == -1):
        return
    raise _Refused(f"{node.target} to {tuple(str(s) for s in sizes)}: only to (N, -1), e.g. x.view(x.size(0), -1)")


def _bias_of(module: nn.Module, count: int) -> np.ndarray:
    if module.bias is None:
        return np.zeros(count)
    return module.bias.detach().double().numpy().copy()


def _fold_batchnorm(layer: FloatLayer, bn) -> None:
    """Fold inference BatchNorm into the layer's weights and bias (docs/arithmetic.md §8)."""
    scale = bn.weight.detach().double().numpy() if bn.affine else np.ones(bn.num_features)
    shift = bn.bias.detach().double().numpy() if bn.affine else np.zeros(bn.num_features)
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    factor = scale / np.sqrt(var + bn.eps)
    layer.weight = layer.weight * factor.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    layer.bias = (layer.bias - mean) * factor + shift


def _fold_avgpool(linear: nn.Linear, pooled: _AvgPooled) -> np.ndarray:
    """The Linear's weights on the unpooled map (§10): ``w[o, c, h div kh, v div kw] / (kh kw)``."""
    c, h, w = pooled.source.shape
    _, out_h, out_w = pooled.out_shape
    kh, kw = pooled.window
    weight = linear.weight.detach().double().numpy()
    if weight.shape[1] != c * out_h * out_w:
        raise _Refused(f"expects {weight.shape[1]} inputs, the pooled map has {c * out_h * out_w}")
    pooled_w = weight.reshape(-1, c, out_h, out_w) / (kh * kw)
    full = np.zeros((weight.shape[0], c, h, w))
    full[:, :, : out_h * kh, : out_w * kw] = np.repeat(np.repeat(pooled_w, kh, axis=2), kw, axis=3)
    return full.reshape(weight.shape[0], -1)


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
        if layer.kind == "concat":
            continue
        try:
            jobs.band_rows(layer.geometry(), config)
        except jobs.LayerFitError as exc:
            if not _runs_summed(layer, shapes.get(layer.inputs[0], ()), config):
                _refuse_layer(findings, layer, f"does not fit the engine: {exc}")
    if any(not f.supported for f in findings) or walker.output is None:
        if walker.output is None and all(f.supported for f in findings):
            findings.append(Finding("<model>", type(model).__name__, False, "has no Conv2d or Linear layer"))
        raise UnsupportedModelError(findings)
    return FloatGraph(tuple(int(s) for s in input_shape), layers), findings
