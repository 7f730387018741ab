"""The values and helpers of a PyTorch fx graph being ingested (host only: imports torch).

:mod:`radix.ingest`'s walker holds one value per fx node; the operations' ``torch_step`` hooks
(``radix.ops``) read and make them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
from torch import fx, nn

INPUT = "input"  # the network input's tensor name


class Refused(Exception):
    """One operation is refused; the message is the reason."""


@dataclass
class Tensor:
    """A tensor of the engine graph, viewed with ``shape`` (per image; flattened or not).
    ``exclusive`` says the fx value is the producing layer's output read by nobody else so far."""

    name: str
    shape: tuple[int, ...]
    exclusive: bool = False


@dataclass
class Padded:
    """Zero padding ``(top, left, bottom, right)`` waiting for the convolution that absorbs it."""

    source: Tensor
    padding: tuple[int, int, int, int]
    module: str


@dataclass
class AvgPooled:
    """Average pooling of ``source`` over ``window`` = ``(kh, kw)`` windows with stride ``window``
    (global pooling: the whole map), waiting to fold into a Linear or to become a layer; ``flat``
    once flattened."""

    source: Tensor
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


def alias(value, node: fx.Node):
    """The same value through a free operation; a tensor stays exclusive only if read once."""
    if isinstance(value, Tensor):
        return Tensor(value.name, value.shape, value.exclusive and len(users(node.all_input_nodes[0])) == 1)
    return value


def users(node: fx.Node) -> list[fx.Node]:
    """The operations that read a node's tensor (shape queries such as ``x.size(0)`` do not)."""
    return [user for user in node.users if not is_shape_query(user)]


def is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1] in ("shape",):
        return True
    if node.op == "call_function" and node.target is operator.getitem:
        source = node.args[0]
        return isinstance(source, fx.Node) and is_shape_query(source)
    return False


def is_call(node: fx.Node, functions: tuple, methods) -> bool:
    """Whether ``node`` calls one of ``functions`` or a tensor method named in ``methods``."""
    if node.op == "call_function" and node.target in functions:
        return True
    if node.op == "call_method" and methods is not None:
        names = (methods,) if isinstance(methods, str) else methods
        return node.target in names
    return False


def arg(node: fx.Node, index: int, name: str, default=None):
    """A call's argument by position or keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def bias_of(module: nn.Module, count: int) -> np.ndarray:
    """A module's bias in float64 (zeros without one)."""
    if module.bias is None:
        return np.zeros(count)
    return module.bias.detach().double().numpy().copy()
