"""What an operation module provides: the hooks every part of Radix calls (docs/operations.md).

An operation module is importable on the board (numpy only): hooks that need torch import it
when they run, and only the host calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Draw:
    """What the fuzz drew before asking an operation for a random layer: the main input's
    channels and the weights' integer range ``(lo, hi)``."""

    c_in: int
    weight_range: tuple[int, int]


@dataclass
class Drawn:
    """A random layer's geometry and weights, as an operation drew them (:meth:`Operation.random_layer`):
    ``skip_shape`` is the shape a residual add's skip tensor would have, ``can_add`` whether the
    layer may take one, ``zero_bias`` whether its bias must be zero (an average pool's)."""

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    skip_shape: tuple[int, ...]
    weights: np.ndarray
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    pool: bool = False
    groups: int = 1
    role: str = ""
    can_add: bool = True
    zero_bias: bool = False


def add_arguments(layer, inputs: list, skip_shape: tuple[int, ...]) -> dict:
    """The golden model's signedness and residual-add arguments of a program layer reading
    ``inputs`` (its skip tensor, if any, viewed as ``skip_shape``: the output before pooling, §9)."""
    args = {"unsigned_in": layer.unsigned_in, "unsigned_out": layer.unsigned_out}
    if layer.skip is not None:
        args.update(skip=np.reshape(inputs[1], skip_shape), skip_shift=layer.skip_shift,
                    unsigned_skip=layer.unsigned_skip)
    return args


class Operation:
    """An operation of a model's graph that Radix runs on the engine.

    ``name`` is what messages and the docs call it; ``readme`` holds the README's rows of the
    supported-operations table (``(operation, what it becomes on the engine)``).

    Recognition (host only):

    - :meth:`torch_matches` says whether an fx node (and the module it calls) is this operation;
      :meth:`torch_step` applies it to the graph being built (:mod:`radix.ingest`'s walker);
      :meth:`torch_problem` names what is wrong with a module's own parameters whatever its input.
    - ``onnx_ops`` are the ONNX operator types :meth:`onnx_convert` rewrites as PyTorch calls
      (:mod:`radix.onnx_import`), which the PyTorch recognition then takes.

    Tests: :meth:`random_layer` draws a program layer of the operation (the fuzz and selftest).
    """

    name: ClassVar[str] = ""
    readme: ClassVar[tuple[tuple[str, str], ...]] = ()
    onnx_ops: ClassVar[dict[str, tuple[str, ...]]] = {}  # ONNX operator type -> the attributes it understands

    def torch_matches(self, node, module) -> bool:
        """Whether fx ``node`` (calling ``module``, or None) is this operation."""
        return False

    def torch_step(self, walker, node, module, name: str, x):
        """Apply the operation to the walker's graph; returns ``(value, note for check)``."""
        raise NotImplementedError(f"{self.name}: no PyTorch recognition")

    def torch_problem(self, module) -> str | None:
        """What is wrong with ``module``'s own parameters, whatever its input (None: nothing)."""
        return None

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        """The ONNX ``node`` as PyTorch calls on the importer's fx graph; returns its outputs."""
        raise NotImplementedError(f"{self.name}: no ONNX form")

    def random_layer(self, rng, config, draw: Draw) -> Drawn:
        """A random program layer of this operation within ``config``'s limits, reading ``draw.c_in``
        channels (the fuzz and selftest of :mod:`radix.runner`)."""
        raise NotImplementedError(f"{self.name}: no random layers")

    def __repr__(self) -> str:
        return f"<operation {self.name}>"


class LayerOperation(Operation):
    """An operation that is an engine layer of its own: a node of the program.

    ``kind`` is the program's layer kind (the program file stores it). Beyond recognition:

    - Contract: :meth:`run` is the layer's integer arithmetic on the golden model
      (:mod:`radix.golden`, docs/arithmetic.md), numpy only (:mod:`radix.network`, the board);
      :meth:`torch_map` its linear part in torch (the float model, calibration's exact
      accumulators, fine-tuning's straight-through training).
    - Geometry: :meth:`geometry` (the fit rule of :mod:`radix.jobs`) and :meth:`conv_shape`.
    - Encoding: :meth:`place` lays the layer's weights out and appends its commands
      (:mod:`radix.placement`'s builder); :meth:`reads_narrow` says whether it can read an
      input stored one word a pixel.

    The cycle model needs no hook: the engine runs one command, whatever the operation, and
    :mod:`radix.cycle_model` models that command from its fields.
    """

    kind: ClassVar[str] = ""
    has_weights: ClassVar[bool] = True
    windowed: ClassVar[bool] = False  # a kernel, strides and padding slide over a map
    takes_add: ClassVar[bool] = True  # a residual add can fuse into it (docs/arithmetic.md §9)

    def claims(self, layer) -> bool:
        """Whether ``layer`` (a program or float layer) is this operation."""
        return layer.kind == self.kind

    def geometry(self, layer):
        """The layer as :func:`radix.jobs.band_rows` sees it (None: no engine jobs)."""
        return None

    def conv_shape(self, layer) -> tuple[int, int]:
        """The output map's height and width before pooling."""
        return 1, 1

    def run(self, layer, inputs: list, *, width: int):
        """The layer on a batch of integer inputs (:class:`radix.golden.Requantized`)."""
        raise NotImplementedError(f"{self.name}: no arithmetic")

    def torch_map(self, layer, x, weight, bias):
        """The layer's linear part in torch: ``x`` ``(N, ...)`` to the accumulators (``bias`` may be None)."""
        raise NotImplementedError(f"{self.name}: no linear part")

    def torch_forward(self, layer, inputs: list):
        """A layer without weights: its output from its torch inputs (float or fixed point)."""
        raise NotImplementedError(f"{self.name}: has weights, see torch_map")

    def place(self, builder, layer) -> None:
        """Lay out the layer's weights and append its jobs to ``builder``."""

    def reads_narrow(self, layer, index: int, shape: tuple[int, int, int]) -> bool:
        """Whether the layer reads its input ``index`` (of ``(C, H, W)`` ``shape``) stored narrow."""
        return False
