"""The MLPerf Tiny reference topologies beside ResNet-8, as Keras/TFLite define them, in PyTorch.

Each factory draws seeded random weights and random BatchNorm statistics: the bare topology, for
what does not depend on training (engine cycles, the placement). The built-ins ``mobilenet_vww``,
``dscnn`` (10 classes) and ``autoencoder`` are these factories with weights trained on offline
stand-ins for Visual Wake Words, Speech Commands and ToyADMOS (models/README.md); users bring
MLCommons' trained weights through ``--weights`` or an ONNX export.

* :func:`mobilenet_vww`: Visual Wake Words, MobileNetV1 at width 0.25 on 96x96x3: a 3x3 stride-2
  stem to 8 channels, 13 depthwise-separable blocks (depthwise 3x3, pointwise 1x1, BatchNorm and
  ReLU after each), Keras's "same" padding of a stride-2 layer (one row and column after), a
  global average pool and a 2-way classifier: 7.49 M MACs.
* :func:`dscnn`: Keyword Spotting, DS-CNN on a 49x10 MFCC map: a 10x4 stride-2 convolution to 64
  channels ("same": 4 rows above, 5 below, 1 column each side), four depthwise-separable blocks of
  64 channels, a 25x5 average pool and a 12-way classifier.
* :func:`autoencoder`: Anomaly Detection, a dense autoencoder 640 -> 128 x4 -> 8 -> 128 x4 -> 640,
  BatchNorm and ReLU after every layer but the last.
"""

from __future__ import annotations

import torch
from torch import nn

# (input channels, output channels, stride) of MobileNetV1's 13 blocks, at width 1.0
_MOBILENET_BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
    [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random BatchNorm statistics (the weights are PyTorch's seeded initialisation)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.data.copy_(0.2 * torch.randn(n, generator=generator))
    return model.eval()


def _conv_bn_relu(c_in: int, c_out: int, kernel, stride: int, *, groups: int = 1, same_pad=None) -> list[nn.Module]:
    """A convolution with Keras padding: "same" at stride 1 (``kernel // 2`` around), or the
    explicit ``same_pad`` (left, right, top, bottom) of a strided layer; then BatchNorm and ReLU."""
    layers: list[nn.Module] = []
    if same_pad is not None:
        layers.append(nn.ZeroPad2d(same_pad))
        padding = 0
    else:
        padding = tuple(k // 2 for k in ((kernel, kernel) if isinstance(kernel, int) else kernel))
    layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(c_out),
               nn.ReLU()]
    return layers


def mobilenet_vww(*, alpha: float = 0.25, classes: int = 2, seed: int = 0) -> nn.Module:
    """MLPerf Tiny's Visual Wake Words topology (96x96x3 input): MobileNetV1 at width ``alpha``."""
    torch.manual_seed(seed)
    width = lambda c: max(8, int(c * alpha))  # noqa: E731  (Keras: int(filters * alpha))
    layers = _conv_bn_relu(3, width(32), 3, 2, same_pad=(0, 1, 0, 1))
    for c_in, c_out, stride in _MOBILENET_BLOCKS:
        c_in, c_out = width(c_in), width(c_out)
        layers += _conv_bn_relu(c_in, c_in, 3, stride, groups=c_in, same_pad=(0, 1, 0, 1) if stride == 2 else None)
        layers += _conv_bn_relu(c_in, c_out, 1, 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width(1024), classes)]
    return _randomise(nn.Sequential(*layers), seed)


def dscnn(*, channels: int = 64, classes: int = 12, seed: int = 0) -> nn.Module:
    """MLPerf Tiny's Keyword Spotting topology (1x49x10 MFCC input): DS-CNN."""
    torch.manual_seed(seed)
    layers = _conv_bn_relu(1, channels, (10, 4), 2, same_pad=(1, 1, 4, 5))
    for _ in range(4):
        layers += _conv_bn_relu(channels, channels, 3, 1, groups=channels)
        layers += _conv_bn_relu(channels, channels, 1, 1)
    layers += [nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(channels, classes)]
    return _randomise(nn.Sequential(*layers), seed)


def autoencoder(*, inputs: int = 640, hidden: int = 128, bottleneck: int = 8, seed: int = 0) -> nn.Module:
    """MLPerf Tiny's Anomaly Detection topology (a 640-vector input): a dense autoencoder."""
    torch.manual_seed(seed)
    sizes = [inputs] + [hidden] * 4 + [bottleneck] + [hidden] * 4
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(hidden, inputs))
    return _randomise(nn.Sequential(*layers), seed)
