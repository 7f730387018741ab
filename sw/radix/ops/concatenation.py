"""Channel concatenation: ``torch.cat(dim=1)`` / ONNX ``Concat`` on axis 1, data movement on the
engine (docs/arithmetic.md §11): its parts are written side by side in the pixels of one tensor,
so it runs no jobs of its own."""

from __future__ import annotations

import numpy as np

from .. import golden
from .base import LayerOperation


class Concatenation(LayerOperation):
    """Its inputs, each in its recorded shape, side by side along channels; they share one fl."""

    name = "concatenation"
    kind = "concat"
    has_weights = False
    takes_add = False
    readme = (("`torch.cat(dim=1)`", "channel concatenation: data movement, its inputs share one fl (§11)"),)
    onnx_ops = {"Concat": ("axis",)}

    def torch_matches(self, node, module) -> bool:
        import torch

        from .torch_graph import is_call

        return is_call(node, (torch.cat, torch.concat), None)

    def torch_step(self, walker, node, module, name: str, x):
        from torch import fx

        from ..ingest import FloatLayer
        from .torch_graph import Refused

        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        parts = node.args[0]
        if not isinstance(parts, (list, tuple)) or not all(isinstance(p, fx.Node) for p in parts):
            raise Refused("concatenation of something other than a list of tensors")
        tensors = [walker.materialise(walker.values[p]) for p in parts]
        ndim = len(tensors[0].shape) + 1
        if dim not in (1, 1 - ndim) or any(len(t.shape) != ndim - 1 for t in tensors):
            raise Refused(f"concatenation along dim {dim}: only channels (dim=1) of tensors of one rank")
        if len({t.shape[1:] for t in tensors}) != 1:
            raise Refused(f"concatenation of shapes {[t.shape for t in tensors]}: spatial sizes must be equal")
        shape = (sum(t.shape[0] for t in tensors),) + tensors[0].shape[1:]
        layer = FloatLayer(name, self.kind, [name], [t.name for t in tensors], in_shape=shape, out_shape=shape,
                           input_shapes=[t.shape for t in tensors])
        return walker.new_layer(layer), "data movement: its inputs share one fl (§11)"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        import torch

        if all(isinstance(v, np.ndarray) for v in inputs):
            return [importer.sizes(np.concatenate(inputs, axis=int(attrs["axis"])))]
        parts = [importer.tensor(v, name) for v, name in zip(inputs, node.input)]
        return [importer.graph.call_function(torch.cat, (parts,), {"dim": int(attrs["axis"])})]

    def run(self, layer, inputs: list, *, width: int) -> golden.Requantized:
        batch = inputs[0].shape[0]
        joined = np.concatenate([np.reshape(p, (batch,) + tuple(s)) for p, s in zip(inputs, layer.input_shapes)],
                                axis=1)
        return golden.Requantized(joined, 0)

    def torch_forward(self, layer, inputs: list):
        """The concatenation of torch tensors (float or fixed point), each in its recorded shape."""
        import torch

        batch = inputs[0].shape[0]
        return torch.cat([part.reshape((batch,) + tuple(shape)) for part, shape in zip(inputs, layer.input_shapes)],
                         dim=1)
