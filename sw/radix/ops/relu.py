"""ReLU: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()`` / ONNX ``Relu`` and ``Clip(0, inf)``,
fused into the output stage of the layer before it (docs/arithmetic.md §5); after anything else,
an identity layer with ReLU."""

from __future__ import annotations

import math

from .base import Operation


class ReLU(Operation):
    """``max(x, 0)``, applied after requantization by the layer that produced ``x``."""

    name = "ReLU"
    readme = (("`nn.ReLU`, `F.relu`, `torch.relu`, `x.relu()`", "fused into the layer before it; elsewhere an "
                                                                "identity layer"),)
    onnx_ops = {"Relu": (), "Clip": ("min", "max")}

    def torch_matches(self, node, module) -> bool:
        import torch
        import torch.nn.functional as F
        from torch import nn

        from .torch_graph import is_call

        return isinstance(module, nn.ReLU) or is_call(node, (F.relu, torch.relu), "relu")

    def torch_step(self, walker, node, module, name: str, x):
        from .torch_graph import INPUT, Tensor, alias

        x = walker.settle(x, node)
        layer = walker.open_layer(x, node)
        if layer is not None:
            layer.relu = True
            layer.modules.append(name)
            return Tensor(layer.name, x.shape, True), f"fused into {layer.name}"
        source = walker.materialise(x)
        if source.name != INPUT and walker.by_name[source.name].relu:
            return alias(source, node), "no-op: the input is already rectified"
        identity = walker.identity_layer(source, name, name)
        identity.relu = True
        return Tensor(identity.name, source.shape, True), "an identity layer with ReLU"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        from torch import nn

        if node.op_type == "Clip":
            low = importer.attr_or_input(attrs, "min", inputs, 1)
            high = importer.attr_or_input(attrs, "max", inputs, 2)
            if low != 0 or high not in (None, math.inf):
                importer.unmapped()
        return [importer.module(nn.ReLU(), importer.runtime(inputs[0]))]
