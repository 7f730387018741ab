"""Helpers the tests share for building small models."""

import torch
from torch import nn


def with_batchnorm_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode, its BatchNorm2d statistics and scales drawn away from the identity
    (seeded), so that folding them into the convolutions is visible."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()
