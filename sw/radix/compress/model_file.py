"""The self-contained model file that ``radix compress`` writes and every radix command reads as MODEL.

A model file is a ``torch.save`` archive of one dict holding only strings, numbers and tensors,
so it loads with ``torch.load(weights_only=True)``: unpickling it runs no code from the file.

``format``/``version``
    ``"radix-model"`` and :data:`VERSION`;
``architecture``
    JSON text: the model's torch.fx graph, node by node (placeholder, ``call_module`` of a leaf
    module, ``call_function``/``call_method`` of a whitelisted operation, output) with constant
    arguments, and every leaf module's type and constructor arguments. Only the types in
    :data:`MODULE_TYPES`, the functions in :data:`FUNCTIONS` and the methods in :data:`METHODS` are
    accepted, when saving and when loading; the module is rebuilt as an ``fx.GraphModule`` whose
    code fx generates from that graph;
``state_dict``
    the rebuilt module's parameters and buffers;
``input_shape``, ``dataset``, ``source``, ``compression``
    one image's ``(C, H, W)``, the data set the model was compressed on, where the model came from
    (JSON text) and the compression report (JSON text).
"""

from __future__ import annotations

import io
import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import InputError
from ..program import write_atomically

FORMAT = "radix-model"
VERSION = 1


class ModelFileError(InputError):
    """A model file that cannot be written or read; the message names the file and the fault."""


# type name -> (class, constructor arguments read from the instance's attributes)
MODULE_TYPES = {
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                                "groups", "bias", "padding_mode")),
    "Linear": (nn.Linear, ("in_features", "out_features", "bias")),
    "BatchNorm1d": (nn.BatchNorm1d, ("num_features", "eps", "momentum", "affine", "track_running_stats")),
    "BatchNorm2d": (nn.BatchNorm2d, ("num_features", "eps", "momentum", "affine", "track_running_stats")),
    "ReLU": (nn.ReLU, ("inplace",)),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                      "divisor_override")),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "Dropout": (nn.Dropout, ("p", "inplace")),
    "Dropout1d": (nn.Dropout1d, ("p", "inplace")),
    "Dropout2d": (nn.Dropout2d, ("p", "inplace")),
    "Identity": (nn.Identity, ()),
    "ZeroPad2d": (nn.ZeroPad2d, ("padding",)),
    "ConstantPad2d": (nn.ConstantPad2d, ("padding", "value")),
    "Softmax": (nn.Softmax, ("dim",)),
    "LogSoftmax": (nn.LogSoftmax, ("dim",)),
}

FUNCTIONS = {
    "torch.flatten": torch.flatten, "torch.relu": torch.relu, "torch.add": torch.add, "torch.cat": torch.cat,
    "torch.concat": torch.concat, "torch.mean": torch.mean, "torch.max_pool2d": torch.max_pool2d,
    "torch.softmax": torch.softmax, "torch.log_softmax": torch.log_softmax, "F.relu": F.relu,
    "F.max_pool2d": F.max_pool2d, "F.avg_pool2d": F.avg_pool2d, "F.adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "F.pad": F.pad, "F.dropout": F.dropout, "F.softmax": F.softmax, "F.log_softmax": F.log_softmax,
    "operator.add": operator.add, "operator.iadd": operator.iadd, "operator.getitem": operator.getitem,
    "getattr": getattr,
}
METHODS = ("size", "dim", "view", "reshape", "flatten", "relu", "mean", "contiguous", "add", "softmax", "log_softmax")
_GETATTR_NAMES = ("shape",)


@dataclass
class ModelFile:
    """A loaded model file: the module (an ``fx.GraphModule`` in eval mode) and its records."""

    module: fx.GraphModule
    input_shape: tuple[int, int, int]
    dataset: str | None
    source: dict = field(default_factory=dict)
    compression: dict = field(default_factory=dict)


def describe(module: fx.GraphModule) -> dict:
    """The architecture of ``module`` as JSON-able data; refuses what a model file cannot hold,
    naming the node or module."""
    submodules = dict(module.named_modules())
    nodes, modules = [], {}
    for node in module.graph.nodes:
        entry = {"op": node.op, "name": node.name}
        if node.op == "call_module":
            target = str(node.target)
            modules.setdefault(target, _describe_module(target, submodules[target]))
            entry["target"] = target
        elif node.op == "call_function":
            entry["target"] = _function_name(node)
        elif node.op == "call_method":
            if node.target not in METHODS:
                raise ModelFileError(f"node {node.name}: method Tensor.{node.target} cannot be stored in a model file "
                                     f"(methods: {', '.join(METHODS)})")
            entry["target"] = node.target
        elif node.op == "get_attr":
            raise ModelFileError(f"node {node.name}: reads the tensor {node.target} directly; a model file holds only "
                                 "module calls and operations")
        if node.op == "call_function" and node.target is getattr and node.args[1] not in _GETATTR_NAMES:
            raise ModelFileError(f"node {node.name}: getattr {node.args[1]!r} cannot be stored (only .shape)")
        entry["args"] = _encode(node.args, node)
        entry["kwargs"] = {key: _encode(value, node) for key, value in node.kwargs.items()}
        nodes.append(entry)
    return {"nodes": nodes, "modules": modules}


