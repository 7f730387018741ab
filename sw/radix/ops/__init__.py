"""The operations Radix runs on the engine, one module each (docs/operations.md).

Each module says how its operation is recognised in a PyTorch fx graph and in ONNX, its
arithmetic on the golden model, its job geometry and how its weights and commands are laid out,
and how the tests draw random instances of it (:mod:`radix.ops.base` lists the hooks). The rest of
Radix reaches an operation through this registry, never by testing a layer's kind.

Importable on the board (numpy only).
"""

from __future__ import annotations

from .average_pool import AVGPOOL_ROLE, AveragePool
from .base import Draw, Drawn, LayerOperation, Operation
from .concatenation import Concatenation
from .convolution import Convolution
from .fully_connected import FullyConnected, fc_input_limit
from .grouped_convolution import GroupedConvolution
from .max_pool import MaxPool
from .residual_add import ResidualAdd

CONVOLUTION = Convolution()
GROUPED_CONVOLUTION = GroupedConvolution()
FULLY_CONNECTED = FullyConnected()
CONCATENATION = Concatenation()
AVERAGE_POOL = AveragePool()
MAX_POOL = MaxPool()
RESIDUAL_ADD = ResidualAdd()

# the operations that are program layers, and those that fuse into one or fold away
LAYER_OPERATIONS: tuple[LayerOperation, ...] = (CONVOLUTION, GROUPED_CONVOLUTION, FULLY_CONNECTED, CONCATENATION)
OPERATIONS: tuple[Operation, ...] = LAYER_OPERATIONS + (RESIDUAL_ADD, MAX_POOL, AVERAGE_POOL)
KINDS = tuple(dict.fromkeys(op.kind for op in LAYER_OPERATIONS))  # the program file's layer kinds


def of(layer) -> LayerOperation:
    """The operation of a program or float layer; ValueError for a kind no operation claims."""
    for operation in LAYER_OPERATIONS:
        if operation.claims(layer):
            return operation
    raise ValueError(f"layer {layer.name!r} has unknown kind {layer.kind!r} (known: {', '.join(KINDS)})")


def onnx_operation(op_type: str) -> Operation | None:
    """The operation whose converter takes the ONNX operator ``op_type``, or None."""
    return next((op for op in OPERATIONS if op_type in op.onnx_ops), None)


__all__ = ["AVGPOOL_ROLE", "AVERAGE_POOL", "CONCATENATION", "CONVOLUTION", "Draw", "Drawn", "FULLY_CONNECTED",
           "GROUPED_CONVOLUTION", "KINDS", "LAYER_OPERATIONS", "LayerOperation", "MAX_POOL", "OPERATIONS", "Operation",
           "RESIDUAL_ADD", "fc_input_limit", "of", "onnx_operation"]
