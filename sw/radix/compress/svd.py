"""Low-rank factorisation of fully connected (and optionally convolutional) layers by the truncated
SVD, as in Qiu et al. (FPGA 2016, section 5.1, VGG16's FC6 at rank 500).

A Linear ``W`` (``m x n``) with ``W = U S V^T`` becomes two Linear layers, ``n -> r`` without bias
(weights ``sqrt(S_r) V_r^T``) and ``r -> m`` with the bias (weights ``U_r sqrt(S_r)``): two engine
layers. A ``k x k`` Conv2d to ``C_out`` channels becomes a ``k x k`` Conv2d to ``r`` channels (same
stride and padding, no bias) followed by a 1x1 Conv2d to ``C_out``, from the SVD of the weights
flattened to ``C_out x (C_in k k)``. Splitting ``S`` evenly keeps both factors' ranges alike,
which suits their separate fixed-point formats. The rank is ``--svd R`` for every chosen layer, or
per layer the smallest keeping the fraction ``E`` of the squared singular values
(``--svd-energy E``). A layer is factorised only if the pair has fewer weights than the layer,
``r (m + n) < m n``; the others are reported as kept. Fine-tuning follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import CompressionError
from .training import fine_tune, retrace, set_module, weight_layers, zeros_kept


@dataclass(frozen=True, kw_only=True)
class LowRank:
    """``--svd R`` (``rank``) or ``--svd-energy E`` (``energy``), on the Linear layers, the Conv2d
    layers too with ``conv``, or only the layers named in ``layers``."""

    rank: int | None = None
    energy: float | None = None
    conv: bool = False
    layers: tuple[str, ...] = ()

    name = "svd"

    def __post_init__(self):
        if (self.rank is None) == (self.energy is None):
            raise CompressionError("--svd R and --svd-energy E: give exactly one of them")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise CompressionError(f"--svd {self.rank!r}: the rank must be a positive integer")
        if self.energy is not None and (not isinstance(self.energy, (int, float)) or not 0 < self.energy <= 1):
            raise CompressionError(f"--svd-energy {self.energy!r}: the energy fraction must be in (0, 1]")
        if not all(isinstance(name, str) and name for name in self.layers):
            raise CompressionError(f"--svd-layers {self.layers!r}: expected module names")


def matrix_of(layer: nn.Module) -> torch.Tensor:
    """The layer's weights as the matrix the SVD factorises (``out x in``, float64)."""
    return layer.weight.detach().double().reshape(layer.weight.shape[0], -1)


def choose_rank(singular: torch.Tensor, method: LowRank) -> int:
    """``method.rank``, or the smallest rank whose squared singular values reach ``method.energy``."""
    if method.rank is not None:
        return min(method.rank, len(singular))
    energy = torch.cumsum(singular**2, 0) / torch.sum(singular**2)
    return int(torch.searchsorted(energy, torch.tensor(method.energy, dtype=energy.dtype) - 1e-12)) + 1


def factorise(layer: nn.Module, rank: int) -> nn.Sequential:
    """The pair of layers of rank ``rank`` (module docstring); at full rank it computes the layer."""
    u, s, vh = torch.linalg.svd(matrix_of(layer), full_matrices=False)
    root = torch.sqrt(s[:rank])
    first_w = (root[:, None] * vh[:rank]).float()
    second_w = (u[:, :rank] * root[None, :]).float()
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, rank, bias=False)
        second = nn.Linear(rank, layer.out_features, bias=bias)
        shapes = (first_w.shape, second_w.shape)
    else:
        first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                          bias=False, padding_mode=layer.padding_mode)
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=bias)
        shapes = ((rank,) + tuple(layer.weight.shape[1:]), (layer.out_channels, rank, 1, 1))
    with torch.no_grad():
        first.weight.copy_(first_w.reshape(shapes[0]))
        second.weight.copy_(second_w.reshape(shapes[1]))
        if bias:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _eligible(name: str, layer: nn.Module, method: LowRank) -> bool:
    if method.layers:
        return name in method.layers
    if isinstance(layer, nn.Conv2d):
        return method.conv and layer.groups == 1 and layer.dilation == (1, 1)
    return True


def apply(state, method: LowRank, data, settings, *, stage: int) -> dict:
    """Factorise the chosen layers of ``state.module``, then fine-tune; returns the report."""
    layers = weight_layers(state.module)
    names = [name for name, _ in layers]
    unknown = [name for name in method.layers if name not in names]
    if unknown:
        raise CompressionError(f"--svd-layers {', '.join(unknown)}: no such Conv2d/Linear layer "
                               f"(layers: {', '.join(names)})")
    report = {}
    for name, layer in layers:
        if not _eligible(name, layer, method):
            continue
        if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or layer.dilation != (1, 1)):
            raise CompressionError(f"--svd-layers {name}: a grouped or dilated convolution cannot be factorised")
        m, n = matrix_of(layer).shape
        singular = torch.linalg.svdvals(matrix_of(layer))
        rank = choose_rank(singular, method)
        energy = float(torch.sum(singular[:rank] ** 2) / torch.sum(singular**2)) if singular.sum() > 0 else 1.0
        entry = {"shape": [m, n], "rank": rank, "energy": energy, "weights": m * n, "factor_weights": rank * (m + n)}
        if rank * (m + n) >= m * n:
            entry["kept"] = f"rank {rank} would not save weights (needs r < {m * n / (m + n):.1f})"
            report[name] = entry
            continue
        if name in state.sparse:
            state.sparse.discard(name)
            state.warnings.append(f"--svd {name}: the layer was pruned; its factors are dense, so its zeros are gone")
        set_module(state.module, name, factorise(layer, rank))
        entry["factors"] = [f"{name}.0", f"{name}.1"]
        report[name] = entry
    factorised = [name for name, entry in report.items() if "factors" in entry]
    if factorised:
        state.module = retrace(state.module)
        for name in factorised:
            state.rename(name, report[name]["factors"])
            for index, factor in enumerate(report[name]["factors"]):
                state.note(factor, rank=report[name]["rank"], factor_of=f"{name} ({index + 1} of 2)")
    with zeros_kept(state.module, sorted(state.sparse)):
        fine_tune(state.module, data, settings, desc="svd", stage=stage * 100)
    return {"method": "svd", "rank": method.rank, "energy": method.energy, "layers": report}
