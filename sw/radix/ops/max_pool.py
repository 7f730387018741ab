"""Max pooling: ``nn.MaxPool2d(2)``, ``F.max_pool2d(x, 2)`` / ONNX ``MaxPool``, 2x2 with stride 2,
fused into the convolution before it (docs/arithmetic.md §6): the output unit pools the
requantized values, so it costs no job of its own."""

from __future__ import annotations

from .base import Operation


class MaxPool(Operation):
    """2x2 windows, stride 2, no padding; after any other operation an identity layer carries it."""

    name = "max pooling"
    readme = (("`nn.MaxPool2d(2)`, `F.max_pool2d(x, 2)`", "2x2 stride 2, fused into the convolution before it"),)
    onnx_ops = {"MaxPool": ("kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad",
                            "storage_order")}

    def torch_matches(self, node, module) -> bool:
        import torch
        import torch.nn.functional as F
        from torch import nn

        from .torch_graph import is_call

        return isinstance(module, nn.MaxPool2d) or is_call(node, (F.max_pool2d, torch.max_pool2d), None)

    def torch_problem(self, module) -> str | None:
        return _problem(*_module_params(module))

    def torch_step(self, walker, node, module, name: str, x):
        from .torch_graph import Refused

        params = _module_params(module) if module is not None else _call_params(node)
        x = walker.settle(x, node)
        problem = _problem(*params)
        if problem:
            raise Refused(problem)
        layer = walker.open_layer(x, node, kinds=("conv",))
        if layer is None or layer.pool or len(x.shape) != 3:
            source = walker.materialise(x)
            if len(source.shape) != 3:
                raise Refused("max pooling needs a feature map")
            layer = walker.identity_layer(source, name, name)
        else:
            layer.modules.append(name)
        c, h, w = layer.out_shape
        if h < 2 or w < 2:
            raise Refused(f"max pooling needs a 2x2 map, the layer gives {h}x{w}")
        layer.pool = True
        layer.out_shape = (c, h // 2, w // 2)
        return walker.tensor_of(layer), f"fused into {layer.name}"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        from torch import nn

        x = importer.runtime(inputs[0])
        kernel = tuple(int(k) for k in attrs["kernel_shape"])
        if len(kernel) != 2 or not importer.unread(node, 1):
            importer.unmapped()  # 1-D/3-D pooling, or the indices are used
        strides, dilations = importer.window_params(attrs)
        padding = importer.symmetric(importer.pads(attrs, kernel, strides, dilations), kernel)
        pool = nn.MaxPool2d(kernel, strides, padding, dilations, ceil_mode=bool(attrs.get("ceil_mode", 0)))
        return [importer.module(pool, x)]


def _module_params(pool):
    return pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, pool.return_indices


def _call_params(node):
    from .torch_graph import arg

    kernel = arg(node, 1, "kernel_size")
    return (kernel, arg(node, 2, "stride"), arg(node, 3, "padding", 0), arg(node, 4, "dilation", 1),
            arg(node, 5, "ceil_mode", False), arg(node, 6, "return_indices", False))


def _problem(kernel, stride, padding, dilation, ceil_mode, return_indices) -> str | None:
    from .torch_graph import pair

    stride = stride if stride not in (None, (), []) else kernel
    if pair(kernel) != (2, 2) or pair(stride) != (2, 2):
        return f"kernel {kernel} stride {stride}: only 2x2 stride 2 max pooling"
    if pair(padding) != (0, 0) or pair(dilation) != (1, 1) or ceil_mode or return_indices:
        return "only padding 0, dilation 1, floor mode"
    return None
