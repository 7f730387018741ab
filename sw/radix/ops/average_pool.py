"""Average pooling: ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``, ``F.avg_pool2d``, ``x.mean((2, 3))``
/ ONNX ``AveragePool``, ``GlobalAveragePool``, ``ReduceMean`` (docs/arithmetic.md §10).

A pool before a Linear folds into its weights; anywhere else it becomes a layer with diagonal
weights ``1/(kh kw)``: a convolution with stride ``kh x kw``, or, pooling the whole map, a fully
connected layer whose weights repeat over the pixels (one summed job on the engine).
"""

from __future__ import annotations

import numpy as np

from .. import golden
from .base import Drawn, Operation

AVGPOOL_ROLE = "avgpool"


class AveragePool(Operation):
    """``kh x kw`` windows with stride ``kh x kw``, or the whole map."""

    name = "average pooling"
    readme = (
        ("`nn.AvgPool2d(k)`, `nn.AdaptiveAvgPool2d`, `F.avg_pool2d`, `x.mean((2, 3))`",
         "kh x kw with stride kh x kw, or global: folded into a following Linear, else a layer with diagonal weights "
         "(§10)"),
    )
    _POOL_ATTRS = ("kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad")
    onnx_ops = {"AveragePool": _POOL_ATTRS + ("count_include_pad",), "GlobalAveragePool": (),
                "ReduceMean": ("axes", "keepdims", "noop_with_empty_axes")}

    # -- recognition ---------------------------------------------------------------------------
    def torch_matches(self, node, module) -> bool:
        import torch
        import torch.nn.functional as F
        from torch import nn

        from .torch_graph import is_call

        return isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or is_call(
            node, (F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean), "mean")

    def torch_step(self, walker, node, module, name: str, x):
        from .torch_graph import AvgPooled, Refused

        source = walker.materialise(x)
        if len(source.shape) != 3:
            raise Refused("average pooling needs a feature map")
        _, h, w = source.shape
        window, flat = _window(node, module, h, w)
        window = window or (h, w)
        if window[0] > h or window[1] > w:
            raise Refused(f"{window[0]}x{window[1]} average pooling of a {h}x{w} map")
        return AvgPooled(source, window, name, flat=flat), "folded into the next Linear, else a layer (§10)"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        from torch import nn

        x = importer.runtime(inputs[0])
        if node.op_type == "GlobalAveragePool":
            if importer.rank() != 4:
                importer.unmapped()
            return [importer.module(nn.AdaptiveAvgPool2d(1), x)]
        if node.op_type == "ReduceMean":
            axes = importer.attr_or_input(attrs, "axes", inputs, 1)
            if not axes:
                importer.unmapped()  # all dimensions, the batch too (or, with noop_with_empty_axes, none)
            rank = importer.rank()
            axes = tuple(sorted(int(a) % rank for a in axes))
            return [importer.graph.call_method("mean", (x, axes), {"keepdim": bool(attrs.get("keepdims", 1))})]
        kernel = tuple(int(k) for k in attrs["kernel_shape"])
        strides, dilations = importer.window_params(attrs)
        if len(kernel) != 2 or dilations != (1, 1):
            importer.unmapped()
        padding = importer.symmetric(importer.pads(attrs, kernel, strides, dilations), kernel)
        pool = nn.AvgPool2d(kernel, strides, padding, ceil_mode=bool(attrs.get("ceil_mode", 0)),
                            count_include_pad=bool(attrs.get("count_include_pad", 0)))
        return [importer.module(pool, x)]

    def materialise(self, walker, pooled):
        """A pool that folds into nothing as an engine layer named after its own module, with
        diagonal weights ``1/(kh kw)`` (§10); returns its tensor."""
        from ..ingest import FloatLayer
        from .torch_graph import Refused

        source, name = pooled.source, pooled.module
        c, h, w = source.shape
        kh, kw = pooled.window
        if pooled.is_global:  # a fully connected layer whose weights repeat per pixel: one summed job
            weight = np.zeros((c, c, h * w))
            for ch in range(c):
                weight[ch, ch, :] = 1.0 / (h * w)
            layer = FloatLayer(name, "fc", [name], [source.name], weight.reshape(c, c * h * w), np.zeros(c),
                               in_shape=(c * h * w,), out_shape=pooled.out_shape, role=AVGPOOL_ROLE)
            return walker.new_layer(layer)
        if max(kh, kw) > golden.STRIDE_RANGE[1]:
            raise Refused(f"{kh}x{kw} average pooling with stride {kh}x{kw}: the engine's stride limit is "
                          f"{golden.STRIDE_RANGE[1]} unless the pooling is global or folds into a following Linear")
        weight = np.zeros((c, c, kh, kw))
        for ch in range(c):
            weight[ch, ch] = 1.0 / (kh * kw)
        layer = FloatLayer(name, "conv", [name], [source.name], weight, np.zeros(c), kernel=(kh, kw),
                           stride=(kh, kw), in_shape=source.shape, out_shape=pooled.out_shape, role=AVGPOOL_ROLE)
        return walker.new_layer(layer)

    # -- tests ---------------------------------------------------------------------------------
    def random_layer(self, rng, config, draw) -> Drawn:
        """A pool of ``C_in`` channels as the engine's convolution with one diagonal weight value
        (a rescaled average), its windows 2..4 a side, strided by the window where it fits."""
        c = draw.c_in
        kh, kw = (int(v) for v in rng.integers(2, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 5, 2))
        if rng.random() < 0.5:
            kw, sw = kh, sh
        if max(kh, kw) <= golden.STRIDE_RANGE[1]:
            sh, sw = kh, kw
        h = int(rng.integers(kh, kh + 3 * sh + 6))
        w = int(rng.integers(kw, kw + 3 * sw + 6))
        conv_h, conv_w = golden.conv_output_size(h, kh, sh, 0, 0), golden.conv_output_size(w, kw, sw, 0, 0)
        weights = np.zeros((c, c, kh, kw), dtype=np.int64)
        weights[np.arange(c), np.arange(c)] = int(rng.integers(1, draw.weight_range[1] + 1))
        return Drawn(kind="conv", in_shape=(c, h, w), out_shape=(c, conv_h, conv_w), skip_shape=(c, conv_h, conv_w),
                     weights=weights, kernel=(kh, kw), stride=(sh, sw), role=AVGPOOL_ROLE, can_add=False,
                     zero_bias=True)


