"""VGGNet: a small VGG-style CNN for 1x28x28 MNIST digits whose layers are wide.

It exists for structured pruning. Every layer of LeNet-5 fits one tile of the default 16 x 22
array (at most 16 input channels on its rows, 22 output channels on its columns), so removing
channels there removes MACs but no array passes. Here the convolutions have 32 and 64 channels,
two to four tiles of the array each way, so channel pruning (``radix compress --prune-channels``)
removes whole tiles and shows in the engine's cycles (docs/compression.md).
"""

from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]


class VGGNet(nn.Module):
    """Two VGG blocks of two 3x3 conv-BN-ReLU layers each, 2x2 max pooling after each block, global
    average pooling and a Linear classifier: 28x28 -> 32x28x28 -> 32x14x14 -> 64x14x14 -> 64x7x7 ->
    64 -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(1, 32),
            *_conv_bn_relu(32, 32),
            nn.MaxPool2d(2),
            *_conv_bn_relu(32, 64),
            *_conv_bn_relu(64, 64),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))
