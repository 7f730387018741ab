"""Model ingestion: a ``torch.nn.Module`` to a list of float engine layers (host only).

The model is traced with ``torch.fx``; it must be a single chain (no branches) of supported
operations. Conv2d and Linear start an engine layer; BatchNorm directly after one is folded into
it (docs/arithmetic.md §8); ReLU and a 2x2/2 MaxPool2d after a conv fuse into it; Flatten,
Dropout and Identity are free. Everything else is refused, naming the module, its type and why,
before any calibration work starts.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from . import golden

FREE_MODULES = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)


class UnsupportedModelError(ValueError):
    """The model has operations the engine cannot run; ``findings`` lists every one."""

    def __init__(self, findings: list["Finding"]):
        self.findings = findings
        bad = [f for f in findings if not f.supported]
        super().__init__("; ".join(f"{f.name} ({f.type}): {f.reason}" for f in bad))


@dataclass
class Finding:
    """What ``check`` says about one module or function of the model."""

    name: str
    type: str
    supported: bool
    reason: str = ""


@dataclass
class FloatLayer:
    """An engine layer in float: weights ``(C_out, C_in, k, k)`` or ``(F_out, F_in)``, BN folded."""

    name: str
    kind: str
    modules: list[str]
    weight: np.ndarray
    bias: np.ndarray
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    relu: bool = False
    pool: bool = False
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer in float64, with the same fused ReLU/pool order as the engine."""
        w = torch.from_numpy(self.weight)
        b = torch.from_numpy(self.bias)
        if self.kind == "fc":
            y = torch.nn.functional.linear(x.reshape(x.shape[0], -1), w, b)
        else:
            y = torch.nn.functional.conv2d(x, w, b, stride=self.stride, padding=self.pad)
        if self.relu:
            y = torch.relu(y)
        if self.pool:
            y = torch.nn.functional.max_pool2d(y, 2)
        return y


def _type_name(obj) -> str:
    return type(obj).__name__


def _conv_problem(conv: nn.Conv2d) -> str | None:
    kh, kw = conv.kernel_size
    if kh != kw:
        return f"kernel {kh}x{kw}: only square kernels"
    if not golden.KERNEL_RANGE[0] <= kh <= golden.KERNEL_RANGE[1]:
        return f"kernel {kh}x{kw} outside 1..7"
    if conv.stride[0] != conv.stride[1] or not 1 <= conv.stride[0] <= 4:
        return f"stride {conv.stride}: only equal strides 1..4"
    if isinstance(conv.padding, str) or conv.padding[0] != conv.padding[1] or not 0 <= conv.padding[0] < kh:
        return f"padding {conv.padding}: only equal zero padding 0..{kh - 1}"
    if conv.padding_mode != "zeros":
        return f"padding mode {conv.padding_mode!r}: only zeros"
    if conv.dilation != (1, 1):
        return f"dilation {conv.dilation}: only 1"
    if conv.groups != 1:
        return f"groups={conv.groups}: grouped/depthwise convolution is not supported"
    return None


def _pool_problem(pool: nn.MaxPool2d) -> str | None:
    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    if pair(pool.kernel_size) != (2, 2) or pair(pool.stride or pool.kernel_size) != (2, 2):
        return f"kernel {pool.kernel_size} stride {pool.stride}: only 2x2 stride 2 pooling"
    if pair(pool.padding) != (0, 0) or pair(pool.dilation) != (1, 1) or pool.ceil_mode or pool.return_indices:
        return "only padding 0, dilation 1, floor mode"
    return None


_RELU_FUNCTIONS = (torch.relu, torch.nn.functional.relu)
_FLATTEN_FUNCTIONS = (torch.flatten,)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many exception types for untraceable code
        raise UnsupportedModelError(
            [Finding("<model>", _type_name(model), False, f"cannot be traced with torch.fx ({exc})")]
        ) from None


