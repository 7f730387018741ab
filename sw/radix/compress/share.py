"""Trained quantization with weight sharing (Han, Mao and Dally, "Deep Compression", ICLR 2016,
section 3).

Per Conv2d/Linear layer, the nonzero weights are clustered by 1-D k-means into ``2^B`` clusters
(``--share B``) with the paper's *linear* initialisation: centroids spaced evenly between the
smallest and the largest weight. Clusters left empty (pruning empties the middle of the range) are
dropped, so a codebook may hold fewer than ``2^B`` values. The layer's weights then *are* the
centroids of their clusters (zeros stay zero) and fine-tuning trains the centroids: each gets the
sum of the gradients of its members (the gather's backward pass), as in the paper's figure 3.
Storage (indices, Huffman coding) is :mod:`radix.compress.storage`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from . import CompressionError
from .training import fine_tune, weight_layers

KMEANS_ITERATIONS = 100


@dataclass(frozen=True, kw_only=True)
class Share:
    """``--share B``: ``2^bits`` shared weights per layer at most."""

    bits: int

    name = "share"

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise CompressionError(f"--share {self.bits!r}: the codebook bits must be an integer 1..8")


def kmeans_1d(values, clusters: int, *, iterations: int = KMEANS_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means of scalar ``values`` from the linear initialisation; returns ``(centroids,
    assignment)``. A value goes to the nearest centroid (the lower one on a tie); an empty cluster
    keeps its centroid; it stops when no assignment changes or after ``iterations`` rounds.
    Centroids stay sorted (each is the mean of a contiguous run of the sorted values)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or clusters < 1:
        raise ValueError(f"k-means of {values.size} values into {clusters} clusters")
    centroids = np.linspace(values.min(), values.max(), clusters)
    assignment = _nearest(values, centroids)
    for _ in range(iterations):
        sums = np.bincount(assignment, weights=values, minlength=clusters)
        counts = np.bincount(assignment, minlength=clusters)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        updated = _nearest(values, centroids)
        if np.array_equal(updated, assignment):
            break
        assignment = updated
    return centroids, assignment


def _nearest(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``centroids`` (the lower on a tie)."""
    above = np.clip(np.searchsorted(centroids, values), 1, max(len(centroids) - 1, 1))
    below = above - 1
    if len(centroids) == 1:
        return np.zeros(values.size, dtype=np.int64)
    pick_above = np.abs(centroids[above] - values) < np.abs(values - centroids[below])
    return np.where(pick_above, above, below).astype(np.int64)


class SharedWeight(nn.Module):
    """Parametrization of a layer's weight by a trainable codebook: ``weight = centroids[index]``
    where ``keep``, zero elsewhere."""

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, keep: torch.Tensor):
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("index", index)
        self.register_buffer("keep", keep.to(torch.bool))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return torch.where(self.keep, self.centroids[self.index], torch.zeros((), dtype=original.dtype))


def codebook_for(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(centroids, index, keep)`` of a layer: k-means of its nonzero weights, empty clusters dropped."""
    keep = weight != 0
    centroids, assignment = kmeans_1d(weight[keep].double().numpy(), 2**bits)
    used = np.unique(assignment)
    remap = np.zeros(len(centroids), dtype=np.int64)
    remap[used] = np.arange(len(used))
    index = torch.zeros(weight.shape, dtype=torch.int64)
    index[keep] = torch.from_numpy(remap[assignment])
    return torch.from_numpy(centroids[used]).to(weight.dtype), index, keep


def apply(state, method: Share, data, settings, *, stage: int) -> dict:
    """Share the weights of every layer of ``state.module`` and fine-tune the centroids; returns the report."""
    layers = weight_layers(state.module)
    for name, layer in layers:
        if torch.count_nonzero(layer.weight) == 0:
            raise CompressionError(f"--share: layer {name} has only zero weights")
        centroids, index, keep = codebook_for(layer.weight.detach(), method.bits)
        parametrize.register_parametrization(layer, "weight", SharedWeight(centroids, index, keep))
    fine_tune(state.module, data, settings, desc="share", stage=stage * 100)
    report = {}
    for name, layer in layers:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        values = torch.unique(layer.weight[layer.weight != 0])
        report[name] = {"codebook": int(values.numel()), "max": 2**method.bits}
        state.note(name, codebook=int(values.numel()))
        state.quantized.add(name)
    state.huffman = True
    return {"method": "share", "bits": method.bits, "layers": report}
