"""The network input written space-to-depth, so a strided first convolution runs at stride 1.

A first layer with few input channels and a stride (MobileNet's 3-channel 3x3 stride-2 stem,
DS-CNN's 1-channel 10x4 stride-2 front) uses few of the array's rows and, reading its whole input
map for a quarter of its pixels, streams far more words than it computes with. The driver writes
the input anyway, so it writes it in ``SH x SW`` blocks instead: pixel ``(i, j)`` of the written
tensor holds the ``C * SH * SW`` values ``x[c, i * SH + dy, j * SW + dx]`` as channel
``(c * SH + dy) * SW + dx`` (zero beyond the map). Every tap ``(u, v)`` of the original kernel
then falls on tap ``(a, b) = (floor((u - pad_top) / SH), floor((v - pad_left) / SW))`` (shifted to
start at 0) of a stride-1 convolution, in channel ``(c, dy, dx)`` with ``dy = (u - pad_top) mod
SH``, ``dx = (v - pad_left) mod SW``: the same products, the same sums, bit for bit, with zero
weights where no original tap lands (a zero product adds nothing, docs/arithmetic.md §7).

Nothing is duplicated (this is a reordering of the bytes the driver writes, not an im2col copy),
and the engine is unchanged: only the placement's copy of the first layer and the driver's input
packing see the blocks. The program keeps its layers as calibrated.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import ops
from .engine_spec import EngineConfig
from .golden import KERNEL_RANGE
from .program import INPUT, Layer, Program


@dataclasses.dataclass(frozen=True)
class SpaceToDepth:
    """The input's block layout for a program's first layer (see the module)."""

    block: tuple[int, int]  # (SH, SW)
    in_shape: tuple[int, int, int]  # the program's (C, H, W)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The written tensor's ``(C * SH * SW, ceil(H / SH), ceil(W / SW))``."""
        (sh, sw), (c, h, w) = self.block, self.in_shape
        return c * sh * sw, -(-h // sh), -(-w // sw)

    def images(self, x: np.ndarray) -> np.ndarray:
        """Images ``(N, C, H, W)`` in the block layout ``(N, C * SH * SW, H', W')``."""
        (sh, sw), (c, h, w) = self.block, self.in_shape
        _, hb, wb = self.shape
        padded = np.zeros((x.shape[0], c, hb * sh, wb * sw), dtype=x.dtype)
        padded[:, :, :h, :w] = x
        blocks = padded.reshape(x.shape[0], c, hb, sh, wb, sw).transpose(0, 1, 3, 5, 2, 4)
        return blocks.reshape(x.shape[0], c * sh * sw, hb, wb)

    def image(self, blocks: np.ndarray) -> np.ndarray:
        """One image ``(C, H, W)`` back from its block layout ``(C * SH * SW, H', W')``."""
        (sh, sw), (c, h, w) = self.block, self.in_shape
        _, hb, wb = self.shape
        full = blocks.reshape(c, sh, sw, hb, wb).transpose(0, 3, 1, 4, 2).reshape(c, hb * sh, wb * sw)
        return full[:, :h, :w]

    def layer(self, layer: Layer) -> Layer:
        """The stride-1 convolution over the block layout that computes ``layer`` exactly."""
        (sh, sw), c = self.block, self.in_shape[0]
        kh, kw = layer.kernel
        top, left, _, _ = layer.padding
        rows = _taps(kh, top, sh)
        cols = _taps(kw, left, sw)
        c_out = layer.weights.shape[0]
        weights = np.zeros((c_out, c, sh, sw, len(rows), len(cols)), dtype=layer.weights.dtype)
        for u in range(kh):
            a, dy = divmod(u - top, sh)
            for v in range(kw):
                b, dx = divmod(v - left, sw)
                weights[:, :, dy, dx, a - rows[0], b - cols[0]] = layer.weights[:, :, u, v]
        _, hb, wb = self.shape
        geometry = layer.geometry()
        out_h, out_w = geometry.out_h, geometry.out_w
        pad = (-rows[0], -cols[0], out_h - 1 + len(rows) - hb + rows[0], out_w - 1 + len(cols) - wb + cols[0])
        return dataclasses.replace(layer, in_shape=self.shape, kernel=(len(rows), len(cols)), stride=(1, 1),
                                   padding=pad, weights=weights.reshape(c_out, c * sh * sw, len(rows), len(cols)))


def _taps(kernel: int, pad: int, stride: int) -> list[int]:
    """The block offsets ``floor((u - pad) / stride)`` the taps ``u`` of one dimension reach."""
    return list(range((0 - pad) // stride, (kernel - 1 - pad) // stride + 1))


def plan(program: Program, config: EngineConfig) -> SpaceToDepth | None:
    """The block layout for ``program``'s input, or None where it does not apply: the input must
    feed exactly one layer, as its main input, a dense (ungrouped) strided convolution whose
    ``C * SH * SW`` channels still fit one input tile of ``rows`` lanes (so no pass is added) and
    whose stride-1 twin needs no padding beyond the map it reads."""
    readers = [layer for layer in program.layers if INPUT in layer.inputs]
    if len(readers) != 1 or len(program.input_shape) != 3:
        return None
    layer = readers[0]
    if layer.operation is not ops.CONVOLUTION or layer.inputs[0] != INPUT or layer.inputs.count(INPUT) != 1:
        return None
    (sh, sw), (c, _, _) = layer.stride, program.input_shape
    if (sh, sw) == (1, 1) or c * sh * sw > config.rows:
        return None
    folded = SpaceToDepth(block=(sh, sw), in_shape=tuple(program.input_shape))
    twin = folded.layer(layer)
    if min(twin.padding) < 0 or max(twin.kernel) > KERNEL_RANGE[1]:
        return None
    return folded


def rewrite(program: Program, folded: SpaceToDepth) -> Program:
    """``program`` as the engine runs it: its input in the block layout, its first layer the
    stride-1 twin (:meth:`SpaceToDepth.layer`), every other layer as it is."""
    layers = [folded.layer(layer) if INPUT in layer.inputs else layer for layer in program.layers]
    return dataclasses.replace(program, input_shape=folded.shape, layers=layers)
