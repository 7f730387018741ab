"""DigitsNet: a tiny CNN for the 1x8x8 scikit-learn digits, with a BatchNorm to fold."""

from torch import nn


class DigitsNet(nn.Module):
    """Conv-BN-ReLU-pool, conv-ReLU-pool, linear: 8x8 -> 8x4x4 -> 16x2x2 -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))