def fold_into_linear(linear, pooled) -> np.ndarray:
    """A Linear's weights on the unpooled map (§10): ``w[o, c, h div kh, v div kw] / (kh kw)``."""
    from .torch_graph import Refused

    c, h, w = pooled.source.shape
    _, out_h, out_w = pooled.out_shape
    kh, kw = pooled.window
    weight = linear.weight.detach().double().numpy()
    if weight.shape[1] != c * out_h * out_w:
        raise Refused(f"expects {weight.shape[1]} inputs, the pooled map has {c * out_h * out_w}")
    pooled_w = weight.reshape(-1, c, out_h, out_w) / (kh * kw)
    full = np.zeros((weight.shape[0], c, h, w))
    full[:, :, : out_h * kh, : out_w * kw] = np.repeat(np.repeat(pooled_w, kh, axis=2), kw, axis=3)
    return full.reshape(weight.shape[0], -1)


def _window(node, module, h: int, w: int) -> tuple[tuple[int, int] | None, bool]:
    """``(window, flattened)``: the pooling window (None for global pooling) and whether the
    result is already flat (``x.mean((2, 3))`` without keepdim)."""
    import torch.nn.functional as F
    from torch import nn

    from .torch_graph import Refused, arg, pair

    only = "only k x k average pooling with stride k, padding 0, floor mode, no divisor override"
    if isinstance(module, nn.AvgPool2d):
        kernel, stride = pair(module.kernel_size), pair(module.stride or module.kernel_size)
        if stride != kernel or pair(module.padding) != (0, 0) or module.ceil_mode or module.divisor_override:
            raise Refused(only)
        return kernel, False
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _adaptive_window(module.output_size, h, w), False
    if node.op == "call_function" and node.target is F.avg_pool2d:
        kernel = pair(arg(node, 1, "kernel_size"))
        stride = arg(node, 2, "stride", None)
        stride = kernel if stride in (None, (), []) else pair(stride)
        if stride != kernel or pair(arg(node, 3, "padding", 0)) != (0, 0) or arg(node, 4, "ceil_mode", False) \
                or arg(node, 6, "divisor_override", None):
            raise Refused(only)
        return kernel, False
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return _adaptive_window(arg(node, 1, "output_size"), h, w), False
    dims = arg(node, 1, "dim")
    keepdim = arg(node, 2, "keepdim", False)
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    if sorted(d % 4 for d in dims) != [2, 3]:
        raise Refused(f"mean over dims {dims}: only the spatial mean (2, 3), i.e. global average pooling")
    return None, not keepdim


def _adaptive_window(output_size, h: int, w: int) -> tuple[int, int] | None:
    from .torch_graph import Refused, pair

    out = pair(output_size)
    if out == (1, 1):
        return None
    if None in out or h % out[0] or w % out[1]:
        raise Refused(f"adaptive average pooling to {output_size} of a {h}x{w} map: windows must divide the map")
    return (h // out[0], w // out[1])
