"""MLCommons' own pretrained MLPerf Tiny ResNet-8 (CIFAR-10), converted to PyTorch.

The topology is the built-in ``ResNet8`` (``resnet_v1_eembc()`` with 16 filters, layer for
layer); what differs is where the weights come from (MLCommons' ``pretrainedResnet.h5``,
converted by ``radix_models.convert_mlperf_resnet8``) and the BatchNorm epsilon: Keras'
``BatchNormalization`` default, 1e-3, read from the h5 file's model config (PyTorch's default is
1e-5, and the epsilon is not part of a state_dict, so the factory sets it).

Use it with the CLI as a factory (the input is raw RGB pixels, 0..255 floats, as MLCommons
trains and evaluates it: no scaling, no mean subtraction)::

    radix calibrate models/radix_models/mlperf_resnet8.py:mlperf_resnet8 \\
        --weights models/radix_models/weights/mlperf_resnet8.pt --data calib.npz -o mlperf.radix

or from Python: ``load_mlperf_resnet8()`` (eval mode, committed weights loaded). The model returns
logits: the Keras model's final softmax is left out (monotonic, the argmax is the same; the
converter checks the softmax of these logits against the float TFLite model's output).
"""

from pathlib import Path

import torch
from torch import nn

from radix_models.resnet8 import ResNet8  # absolute: radix loads this file by path as a factory

WEIGHTS = Path(__file__).resolve().parent / "weights" / "mlperf_resnet8.pt"
KERAS_BN_EPSILON = 1e-3  # batch_normalization*: "epsilon": 0.001 in pretrainedResnet.h5's model_config
INPUT_SHAPE = (3, 32, 32)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def mlperf_resnet8() -> nn.Module:
    """The architecture (weights untrained): ``ResNet8`` with Keras' BatchNorm epsilon. Load the
    converted weights with ``--weights`` (CLI) or use :func:`load_mlperf_resnet8`."""
    model = ResNet8()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = KERAS_BN_EPSILON
    return model


def load_mlperf_resnet8(weights=WEIGHTS) -> nn.Module:
    """The converted MLCommons model in eval mode."""
    model = mlperf_resnet8()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
