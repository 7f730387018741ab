"""Built-in reference models: architectures, committed weights and the data set of each.

``load_builtin(name)`` returns a trained model in eval mode; ``BUILTIN_MODELS`` describes
them. The weights are plain state_dicts written by ``python -m radix_models.train NAME``.
"""

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .digitsnet import DigitsNet
from .lenet5 import LeNet5
from .mlperf_tiny import autoencoder, dscnn, mobilenet_vww
from .resnet8 import ResNet8
from .vggnet import VGGNet

_WEIGHTS = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model: how to build it, where its weights are and what it was trained on."""

    name: str
    factory: Callable[[], nn.Module]
    weights: Path
    dataset: str
    input_shape: tuple[int, ...]


class UnknownModelError(KeyError):
    """A model name that is not in :data:`BUILTIN_MODELS`."""

    def __str__(self) -> str:
        return str(self.args[0])


BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lenet5", LeNet5, _WEIGHTS / "lenet5.pt", "mnist5k", (1, 28, 28)),
        ModelSpec("digitsnet", DigitsNet, _WEIGHTS / "digitsnet.pt", "digits", (1, 8, 8)),
        ModelSpec("resnet8", ResNet8, _WEIGHTS / "resnet8.pt", "mnist32rgb", (3, 32, 32)),
        ModelSpec("vggnet", VGGNet, _WEIGHTS / "vggnet.pt", "mnist5k", (1, 28, 28)),
        # The MLPerf Tiny topologies, trained on offline stand-ins for their data sets
        # (radix.tiny_datasets): the KWS classifier has one output per digit.
        ModelSpec("mobilenet_vww", mobilenet_vww, _WEIGHTS / "mobilenet_vww.pt", "digitwake96", (3, 96, 96)),
        ModelSpec("dscnn", functools.partial(dscnn, classes=10), _WEIGHTS / "dscnn.pt", "mnist49x10", (1, 49, 10)),
        ModelSpec("autoencoder", autoencoder, _WEIGHTS / "autoencoder.pt", "machine640", (640,)),
    )
}


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of a built-in model; :class:`UnknownModelError` if none."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(BUILTIN_MODELS)
        raise UnknownModelError(f"unknown model {name!r}: built-in models are {known}") from None


def load_builtin(name: str) -> nn.Module:
    """Build a built-in model, load its committed weights and return it in eval mode."""
    spec = get_spec(name)
    model = spec.factory()
    model.load_state_dict(torch.load(spec.weights, map_location="cpu", weights_only=True))
    return model.eval()
