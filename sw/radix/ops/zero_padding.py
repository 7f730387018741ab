"""Zero padding: ``nn.ZeroPad2d``, ``nn.ConstantPad2d(p, 0)``, ``F.pad`` (constant 0) / ONNX ``Pad``,
any four sides, fused into the next convolution's padding (a Keras "same" convolution's
asymmetric padding is one)."""

from __future__ import annotations

import numpy as np

from .base import Operation


class ZeroPadding(Operation):
    """Rows and columns of zeros around a map, absorbed by the convolution that reads it."""

    name = "zero padding"
    readme = (("`nn.ZeroPad2d`, `nn.ConstantPad2d(p, 0)`, `F.pad` (constant 0)",
               "fused into the next convolution's padding, any four sides"),)
    onnx_ops = {"Pad": ("mode", "pads", "value")}

    def torch_matches(self, node, module) -> bool:
        import torch.nn.functional as F
        from torch import nn

        from .torch_graph import is_call

        return isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d)) or is_call(node, (F.pad,), None)

    def torch_step(self, walker, node, module, name: str, x):
        from torch import nn

        from .torch_graph import Padded, Refused

        if module is not None:
            if isinstance(module, nn.ConstantPad2d) and module.value != 0:
                raise Refused(f"constant padding with {module.value}: only zero padding")
            left, right, top, bottom = module.padding
            padding = (top, left, bottom, right)
        else:
            padding = _call_padding(node)
        if isinstance(x, Padded):
            padding = tuple(a + b for a, b in zip(padding, x.padding))
            x = x.source
        source = walker.materialise(x)
        if len(source.shape) != 3:
            raise Refused("zero padding needs a feature map")
        if min(padding) < 0:
            raise Refused(f"negative padding {padding} (cropping) is not supported")
        return Padded(source, tuple(int(p) for p in padding), name), "fused into the next Conv2d"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        import torch.nn.functional as F

        x = importer.runtime(inputs[0])
        rank = importer.rank()
        pads = importer.attr_or_input(attrs, "pads", inputs, 1)
        value = importer.attr_or_input(attrs, "value", inputs, 2, 0.0)
        axes = [int(a) for a in importer.attr_or_input(attrs, "axes", inputs, 3, list(range(rank)))]
        full = [0] * (2 * rank)
        for i, axis in enumerate(axes):
            full[axis % rank], full[axis % rank + rank] = int(pads[i]), int(pads[i + len(axes)])
        if not any(full):
            return [x]  # old exporters pad pooling by nothing
        # torch's order: last dimension first, (begin, end) pairs; trailing zero pairs dropped
        torch_pads = [p for axis in reversed(range(rank)) for p in (full[axis], full[axis + rank])]
        while len(torch_pads) > 4 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]
        # other modes stay F.pad calls, which ingest refuses naming the mode
        mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(
            attrs.get("mode", "constant"))
        if mode is None:
            importer.unmapped()
        kwargs = {"mode": mode}
        if mode == "constant":
            kwargs["value"] = float(np.ravel(value)[0]) if np.size(value) else 0.0
        return [importer.graph.call_function(F.pad, (x, tuple(torch_pads)), kwargs)]


def _call_padding(node) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of an ``F.pad`` call."""
    from .torch_graph import Refused, arg

    pads = arg(node, 1, "pad")
    mode = arg(node, 2, "mode", "constant")
    value = arg(node, 3, "value", None)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise Refused(f"F.pad mode={mode!r} value={value!r}: only constant zero padding")
    pads = tuple(pads)
    if len(pads) == 2:
        pads = pads + (0, 0)
    if len(pads) != 4 or not all(isinstance(p, int) for p in pads):
        raise Refused(f"F.pad {pads}: give (left, right, top, bottom) as integers")
    left, right, top, bottom = pads
    return (top, left, bottom, right)
