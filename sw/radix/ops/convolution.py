"""Convolution: ``nn.Conv2d`` / ONNX ``Conv`` with one group, the engine's main layer
(docs/arithmetic.md §7; rectangular kernels and strides, padding per side)."""

from __future__ import annotations

import numpy as np

from .. import golden, jobs
from .base import LayerOperation, Drawn, add_arguments

CONV_ATTRS = ("kernel_shape", "strides", "pads", "dilations", "group", "auto_pad")


def conv_problem(conv) -> str | None:
    """What is wrong with an ``nn.Conv2d``'s own parameters (None: nothing)."""
    kh, kw = conv.kernel_size
    if not all(golden.KERNEL_RANGE[0] <= k <= golden.KERNEL_RANGE[1] for k in (kh, kw)):
        return f"kernel {kh}x{kw} outside {golden.KERNEL_RANGE[0]}..{golden.KERNEL_RANGE[1]} per dimension"
    if not all(golden.STRIDE_RANGE[0] <= s <= golden.STRIDE_RANGE[1] for s in conv.stride):
        return (f"stride {conv.stride[0]}x{conv.stride[1]} outside {golden.STRIDE_RANGE[0]}..{golden.STRIDE_RANGE[1]} "
                "per dimension")
    if conv.padding_mode != "zeros":
        return f"padding mode {conv.padding_mode!r}: only zeros"
    if conv.dilation != (1, 1):
        return f"dilation {conv.dilation}: only 1"
    return None


def conv_padding(conv) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)``; ``padding="same"`` (stride 1 in PyTorch) puts the odd one of an
    even kernel's ``k - 1`` padding after, as PyTorch does."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        (kh, kw) = conv.kernel_size
        top, left = (kh - 1) // 2, (kw - 1) // 2
        return (top, left, kh - 1 - top, kw - 1 - left)
    ph, pw = conv.padding
    return (ph, pw, ph, pw)