def ingest(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[list[FloatLayer], list[Finding]]:
    """Map ``model`` to float engine layers; raise :class:`UnsupportedModelError` listing every problem.

    ``input_shape`` is one image's ``(C, H, W)``; shapes are propagated through the layers and
    each layer is checked against the engine's limits (docs/arithmetic.md §3, §7).
    """
    model = model.eval()
    graph = _trace(model)
    modules = dict(graph.named_modules())
    findings: list[Finding] = []
    layers: list[FloatLayer] = []
    chain_input = None

    def fail(name, kind, reason):
        findings.append(Finding(name, kind, False, reason))

    for node in graph.graph.nodes:
        if node.op == "placeholder":
            chain_input = node
            continue
        if node.op == "output":
            continue
        name = node.target if node.op == "call_module" else node.name
        kind = _type_name(modules[node.target]) if node.op == "call_module" else _function_name(node)
        inputs = [a for a in node.all_input_nodes]
        if len(inputs) != 1 or inputs[0] is not chain_input:
            fail(name, kind, "branches, residual additions and concatenations are not supported (the network must be a chain)")
            chain_input = node
            continue
        chain_input = node
        last = layers[-1] if layers else None
        if node.op == "call_module":
            module = modules[node.target]
            problem = _module_step(module, name, last, layers)
        elif node.op == "call_function" and node.target in _RELU_FUNCTIONS:
            problem = _relu_step(last)
        elif (node.op == "call_function" and node.target in _FLATTEN_FUNCTIONS) or (
            node.op == "call_method" and node.target in ("flatten", "view", "reshape")
        ):
            problem = None
        elif node.op == "call_method" and node.target == "relu":
            problem = _relu_step(last)
        else:
            problem = "not supported by the engine"
        if problem:
            fail(name, kind, problem)
        else:
            findings.append(Finding(name, kind, True))
    if any(not f.supported for f in findings):
        raise UnsupportedModelError(findings)
    if not layers:
        raise UnsupportedModelError([Finding("<model>", _type_name(model), False, "has no Conv2d or Linear layer")])
    _propagate_shapes(layers, input_shape, findings)
    return layers, findings


def _function_name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    if target in (operator.add, operator.iadd, torch.add):
        return "add"
    return getattr(target, "__name__", str(target))


def _module_step(module: nn.Module, name: str, last: FloatLayer | None, layers: list[FloatLayer]) -> str | None:
    """Apply one module to the layer list; return why it is refused, or None."""
    if isinstance(module, nn.Conv2d):
        problem = _conv_problem(module)
        if problem:
            return problem
        weight = module.weight.detach().double().numpy().copy()
        bias = _bias_of(module, weight.shape[0])
        layers.append(FloatLayer(name, "conv", [name], weight, bias, kernel=module.kernel_size[0],
                                 stride=module.stride[0], pad=module.padding[0]))
        return None
    if isinstance(module, nn.Linear):
        weight = module.weight.detach().double().numpy().copy()
        layers.append(FloatLayer(name, "fc", [name], weight, _bias_of(module, weight.shape[0])))
        return None
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if last is None or last.relu or last.pool:
            return "BatchNorm must follow a Conv2d or Linear directly (before its ReLU/pooling) to be folded"
        _fold_batchnorm(last, module)
        last.modules.append(name)
        return None
    if isinstance(module, nn.ReLU):
        problem = _relu_step(last)
        if not problem:
            last.modules.append(name)
        return problem
    if isinstance(module, nn.MaxPool2d):
        problem = _pool_problem(module)
        if problem:
            return problem
        if last is None or last.kind != "conv" or last.pool:
            return "max pooling must follow a Conv2d (optionally with its ReLU)"
        last.pool = True
        last.modules.append(name)
        return None
    if isinstance(module, FREE_MODULES):
        return None
    return "not supported by the engine"


def _relu_step(last: FloatLayer | None) -> str | None:
    if last is None:
        return "ReLU must follow a Conv2d or Linear (it is fused into the layer)"
    last.relu = True
    return None


def _bias_of(module: nn.Module, count: int) -> np.ndarray:
    if module.bias is None:
        return np.zeros(count)
    return module.bias.detach().double().numpy().copy()


def _fold_batchnorm(layer: FloatLayer, bn) -> None:
    """Fold inference BatchNorm into the layer's weights and bias (docs/arithmetic.md §8)."""
    if bn.num_features != layer.weight.shape[0]:
        raise ValueError(f"BatchNorm with {bn.num_features} features after a layer with {layer.weight.shape[0]} outputs")
    scale = bn.weight.detach().double().numpy() if bn.affine else np.ones(bn.num_features)
    shift = bn.bias.detach().double().numpy() if bn.affine else np.zeros(bn.num_features)
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    factor = scale / np.sqrt(var + bn.eps)
    layer.weight = layer.weight * factor.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    layer.bias = (layer.bias - mean) * factor + shift


def _propagate_shapes(layers: list[FloatLayer], input_shape, findings: list[Finding]) -> None:
    shape = tuple(int(s) for s in input_shape)
    problems = []
    for layer in layers:
        layer.in_shape = shape
        try:
            if layer.kind == "conv":
                if len(shape) != 3 or shape[0] != layer.weight.shape[1]:
                    raise golden.ContractError(f"expects {layer.weight.shape[1]} input channels, gets shape {shape}")
                golden.check_conv_geometry(c_in=shape[0], height=shape[1], width_px=shape[2],
                                           kernel=layer.kernel, stride=layer.stride, pad=layer.pad)
                h = golden.conv_output_size(shape[1], layer.kernel, layer.stride, layer.pad)
                w = golden.conv_output_size(shape[2], layer.kernel, layer.stride, layer.pad)
                if layer.pool:
                    if h < 2 or w < 2:
                        raise golden.ContractError(f"max pooling needs a 2x2 map, the convolution gives {h}x{w}")
                    h, w = h // 2, w // 2
                shape = (layer.weight.shape[0], h, w)
            else:
                features = int(np.prod(shape))
                if features != layer.weight.shape[1]:
                    raise golden.ContractError(f"expects {layer.weight.shape[1]} inputs, gets {features} (shape {shape})")
                golden.check_reduction(features)
                shape = (layer.weight.shape[0],)
        except golden.ContractError as exc:
            problems.append(Finding(layer.name, layer.kind, False, str(exc)))
        layer.out_shape = shape
    if problems:
        raise UnsupportedModelError(findings + problems)


def float_forward(layers: list[FloatLayer], x) -> list[np.ndarray]:
    """Every layer's float64 output for float images ``x`` (the calibration reference)."""
    current = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    outputs = []
    with torch.no_grad():
        for layer in layers:
            current = layer.forward(current)
            outputs.append(current.numpy())
    return outputs
