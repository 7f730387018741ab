"""The operations Radix runs on the engine, one module each (docs/operations.md).

Each module says how its operation is recognised in a PyTorch fx graph and in ONNX, its
arithmetic on the golden model, its job geometry and how its weights and commands are laid out,
and how the tests draw random instances of it (:mod:`radix.ops.base` lists the hooks). The rest of
Radix reaches an operation through this registry, never by testing a layer's kind.

Importable on the board (numpy only).
"""

from __future__ import annotations

from ..golden import pair
from .average_pool import AVGPOOL_ROLE, AveragePool
from .base import Draw, Drawn, LayerOperation, Operation
from .batch_norm import BatchNorm
from .concatenation import Concatenation
from .convolution import Convolution
from .fully_connected import FullyConnected, fc_input_limit
from .grouped_convolution import GroupedConvolution
from .max_pool import MaxPool
from .relu import ReLU
from .residual_add import ResidualAdd
from .zero_padding import ZeroPadding

CONVOLUTION = Convolution()
GROUPED_CONVOLUTION = GroupedConvolution()
FULLY_CONNECTED = FullyConnected()
CONCATENATION = Concatenation()
AVERAGE_POOL = AveragePool()
MAX_POOL = MaxPool()
RESIDUAL_ADD = ResidualAdd()
BATCH_NORM = BatchNorm()
RELU = ReLU()
ZERO_PADDING = ZeroPadding()

# the operations that are program layers, and those that fuse into one or fold away
LAYER_OPERATIONS: tuple[LayerOperation, ...] = (CONVOLUTION, GROUPED_CONVOLUTION, FULLY_CONNECTED, CONCATENATION)
OPERATIONS: tuple[Operation, ...] = LAYER_OPERATIONS + (RESIDUAL_ADD, MAX_POOL, AVERAGE_POOL)
# what changes the engine's layers without being one: folded, fused or absorbed by the next layer
GRAPH_OPERATIONS: tuple[Operation, ...] = (BATCH_NORM, RELU, ZERO_PADDING)
KINDS = tuple(dict.fromkeys(op.kind for op in LAYER_OPERATIONS))  # the program file's layer kinds


def of(layer) -> LayerOperation:
    """The operation of a program or float layer; ValueError for a kind no operation claims."""
    for operation in LAYER_OPERATIONS:
        if operation.claims(layer):
            return operation
    raise ValueError(f"layer {layer.name!r} has unknown kind {layer.kind!r} (known: {', '.join(KINDS)})")


class OperationLayer:
    """What the fields of a layer dataclass mean whatever its numbers are: the float layer of
    ingestion (``radix.ingest.FloatLayer``) and the program's integer layer (``radix.program.Layer``)
    both take their kernel and stride as pairs, their operation from this registry and a residual
    add's skip tensor from their second input."""

    def __post_init__(self):
        self.kernel, self.stride = pair(self.kernel, "kernel"), pair(self.stride, "stride")

    @property
    def operation(self) -> LayerOperation:
        """The layer's operation."""
        return of(self)

    @property
    def skip(self) -> str | None:
        """The residual add's skip tensor, or None."""
        return self.inputs[1] if self.operation.has_weights and len(self.inputs) > 1 else None


__all__ = ["AVGPOOL_ROLE", "AVERAGE_POOL", "BATCH_NORM", "CONCATENATION", "CONVOLUTION", "Draw", "Drawn",
           "FULLY_CONNECTED", "GRAPH_OPERATIONS", "GROUPED_CONVOLUTION", "KINDS", "LAYER_OPERATIONS", "LayerOperation",
           "MAX_POOL", "OPERATIONS", "Operation", "OperationLayer", "RELU", "RESIDUAL_ADD", "ZERO_PADDING",
           "fc_input_limit", "of"]