class Convolution(LayerOperation):
    """A convolution whose every output channel reads every input channel."""

    name = "convolution"
    kind = "conv"
    windowed = True
    readme = (
        ("`nn.Conv2d`", f"an engine layer: kernel KH x KW of {golden.KERNEL_RANGE[0]}..{golden.KERNEL_RANGE[1]} each, "
                        f"strides {golden.STRIDE_RANGE[0]}..{golden.STRIDE_RANGE[1]} each, zero padding per side "
                        "below the kernel (`padding=\"same\"` as PyTorch places it), no dilation"),
    )
    onnx_ops = {"Conv": CONV_ATTRS}

    def claims(self, layer) -> bool:
        return layer.kind == self.kind and layer.groups == 1

    # -- recognition ---------------------------------------------------------------------------
    def torch_matches(self, node, module) -> bool:
        from torch import nn

        return isinstance(module, nn.Conv2d) and module.groups == 1

    def torch_problem(self, module) -> str | None:
        return conv_problem(module)

    def torch_note(self, module) -> str:
        """What ``check`` says of a recognised module."""
        return ""

    def torch_step(self, walker, node, module, name: str, x):
        from ..ingest import FloatLayer
        from .torch_graph import INPUT, Padded, Refused, bias_of

        problem = conv_problem(module)
        if problem:
            raise Refused(problem)
        extra, fused = (0, 0, 0, 0), []
        if isinstance(x, Padded):
            extra, x, fused = x.padding, x.source, [x.module]
        source = walker.materialise(x)
        if len(source.shape) != 3 or source.shape[0] != module.in_channels:
            if source.name == INPUT:
                walker.note_input_mismatch(name, "Conv2d", "channels", module.in_channels)
            raise Refused(f"expects {module.in_channels} input channels, gets shape {source.shape}")
        (kh, kw), (sh, sw) = tuple(module.kernel_size), tuple(module.stride)
        padding = tuple(a + b for a, b in zip(conv_padding(module), extra))
        c, h, w = source.shape
        golden.check_conv_geometry(c_in=c, height=h, width_px=w, kernel=(kh, kw), stride=(sh, sw), pad=padding,
                                   groups=module.groups, c_out=module.out_channels)
        top, left, bottom, right = padding
        out = (module.out_channels, golden.conv_output_size(h, kh, sh, top, bottom),
               golden.conv_output_size(w, kw, sw, left, right))
        weight = module.weight.detach().double().numpy().copy()
        layer = FloatLayer(name, self.kind, [name] + fused, [source.name], weight, bias_of(module, weight.shape[0]),
                           kernel=(kh, kw), stride=(sh, sw), padding=padding, in_shape=source.shape, out_shape=out,
                           groups=module.groups)
        return walker.new_layer(layer), self.torch_note(module)

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        import torch.nn.functional as F
        from torch import nn

        x = importer.runtime(inputs[0])
        weight = importer.constant(inputs[1], ndim=4)
        bias = importer.constant(inputs[2], ndim=1) if len(inputs) > 2 and inputs[2] is not None else None
        kernel = tuple(weight.shape[2:])
        if tuple(attrs.get("kernel_shape", kernel)) != kernel:
            importer.unmapped()
        strides, dilations = importer.window_params(attrs)
        top, left, bottom, right = importer.pads(attrs, kernel, strides, dilations)
        group = int(attrs.get("group", 1))
        equal = top == bottom and left == right
        conv = nn.Conv2d(weight.shape[1] * group, weight.shape[0], kernel, stride=strides, dilation=dilations,
                         groups=group, bias=bias is not None, padding=(top, left) if equal else 0)
        conv.weight = importer.parameter(weight)
        if bias is not None:
            conv.bias = importer.parameter(bias)
        if not equal:
            x = importer.graph.call_function(F.pad, (x, (left, right, top, bottom)), {"mode": "constant", "value": 0.0})
        out = importer.module(conv, x)
        importer.layer_of[out] = conv
        return [out]

    # -- contract and geometry -----------------------------------------------------------------
    def geometry(self, layer) -> jobs.Geometry:
        return jobs.geometry_of(kind="conv", in_shape=layer.in_shape, c_out=layer.out_shape[0], kernel=layer.kernel,
                                stride=layer.stride, padding=layer.padding, pool=layer.pool, groups=layer.groups)

    def conv_shape(self, layer) -> tuple[int, int]:
        top, left, bottom, right = layer.padding
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        return ((layer.in_shape[1] + top + bottom - kh) // sh + 1, (layer.in_shape[2] + left + right - kw) // sw + 1)

    def run(self, layer, inputs: list, *, width: int) -> golden.Requantized:
        x = inputs[0]
        args = add_arguments(layer, inputs, (x.shape[0], layer.weights.shape[0]) + self.conv_shape(layer))
        return golden.conv2d(x, layer.weights, layer.bias, stride=layer.stride, pad=layer.padding, shift=layer.shift,
                             relu=layer.relu, pool=layer.pool, width=width, groups=layer.groups, **args)

    def torch_map(self, layer, x, weight, bias):
        import torch.nn.functional as F

        top, left, bottom, right = layer.padding
        return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride=layer.stride, groups=layer.groups)

    # -- on the engine -------------------------------------------------------------------------
    def reads_narrow(self, layer, index: int, shape) -> bool:
        return index == 0

    def place(self, builder, layer) -> None:
        src, out = builder.tensors[layer.inputs[0]], builder.tensors[layer.name]
        if (src.channels, src.height, src.width) != tuple(layer.in_shape) or layer.weights.shape[1] != src.channels:
            builder.refuse(layer, f"reads {src.name} of shape {src.shape}, but its input is {tuple(layer.in_shape)} "
                                  f"with {layer.weights.shape[1]} weight channels")
        core, in_ch, physical = builder.physical_weights(layer, src, src.words, np.asarray(src.lanes), layer.weights)
        fold, band_config, physical = builder.fold_plan(layer, core, in_ch, physical)
        wt_addr = builder.weight_block(layer, physical)
        skip = builder.skip_tensor(layer) if layer.skip is not None else None
        common = builder.layer_fields(layer, src, out, in_ch=in_ch, out_ch=physical.shape[0], wt_addr=wt_addr,
                                      skip=skip)
        builder.conv_jobs(layer, src, out, skip, in_ch, common, fold=fold, band_config=band_config)

    # -- tests ---------------------------------------------------------------------------------
    def random_layer(self, rng, config, draw) -> Drawn:
        """Kernels and strides square half of the time, else each dimension drawn on its own (§7);
        padding differs per side; a 1x1 kernel's map is cut to a multiple of its strides half of
        the time (the placement's sampling view, docs/engine.md)."""
        c_out = int(rng.integers(1, 3 * config.cols + 2))
        return self.random_convolution(rng, draw, c_in=draw.c_in, c_out=c_out, groups=1, can_add=True)

    @staticmethod
    def random_convolution(rng, draw, *, c_in: int, c_out: int, groups: int, can_add: bool) -> Drawn:
        """A random convolution of ``c_in`` to ``c_out`` channels in ``groups`` groups."""
        lo, hi = draw.weight_range
        kh, kw = (int(v) for v in rng.integers(1, 8, 2))
        sh, sw = (int(v) for v in rng.integers(1, 5, 2))
        if rng.random() < 0.5:
            kw, sw = kh, sh
        padding = tuple(int(p) for p in (rng.integers(0, kh), rng.integers(0, kw), rng.integers(0, kh),
                                         rng.integers(0, kw)))
        h = int(rng.integers(max(1, kh - padding[0] - padding[2]), kh + 3 * sh + 6))
        w = int(rng.integers(max(1, kw - padding[1] - padding[3]), kw + 3 * sw + 6))
        if (kh, kw) == (1, 1) and rng.random() < 0.5:
            h, w = max(sh, h - h % sh), max(sw, w - w % sw)
        conv_h = golden.conv_output_size(h, kh, sh, padding[0], padding[2])
        conv_w = golden.conv_output_size(w, kw, sw, padding[1], padding[3])
        pool = bool(rng.random() < 0.4) and min(conv_h, conv_w) >= 2
        out_shape = (c_out, conv_h // 2, conv_w // 2) if pool else (c_out, conv_h, conv_w)
        return Drawn(kind="conv", in_shape=(c_in, h, w), out_shape=out_shape, skip_shape=(c_out, conv_h, conv_w),
                     kernel=(kh, kw), stride=(sh, sw), padding=padding, pool=pool, groups=groups,
                     weights=rng.integers(lo, hi + 1, (c_out, c_in // groups, kh, kw)), can_add=can_add)
