"""Kernel columns folded into the array's rows for a layer of few input channels (docs/engine.md,
"Few-channel layers").

A convolution with ``C`` input channels fills ``C`` of the array's ``rows`` rows. Folded over
``F`` taps, the engine's input buffer stores each pixel's ``C`` channels in lane groups
``g = 0 .. F - 1``, group ``g`` at the pixel ``g`` columns to its left (radix_hw.input_buffer),
so one pixel group read at column ``x`` holds the channels of columns ``x .. x + F - 1``: one pass
multiplies ``F`` kernel columns at once, and a ``KH x KW`` kernel takes ``KH * ceil(KW / F)``
passes instead of ``KH * KW``. The host writes the input as before; the windows are formed on
chip. Only the weights change: the job's weight rows are those of a ``KH x ceil(KW / F)`` kernel
over ``rows`` lanes, lane ``g * C + c`` of folded column ``v`` holding the weight of channel
``c`` at kernel column ``v * F + g`` (zero past ``KW``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .engine_spec import FOLD_SPAN, EngineConfig


@dataclass(frozen=True)
class TapFold:
    """``taps`` kernel columns of ``lanes`` channels each in one pass of a ``kernel_w``-column kernel."""

    lanes: int
    taps: int
    kernel_w: int  # the original kernel's columns

    @property
    def folded_kernel_w(self) -> int:
        """Tap columns of the folded job: ``ceil(KW / F)``."""
        return -(-self.kernel_w // self.taps)

    def fields(self) -> dict[str, int]:
        """The job's command fields that differ from an unfolded job's."""
        return dict(kernel_w=self.folded_kernel_w, fold_taps=self.taps, fold_lanes=self.lanes)

    def weights(self, physical: np.ndarray) -> np.ndarray:
        """The folded job's ``(C_out, rows, KH, ceil(KW/F))`` weights from the layer's
        ``(C_out, rows, KH, KW)`` ones over the job's lanes (channel ``c`` in lane ``c``)."""
        c_out, rows, kh, kw = physical.shape
        if kw != self.kernel_w or np.any(physical[:, self.lanes :]):
            raise ValueError(f"weights of shape {physical.shape} are not {self.lanes} channels of a "
                             f"{kh}x{self.kernel_w} kernel")
        columns = self.folded_kernel_w * self.taps
        padded = np.zeros((c_out, self.lanes, kh, columns), dtype=physical.dtype)
        padded[..., :kw] = physical[:, : self.lanes]
        grouped = padded.reshape(c_out, self.lanes, kh, self.folded_kernel_w, self.taps)
        folded = np.zeros((c_out, rows, kh, self.folded_kernel_w), dtype=physical.dtype)
        folded[:, : self.lanes * self.taps] = grouped.transpose(0, 4, 1, 2, 3).reshape(
            c_out, self.taps * self.lanes, kh, self.folded_kernel_w)
        return folded


def plan(*, channels: int, lanes_in_order: bool, in_ch: int, kernel_w: int, config: EngineConfig) -> TapFold | None:
    """The fold for a job over one input tile (``in_ch`` lanes) whose ``channels`` input channels
    sit in lanes ``0 .. channels - 1`` (``lanes_in_order``), or None when folding saves no pass.

    ``F`` is the fewest passes' smallest fold: ``ceil(KW / F)`` least, with ``F * C <= rows``
    and ``ceil(KW / F) * F <= FOLD_SPAN`` (the engine's limits)."""
    if in_ch != config.rows or not lanes_in_order or not 1 <= channels <= config.rows // 2 or kernel_w < 2:
        return None
    best = None
    for taps in range(2, min(config.rows // channels, kernel_w) + 1):
        passes = math.ceil(kernel_w / taps)
        if passes * taps <= FOLD_SPAN and (best is None or passes < best[0]):
            best = (passes, taps)
    if best is None or best[0] >= kernel_w:
        return None
    return TapFold(lanes=channels, taps=best[1], kernel_w=kernel_w)
