"""Trained ternary quantization (Zhu, Han, Mao and Dally, "Trained Ternary Quantization", ICLR 2017).

Each chosen layer keeps full-precision *latent* weights ``w`` (scaled to ``max|w| = 1`` at the
start, as in the paper) and two learned scales ``Wp``, ``Wn`` (initialised to the mean magnitude
of the original weights above and below the threshold). The forward pass uses

    w_t = +Wp  where w >  delta,   -Wn  where w < -delta,   0 elsewhere,   delta = t * max|w|

(``t`` = ``--ttq-threshold``, 0.05 in the paper). The gradients are the paper's eq. 7-8: ``Wp``
gets the sum of the gradients of the weights at ``+Wp`` (``Wn`` minus the sum at ``-Wn``), and the
latent weights get the gradient scaled by ``Wp`` above the threshold, by ``Wn`` below it and
unscaled in between. Weights that an earlier ``--prune`` zeroed stay zero. The first and the last
Conv2d/Linear layer stay full precision by default, as in the paper (``full_precision``). After
fine-tuning each ternary layer holds exactly three float values ``{-Wn, 0, +Wp}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import CompressionError
from .training import fine_tune, weight_layers, zeros_kept

KEEP_CHOICES = ("both", "first", "last", "none")


@dataclass(frozen=True, kw_only=True)
class Ternary:
    """``--ttq``: ternary weights with learned scales; ``threshold`` is ``t``; ``full_precision``
    says which of the first and the last layer stay full precision (``both``, ``first``, ``last``,
    ``none``)."""

    threshold: float = 0.05
    full_precision: str = "both"

    name = "ttq"

    def __post_init__(self):
        if not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold < 1:
            raise CompressionError(f"--ttq-threshold {self.threshold!r}: must be in [0, 1)")
        if self.full_precision not in KEEP_CHOICES:
            raise CompressionError(f"--ttq-full-precision {self.full_precision!r}: choose one of "
                                   f"{', '.join(KEEP_CHOICES)}")


class _Ternarize(torch.autograd.Function):
    """The ternary projection and the paper's gradients (module docstring)."""

    @staticmethod
    def forward(ctx, latent, wp, wn, delta, keep):
        positive = (latent > delta) & keep
        negative = (latent < -delta) & keep
        ctx.save_for_backward(positive, negative, wp, wn, keep)
        zero = torch.zeros((), dtype=latent.dtype)
        return torch.where(positive, wp, torch.where(negative, -wn, zero))

    @staticmethod
    def backward(ctx, grad):
        positive, negative, wp, wn, keep = ctx.saved_tensors
        grad_wp = torch.where(positive, grad, 0).sum().reshape(wp.shape)
        grad_wn = -torch.where(negative, grad, 0).sum().reshape(wn.shape)
        grad_latent = torch.where(positive, wp * grad, torch.where(negative, wn * grad, grad))
        return torch.where(keep, grad_latent, 0), grad_wp, grad_wn, None, None


class TernaryWeight(nn.Module):
    """Parametrization of a layer's weight by latent weights and the learned scales ``wp``, ``wn``."""

    def __init__(self, *, wp: float, wn: float, threshold: float, keep: torch.Tensor):
        super().__init__()
        self.wp = nn.Parameter(torch.tensor(wp))
        self.wn = nn.Parameter(torch.tensor(wn))
        self.threshold = threshold
        self.register_buffer("keep", keep.to(torch.bool))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        delta = self.threshold * latent.detach().abs().max()
        return _Ternarize.apply(latent, self.wp, self.wn, delta, self.keep)


def ternary_layers(names: list[str], full_precision: str) -> list[str]:
    """The layers that become ternary: all but the first and/or last, as ``full_precision`` says."""
    skip = set()
    if full_precision in ("both", "first"):
        skip.add(names[0])
    if full_precision in ("both", "last"):
        skip.add(names[-1])
    return [name for name in names if name not in skip]


def apply(state, method: Ternary, data, settings, *, stage: int) -> dict:
    """Make the chosen layers of ``state.module`` ternary and fine-tune; returns the report."""
    layers = dict(weight_layers(state.module))
    chosen = ternary_layers(list(layers), method.full_precision)
    if not chosen:
        raise CompressionError(f"--ttq with --ttq-full-precision {method.full_precision}: the model's "
                               f"{len(layers)} layer(s) all stay full precision")
    for name in chosen:
        layer = layers[name]
        weight = layer.weight.detach()
        peak = float(weight.abs().max())
        if peak == 0:
            raise CompressionError(f"--ttq: layer {name} has only zero weights")
        delta = method.threshold * peak
        keep = weight != 0 if name in state.sparse else torch.ones_like(weight, dtype=torch.bool)
        above, below = weight[(weight > delta) & keep], weight[(weight < -delta) & keep]
        wp = float(above.mean()) if above.numel() else delta
        wn = float(-below.mean()) if below.numel() else delta
        with torch.no_grad():
            layer.weight.div_(peak)
        parametrize.register_parametrization(layer, "weight", TernaryWeight(wp=wp, wn=wn, threshold=method.threshold,
                                                                            keep=keep))
    with zeros_kept(state.module, sorted(state.sparse - set(chosen))):
        fine_tune(state.module, data, settings, desc="ttq", stage=stage * 100)
    report = {}
    for name in chosen:
        layer = layers[name]
        scales = layer.parametrizations.weight[0]
        wp, wn = float(scales.wp.detach()), float(scales.wn.detach())
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        zeros = int((layer.weight == 0).sum())
        report[name] = {"wp": wp, "wn": wn, "sparsity": zeros / layer.weight.numel()}
        state.note(name, ternary={"wp": wp, "wn": wn})
        state.quantized.add(name)
    return {"method": "ttq", "threshold": method.threshold, "full_precision": method.full_precision,
            "layers": report, "full_precision_layers": [name for name in layers if name not in chosen]}
