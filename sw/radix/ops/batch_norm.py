"""Batch normalisation: ``nn.BatchNorm1d/2d`` with running statistics / ONNX
``BatchNormalization`` (inference), folded into the weights and bias of the layer before it
(docs/arithmetic.md §8); after anything else, a per-channel scale layer."""

from __future__ import annotations

import numpy as np

from .base import Operation


def fold_batchnorm(layer, bn) -> None:
    """Fold inference BatchNorm into a float layer's weights and bias (docs/arithmetic.md §8)."""
    scale = bn.weight.detach().double().numpy() if bn.affine else np.ones(bn.num_features)
    shift = bn.bias.detach().double().numpy() if bn.affine else np.zeros(bn.num_features)
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    factor = scale / np.sqrt(var + bn.eps)
    layer.weight = layer.weight * factor.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    layer.bias = (layer.bias - mean) * factor + shift


class BatchNorm(Operation):
    """``(x - mean) / sqrt(var + eps) * scale + shift`` per channel, with the running statistics."""

    name = "batch normalisation"
    readme = (("`nn.BatchNorm1d/2d` (running statistics)", "folded into the Conv2d/Linear before it; elsewhere a "
                                                            "per-channel scale layer"),)
    onnx_ops = {"BatchNormalization": ("epsilon", "momentum", "training_mode")}

    def torch_matches(self, node, module) -> bool:
        from torch import nn

        return isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))

    def torch_problem(self, module) -> str | None:
        if not module.track_running_stats or module.running_mean is None:
            return ("BatchNorm without running statistics (track_running_stats=False) normalises each batch by its "
                    "own statistics: there is no inference form to fold")
        return None

    def torch_step(self, walker, node, module, name: str, x):
        from .torch_graph import Refused, Tensor

        x = walker.settle(x, node)
        problem = self.torch_problem(module)
        if problem:
            raise Refused(problem)
        layer = walker.open_layer(x, node)
        if layer is not None and not (layer.relu or layer.pool or layer.skip) and \
                module.num_features == layer.weight.shape[0]:
            fold_batchnorm(layer, module)
            layer.modules.append(name)
            return Tensor(layer.name, x.shape, True), f"folded into {layer.name}"
        source = walker.materialise(x)
        if source.shape[0] != module.num_features:
            raise Refused(f"BatchNorm of {module.num_features} features on a tensor of shape {source.shape}")
        identity = walker.identity_layer(source, name, name)
        fold_batchnorm(identity, module)
        return Tensor(identity.name, source.shape, True), "a per-channel scale layer (it follows no Conv2d/Linear)"

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        from torch import nn

        x = importer.runtime(inputs[0])
        scale, shift, mean, var = (importer.constant(v, ndim=1) for v in inputs[1:5])
        if attrs.get("training_mode", 0) or not importer.unread(node, 1):
            importer.unmapped()  # training: batch statistics
        kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(importer.rank())
        if kind is None:
            importer.unmapped()
        bn = kind(len(scale), eps=float(attrs.get("epsilon", 1e-5)))
        bn.weight, bn.bias = importer.parameter(scale), importer.parameter(shift)
        bn.running_mean.copy_(importer.float32(mean))
        bn.running_var.copy_(importer.float32(var))
        return [importer.module(bn, x)]
