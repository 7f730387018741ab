"""Job geometry: whether a layer fits an engine build, and how it splits into jobs (numpy-free).

One rule, used by ``radix check`` and calibration (through :mod:`radix.ingest`), by the driver
before it sends anything and by the testbenches: a layer runs as bands of output rows, each band
one job whose input rows fit the input buffer and whose computed pixels fit one accumulator bank;
every output tile's weight rows must fit one weight bank. The limits named in the messages are the
engine's build registers (``radix.engine_spec``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .engine_spec import FIELD_MAX, EngineConfig, computed_map, pair

REGISTER_FIELD_MAX = FIELD_MAX


class LayerFitError(ValueError):
    """A layer does not fit an engine build; the message names the limit."""


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """What the fit rule needs to know of a layer.

    ``kind`` is ``"conv"`` or ``"fc"``; ``c_in`` is the reduction's channels (``in_features`` for a
    fully connected layer); ``height``/``width`` the input map (1 for fully connected layers);
    ``kernel`` ``(KH, KW)`` and ``stride`` ``(SH, SW)``; ``out_h``/``out_w`` the convolution's
    output before pooling; ``pad_top`` the padding above the map (bands start below it);
    ``groups`` the convolution's groups (each output tile's jobs then read only the input tiles
    its groups need, :func:`grouped_input_lanes`).
    """

    kind: str
    c_in: int
    c_out: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int
    pool: bool
    groups: int = 1

    def input_rows(self, first_row: int, rows: int) -> tuple[int, int]:
        """Input rows ``[y0, y1)`` that output rows ``first_row .. first_row + rows`` read."""
        y_start = first_row * self.stride[0] - self.pad_top
        return max(0, y_start), min(self.height, y_start + (rows - 1) * self.stride[0] + self.kernel[0])


def geometry_of(*, kind: str, in_shape: tuple, c_out: int, kernel, stride, padding: tuple,
                pool: bool, groups: int = 1) -> Geometry:
    """The :class:`Geometry` of a conv or fc layer given as the program and ingestion describe it
    (``in_shape`` per image, ``kernel`` and ``stride`` one int or ``(vertical, horizontal)``,
    ``padding`` = ``(top, left, bottom, right)``)."""
    if kind == "fc":
        return Geometry(kind="fc", c_in=math.prod(in_shape), c_out=c_out, height=1, width=1, kernel=(1, 1),
                        stride=(1, 1), pad_top=0, pad_left=0, out_h=1, out_w=1, pool=False)
    (kh, kw), (sh, sw) = pair(kernel, "kernel"), pair(stride, "stride")
    top, left, bottom, right = padding
    c_in, h, w = in_shape
    return Geometry(kind="conv", c_in=c_in, c_out=c_out, height=h, width=w, kernel=(kh, kw), stride=(sh, sw),
                    pad_top=top, pad_left=left, out_h=(h + top + bottom - kh) // sh + 1,
                    out_w=(w + left + right - kw) // sw + 1, pool=pool, groups=groups)


def grouped_input_lanes(geometry: Geometry, config: EngineConfig) -> int:
    """At most how many input lanes one output tile's job of a grouped convolution reads: the
    input channels of the groups its ``cols`` output channels belong to, spread over the canonical
    lanes of at most two output tiles of the input's producer, widened to whole input tiles at
    both ends (the placement reads exactly the input tiles it needs, never more than this)."""
    g, cfg = geometry, config
    per_group_in, per_group_out = g.c_in // g.groups, g.c_out // g.groups
    channels = min(g.c_in, (math.ceil(cfg.cols / per_group_out) + 1) * per_group_in)
    gaps = (math.ceil(channels / cfg.cols) + 1) * (cfg.tile_lanes - cfg.cols)
    words = math.ceil((channels + gaps) / cfg.lanes_per_word) + 2 * cfg.in_words
    return min(math.ceil(g.c_in / cfg.rows), math.ceil(words / cfg.in_words)) * cfg.rows


def summed_job_fits(*, c_in: int, height: int, width: int, c_out: int, config: EngineConfig) -> bool:
    """Whether a summed job (a 1x1 convolution whose pixels' products sum into one output pixel,
    docs/engine.md "Summed jobs") over a ``c_in x height x width`` map fits one job."""
    geometry = geometry_of(kind="conv", in_shape=(c_in, height, width), c_out=c_out, kernel=1, stride=1,
                           padding=(0, 0, 0, 0), pool=False)
    try:
        return band_rows(geometry, config) >= height
    except LayerFitError:
        return False


def band_rows(geometry: Geometry, config: EngineConfig) -> int:
    """Output rows per job; raises :class:`LayerFitError` naming the limit when not even one fits.

    With pooling the bands hold an even number of rows, so every band pools whole 2x2 windows.
    """
    g, cfg = geometry, config
    t_in = math.ceil((g.c_in if g.groups == 1 else grouped_input_lanes(g, cfg)) / cfg.rows)
    (kh, kw), sh = g.kernel, g.stride[0]
    weight_rows = t_in * kh * kw * cfg.rows
    if weight_rows > cfg.wt_depth:
        raise LayerFitError(f"{weight_rows} weight rows per output tile exceed the engine's WT_DEPTH {cfg.wt_depth} "
                            f"(C_in={g.c_in}, kernel {kh}x{kw})")
    if g.kind == "fc":
        if t_in > cfg.in_depth:
            raise LayerFitError(f"{t_in} input pixel groups exceed the engine's IN_DEPTH {cfg.in_depth}")
        if max(g.c_in, g.c_out) > REGISTER_FIELD_MAX:
            raise LayerFitError(f"a dimension exceeds the {REGISTER_FIELD_MAX.bit_length()}-bit layer registers")
        return 1
    if max(g.c_in, g.c_out, g.height, g.width) > REGISTER_FIELD_MAX:
        raise LayerFitError(f"a dimension exceeds the {REGISTER_FIELD_MAX.bit_length()}-bit layer registers")
    comp_h, comp_w = computed_map(g.out_h, g.out_w, g.pool)
    step = 2 if g.pool else 1
    if comp_w * step > cfg.acc_depth:
        raise LayerFitError(f"{step} output row(s) of {comp_w} pixels exceed the engine's ACC_DEPTH {cfg.acc_depth}")
    input_rows = cfg.in_depth // (t_in * g.width)
    rows = min(cfg.acc_depth // comp_w, max(0, (input_rows - kh) // sh + 1), comp_h)
    rows -= rows % step
    if rows < step:
        raise LayerFitError(
            f"{step} output row(s) need {t_in * ((step - 1) * sh + kh) * g.width} input pixel groups, "
            f"the engine's IN_DEPTH is {cfg.in_depth}")
    return rows


def bands(geometry: Geometry, config: EngineConfig) -> list[tuple[int, int]]:
    """``(first output row, rows)`` of every job of a convolution, top to bottom."""
    comp_h, _ = computed_map(geometry.out_h, geometry.out_w, geometry.pool)
    rows = band_rows(geometry, config)
    return [(r0, min(rows, comp_h - r0)) for r0 in range(0, comp_h, rows)]