def build(architecture: dict) -> fx.GraphModule:
    """The module described by :func:`describe` (weights as the constructors leave them)."""
    graph = fx.Graph()
    root = nn.Module()
    values: dict[str, fx.Node] = {}
    for target, spec in architecture["modules"].items():
        _attach(root, target, _build_module(target, spec))
    for entry in architecture["nodes"]:
        op, name = entry["op"], entry["name"]
        args = _decode(entry.get("args", []), values)
        kwargs = {key: _decode(value, values) for key, value in entry.get("kwargs", {}).items()}
        if op == "placeholder":
            node = graph.placeholder(name)
        elif op == "output":
            node = graph.output(args[0])
        elif op == "call_module":
            if entry["target"] not in architecture["modules"]:
                raise ModelFileError(f"node {name} calls module {entry['target']!r}, which the file does not describe")
            node = graph.create_node(op, entry["target"], tuple(args), kwargs, name=name)
        elif op == "call_function":
            if entry["target"] not in FUNCTIONS:
                raise ModelFileError(f"node {name}: function {entry['target']!r} is not one a model file may call")
            if FUNCTIONS[entry["target"]] is getattr and args[1] not in _GETATTR_NAMES:
                raise ModelFileError(f"node {name}: getattr {args[1]!r} is not allowed (only .shape)")
            node = graph.create_node(op, FUNCTIONS[entry["target"]], tuple(args), kwargs, name=name)
        elif op == "call_method":
            if entry["target"] not in METHODS:
                raise ModelFileError(f"node {name}: method {entry['target']!r} is not one a model file may call")
            node = graph.create_node(op, entry["target"], tuple(args), kwargs, name=name)
        else:
            raise ModelFileError(f"node {name}: operation {op!r} is not allowed in a model file")
        values[name] = node
    graph.lint()
    return fx.GraphModule(root, graph)


def save(module: fx.GraphModule, path, *, input_shape, dataset: str | None = None, source: dict | None = None,
         compression: dict | None = None) -> None:
    """Write ``module`` with its records to ``path`` (atomically: a failed write leaves no partial file)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelFileError(f"input shape {input_shape!r}: expected three positive integers C, H, W")
    record = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": json.dumps(describe(module), sort_keys=True),
        "state_dict": {key: value.detach().clone() for key, value in module.state_dict().items()},
        "input_shape": list(shape),
        "dataset": dataset,
        "source": json.dumps(source or {}, sort_keys=True),
        "compression": json.dumps(compression or {}, sort_keys=True),
    }
    buffer = io.BytesIO()
    torch.save(record, buffer)
    write_atomically(Path(path), buffer.getvalue())


def load(path) -> ModelFile:
    """Read a model file; :class:`ModelFileError` names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a weights-only archive
        raise ModelFileError(f"{path}: not a model file that loads without running code ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        if isinstance(record, dict) and record and all(isinstance(v, torch.Tensor) for v in record.values()):
            raise ModelFileError(f"{path}: a state_dict, not a Radix model file (those are written by radix compress); "
                                 "give MODEL as path/to/file.py:factory with --weights " + str(path))
        raise ModelFileError(f"{path}: not a Radix model file (no format {FORMAT!r})")
    if record.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {record.get('version')!r}, this radix reads version {VERSION}")
    try:
        module = build(json.loads(record["architecture"]))
        module.load_state_dict(record["state_dict"])
        shape = tuple(int(s) for s in record["input_shape"])
        source, compression = json.loads(record["source"]), json.loads(record["compression"])
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: malformed model file ({type(exc).__name__}: {exc})") from None
    return ModelFile(module=module.eval(), input_shape=shape, dataset=record.get("dataset"), source=source,
                     compression=compression)


def _describe_module(target: str, module: nn.Module) -> dict:
    name = type(module).__name__
    if name not in MODULE_TYPES or type(module) is not MODULE_TYPES[name][0]:
        raise ModelFileError(f"module {target} ({type(module).__name__}) cannot be stored in a model file "
                             f"(types: {', '.join(MODULE_TYPES)})")
    kwargs = {}
    for arg in MODULE_TYPES[name][1]:
        value = getattr(module, arg)
        kwargs[arg] = (value is not None) if arg == "bias" else _encode(value, target)
    return {"type": name, "kwargs": kwargs}


def _build_module(target: str, spec: dict) -> nn.Module:
    name = spec.get("type")
    if name not in MODULE_TYPES:
        raise ModelFileError(f"module {target}: type {name!r} is not one a model file may hold")
    cls, allowed = MODULE_TYPES[name]
    kwargs = {key: _decode(value, {}) for key, value in spec.get("kwargs", {}).items()}
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ModelFileError(f"module {target} ({name}): unknown arguments {', '.join(unknown)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"module {target} ({name}): {exc}") from None


def _attach(root: nn.Module, target: str, module: nn.Module) -> None:
    *parents, leaf = target.split(".")
    holder = root
    for part in parents:
        if not hasattr(holder, part):
            holder.add_module(part, nn.Module())
        holder = getattr(holder, part)
    holder.add_module(leaf, module)


def _function_name(node: fx.Node) -> str:
    for name, function in FUNCTIONS.items():
        if node.target is function:
            return name
    raise ModelFileError(f"node {node.name}: function {getattr(node.target, '__name__', node.target)} cannot be stored "
                         f"in a model file (functions: {', '.join(FUNCTIONS)})")


def _encode(value, where):
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ModelFileError(f"{where}: the constant {value} cannot be stored")
        return value
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    raise ModelFileError(f"{where}: an argument of type {type(value).__name__} cannot be stored in a model file")


def _decode(value, nodes: dict):
    if isinstance(value, dict):
        if set(value) == {"node"}:
            if value["node"] not in nodes:
                raise ModelFileError(f"an argument refers to node {value['node']!r}, which is not defined before it")
            return nodes[value["node"]]
        if set(value) == {"tuple"}:
            return tuple(_decode(v, nodes) for v in value["tuple"])
        raise ModelFileError(f"an argument {value!r} is neither a node nor a tuple")
    if isinstance(value, list):
        return [_decode(v, nodes) for v in value]
    return value
