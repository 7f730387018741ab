"""Magnitude pruning with per-layer sensitivity, iterative prune and fine-tune (Han, Pool, Tran and
Dally, "Learning both Weights and Connections for Efficient Neural Networks", NIPS 2015).

1. **Sensitivity**: each Conv2d/Linear layer alone is pruned to the sparsities of
   :data:`SENSITIVITY_GRID` (its smallest-magnitude weights set to zero) and the increase of the
   cross-entropy on the validation images is measured; its running maximum is the layer's
   sensitivity curve (linear between the grid points).
2. **Allocation**: one tolerated loss increase ``tau`` for every layer gives each the largest
   sparsity whose sensitivity stays within ``tau``; ``tau`` is bisected so that the layers
   together reach the requested sparsity exactly (counted in weights), so sensitive layers keep
   more of their weights.
3. **Iterative pruning**: in ``steps`` rounds the layers approach their sparsity geometrically
   (round ``i`` prunes layer ``l`` to ``1 - (1 - s_l)^(i/steps)``), each round followed by
   fine-tuning in which pruned weights are held at zero (:class:`radix.compress.training.ZeroMask`).
4. **Dead neurons** (the paper's section 3.4): after each round's pruning, channels left with no
   input or no output connections are removed, exactly
   (:func:`radix.compress.channels.remove_dead`).

Biases are not pruned (as in the paper). On the engine the zeros save storage, not cycles: the
systolic array multiplies every weight (docs/compression.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import CompressionError
from .channels import remove_dead
from .training import evaluate, fine_tune, weight_layers, zeros_kept

SENSITIVITY_GRID = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.995)
MAX_SPARSITY = 0.99


@dataclass(frozen=True, kw_only=True)
class Prune:
    """``--prune S``: a fraction ``sparsity`` of all Conv2d/Linear weights zero, in ``steps`` rounds."""

    sparsity: float
    steps: int = 5

    name = "prune"

    def __post_init__(self):
        if not isinstance(self.sparsity, (int, float)) or not 0 < self.sparsity <= MAX_SPARSITY:
            raise CompressionError(f"--prune {self.sparsity!r}: the sparsity must be in (0, {MAX_SPARSITY}]")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 20:
            raise CompressionError(f"--prune-steps {self.steps!r}: must be an integer 1..20")


def magnitude_zeros(weight: torch.Tensor, zeros: int) -> torch.Tensor:
    """A copy of ``weight`` with its ``zeros`` smallest-magnitude entries zero (ties: the first in
    C order; entries already zero count among them)."""
    flat = weight.detach().reshape(-1)
    order = torch.from_numpy(np.argsort(np.abs(flat.numpy()), kind="stable"))
    pruned = flat.clone()
    pruned[order[:zeros]] = 0
    return pruned.reshape(weight.shape)


def sensitivity(module, layers, data) -> dict[str, np.ndarray]:
    """Per layer, the validation loss increase at each sparsity of :data:`SENSITIVITY_GRID`,
    as a running maximum (a nondecreasing curve that starts at 0)."""
    base, _ = evaluate(module, data.x_validation, data.y_validation)
    curves = {}
    for name, layer in layers:
        original = layer.weight.detach().clone()
        losses = []
        for sparsity in SENSITIVITY_GRID:
            with torch.no_grad():
                layer.weight.copy_(magnitude_zeros(original, round(sparsity * original.numel())))
            losses.append(evaluate(module, data.x_validation, data.y_validation)[0] - base)
            with torch.no_grad():
                layer.weight.copy_(original)
        curves[name] = np.maximum.accumulate(np.maximum(np.asarray(losses), 0.0))
    return curves


def _sparsity_within(curve: np.ndarray, tau: float) -> float:
    """The largest sparsity whose (piecewise linear) sensitivity is at most ``tau``."""
    grid = np.asarray(SENSITIVITY_GRID)
    if tau < 0:
        return 0.0
    last = int(np.flatnonzero(curve <= tau)[-1])
    if last == len(grid) - 1:
        return float(grid[-1])
    rise = curve[last + 1] - curve[last]
    return float(grid[last] + (tau - curve[last]) / rise * (grid[last + 1] - grid[last]))


def allocate(curves: dict[str, np.ndarray], sizes: dict[str, int], sparsity: float) -> dict[str, int]:
    """Zeros per layer: ``round(sparsity * total)`` in all, by one tolerated loss increase (module
    docstring); a layer never exceeds the grid's last sparsity."""
    names = list(curves)
    total = sum(sizes.values())
    wanted = round(sparsity * total)

    def spread(tau: float) -> np.ndarray:
        return np.array([_sparsity_within(curves[n], tau) for n in names])

    def zeros(fractions: np.ndarray) -> float:
        return float(np.sum(fractions * np.array([sizes[n] for n in names])))

    # at hi every layer is at the grid's last sparsity, above MAX_SPARSITY: enough zeros
    lo, hi = -1.0, float(max(c[-1] for c in curves.values()))
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if zeros(spread(mid)) < wanted else (lo, mid)
    below, above = spread(lo), spread(hi)
    gap = zeros(above) - zeros(below)
    blend = 1.0 if gap <= 0 else (wanted - zeros(below)) / gap
    fractions = below + blend * (above - below)
    counts = {n: int(round(f * sizes[n])) for n, f in zip(names, fractions)}
    largest = max(names, key=lambda n: sizes[n])
    counts[largest] = min(sizes[largest], max(0, counts[largest] + wanted - sum(counts.values())))
    return counts


def apply(state, method: Prune, data, settings, *, stage: int) -> dict:
    """Prune ``state.module`` as ``method`` says, fine-tuning after every round; returns the report.

    After each round's pruning the channels left without input or output connections are removed
    (:func:`radix.compress.channels.remove_dead`), so sparsities count against the weights the
    layers had before: a removed weight counts as a zero."""
    layers = weight_layers(state.module)
    sizes = {name: layer.weight.numel() for name, layer in layers}
    curves = sensitivity(state.module, layers, data)
    kept = {name: sizes[name] - zeros for name, zeros in allocate(curves, sizes, method.sparsity).items()}
    removed = {}
    for step in range(1, method.steps + 1):
        for name, layer in weight_layers(state.module):
            share = (kept[name] / sizes[name]) ** (step / method.steps)
            keep = kept[name] if step == method.steps else round(share * sizes[name])
            with torch.no_grad():
                layer.weight.copy_(magnitude_zeros(layer.weight, max(0, layer.weight.numel() - keep)))
            if torch.count_nonzero(layer.weight) < layer.weight.numel():
                state.sparse.add(name)
        for name, entry in remove_dead(state).items():
            removed.setdefault(name, {"channels": entry["channels"]})["kept"] = entry["kept"]
        with zeros_kept(state.module, sorted(state.sparse)):
            fine_tune(state.module, data, settings, desc=f"prune round {step}/{method.steps}",
                      stage=stage * 100 + step)
    for name, entry in removed.items():
        state.note(name, channels=f"{entry['kept']}/{entry['channels']}")
    nonzero = {name: int(torch.count_nonzero(layer.weight)) for name, layer in weight_layers(state.module)}
    return {
        "method": "prune", "requested": method.sparsity, "steps": method.steps,
        "sparsity": 1 - sum(nonzero.values()) / sum(sizes.values()),
        "layers": {name: {"weights": sizes[name], "nonzero": nonzero[name], "sparsity": 1 - nonzero[name] / sizes[name],
                          "sensitivity": [round(float(v), 5) for v in curves[name]]} for name in sizes},
        "sensitivity_grid": list(SENSITIVITY_GRID), "dead_channels_removed": removed,
    }
