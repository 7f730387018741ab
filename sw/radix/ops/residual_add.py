"""Residual add: ``x + y``, ``torch.add``, ``operator.add`` / ONNX ``Add`` of two tensors of one
shape (docs/arithmetic.md §9), fused into the layer that produces one of them: the engine adds the
skip tensor, aligned to the accumulator, before the output stage."""

from __future__ import annotations

import numpy as np

from .. import golden
from .base import Operation


class ResidualAdd(Operation):
    """The skip tensor joins the layer with more multiply-accumulates of the two producers."""

    name = "residual add"
    readme = (("`x + y`, `torch.add`, `operator.add`",
               "residual add of two tensors of one shape, fused into the layer that produces one of them, the one "
               "with more multiply-accumulates (docs/arithmetic.md §9), else an identity layer"),)
    onnx_ops = {"Add": ()}

    def torch_matches(self, node, module) -> bool:
        import operator

        import torch

        from .torch_graph import is_call

        return is_call(node, (operator.add, operator.iadd, torch.add), "add")

    def torch_step(self, walker, node, module, name: str, x):
        from torch import fx

        from .torch_graph import INPUT, Refused, Tensor, users

        if node.kwargs.get("alpha", 1) != 1 or len(node.args) > 2:
            raise Refused("add with alpha: only a plain sum of two tensors")
        operands = list(node.args[:2])
        if not all(isinstance(a, fx.Node) for a in operands) or len(operands) != 2:
            raise Refused("add of a tensor and a constant: only the sum of two tensors (a residual add)")
        values = [walker.values[a] for a in operands]
        candidates = []
        for operand, value in zip(operands, values):
            if isinstance(value, Tensor) and value.exclusive and value.name != INPUT and len(users(operand)) == 1 \
                    and operands[0] is not operands[1]:
                layer = walker.by_name[value.name]
                if layer.operation.takes_add and not (layer.relu or layer.pool or layer.skip):
                    candidates.append((walker.layers.index(layer), layer, value))
        tensors = [walker.materialise(v) for v in values]
        if tensors[0].shape != tensors[1].shape:
            raise Refused(f"add of tensors of shapes {tensors[0].shape} and {tensors[1].shape}: they must be equal "
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
            walker.layers.remove(layer)
            walker.layers.append(layer)
            golden.check_reduction(int(np.prod(layer.weight.shape[1:])), add=True)
            return Tensor(layer.name, value.shape, True), f"fused into {layer.name} (§9)"
        identity = walker.identity_layer(tensors[0], name, name, skip=tensors[1])
        return Tensor(identity.name, tensors[0].shape, True), "an identity layer carrying the add (§9)"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        import operator

        a, b = inputs
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            importer.unmapped()  # arithmetic on the symbolic batch size
        names = list(node.input)
        if isinstance(a, np.ndarray):
            a, b, names = b, a, names[::-1]
        if isinstance(b, np.ndarray):
            if importer.join_bias(a, names[0], b):
                return [a]
            # a scalar stays a number, so that ingest explains what is wrong with adding it
            other = float(b.ravel()[0]) if b.size == 1 and b.dtype.kind == "f" else importer.tensor(b, names[1])
            return [importer.graph.call_function(operator.add, (a, other))]
        return [importer.graph.call_function(operator.add, (a, b))]

    @staticmethod
    def random_skip(rng, *, width: int, unsigned: bool, natural_shift: int, shape: tuple) -> tuple[int, np.ndarray]:
        """A random skip shift (from the leftmost the engine executes to right shifts past ``W``)
        and skip tensor of ``shape`` over the whole range of its signedness (the fuzz's adds)."""
        skip_lo, skip_hi = golden.skip_shift_range(width, unsigned=unsigned)
        skip_shift = int(rng.choice([skip_lo, int(rng.integers(skip_lo, 1)), 0, int(rng.integers(1, skip_hi + 3)),
                                     natural_shift - width]))
        lo, hi = golden.tensor_range(width, unsigned=unsigned)
        return max(skip_shift, skip_lo), rng.integers(lo, hi + 1, shape)
