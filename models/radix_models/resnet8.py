"""ResNet-8 for 3x32x32 images: the MLPerf Tiny image-classification model.

The topology of ``resnet_v1_eembc()`` in the MLPerf Tiny reference
(``benchmark/training/image_classification/keras_model.py`` of mlcommons/tiny): a 16-filter
stem and three residual stacks of 16, 32 and 64 filters, 8x8 average pooling and a dense
layer. Keras ``padding="same"`` on a stride-2 3x3 convolution of an even map pads one zero
row and column at the bottom and right only, hence the explicit ``ZeroPad2d((0, 1, 0, 1))``;
the stride-2 1x1 projection shortcuts need no padding and, as in the reference, have a bias
and no BatchNorm. Kernels get Keras' ``he_normal`` initialisation (biases zero). The
reference's softmax is left to the loss: the model returns logits.
"""

import math

import torch
from torch import nn

# Keras' he_normal: a normal truncated at 2 standard deviations, its stddev divided by 0.8796
# (the stddev of a unit normal truncated there) so that the variance is 2 / fan_in.
_TRUNCATED_STD = 0.87962566103423978


def _he_normal_(weight: torch.Tensor) -> None:
    std = math.sqrt(2.0 / weight[0].numel()) / _TRUNCATED_STD
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _conv_bn(in_channels: int, out_channels: int, *, stride: int) -> nn.Sequential:
    """3x3 convolution and BatchNorm, padded as Keras ``"same"`` pads for ``stride``."""
    if stride == 1:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels)
        )
    return nn.Sequential(
        nn.ZeroPad2d((0, 1, 0, 1)),
        nn.Conv2d(in_channels, out_channels, 3, stride=stride),
        nn.BatchNorm2d(out_channels),
    )


class ResidualStack(nn.Module):
    """Conv-BN-ReLU, conv-BN, plus the shortcut, ReLU.

    The shortcut is the identity when ``stride`` is 1 and ``in_channels == out_channels``,
    otherwise a strided 1x1 convolution with bias (no BatchNorm, as in the reference).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResidualStack: stride must be 1 or 2, got {stride}")
        self.conv1 = _conv_bn(in_channels, out_channels, stride=stride)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv_bn(out_channels, out_channels, stride=1)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.conv2(self.relu1(self.conv1(x)))
        out = out + self.shortcut(x)
        return self.relu2(out)


class ResNet8(nn.Module):
    """ResNet-8: 3x32x32 -> 16x32x32 -> 16x32x32 -> 32x16x16 -> 64x8x8 -> 64 -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.stack1 = ResidualStack(16, 16, stride=1)
        self.stack2 = ResidualStack(16, 32, stride=2)
        self.stack3 = ResidualStack(32, 64, stride=2)
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, 10)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _he_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
