"""Golden model: a numpy integer implementation of every engine operation.

It follows ``docs/arithmetic.md`` (the arithmetic contract) bit for bit; section numbers in the
comments refer to that page. Everything here is exact integer arithmetic on ``int64`` (the widest
intermediate value is an ``A``-bit accumulator shifted left by at most ``W`` bits, 64 bits for
W = 16) and imports numpy alone, so it runs on the board.

Tensors are batched: feature maps are ``(N, C, H, W)`` and vectors ``(N, F)``. A tensor is signed or
unsigned (§1): the layer functions take its signedness (``unsigned_in``, ``unsigned_skip``,
``unsigned_out``, all False by default) and refuse values outside its range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine_spec import (KERNEL_RANGE, STRIDE_RANGE, SUPPORTED_WIDTHS, accumulator_width, data_shift_range,
                          max_reduction, pair, skip_shift_range, tensor_range)
from .errors import InputError

# tensor_range (§1), max_reduction (§3), skip_shift_range (§9), KERNEL_RANGE and STRIDE_RANGE (§7) are
# the contract's limits, defined once in engine_spec (the gateware's source too) and part of this
# module's interface.
MAX_REDUCTION = max_reduction()  # §3: largest K = C_in * KH * KW of a signed input without an add
MAX_REDUCTION_WITH_ADD = max_reduction(add=True)  # §9: a residual add needs one more bit of headroom


class ContractError(InputError):
    """A value or layer lies outside what the arithmetic contract defines."""


def acc_width(width: int) -> int:
    """Accumulator width ``A = 2W + 16`` for data width ``width`` (§3)."""
    check_width(width)
    return accumulator_width(width)


def check_width(width: int) -> None:
    if width not in SUPPORTED_WIDTHS:
        raise ContractError(f"data width {width} is not supported (choose one of {SUPPORTED_WIDTHS})")


def int_range(bits: int) -> tuple[int, int]:
    """The signed two's-complement range of ``bits`` bits."""
    return tensor_range(bits)


def saturate(values, bits: int, *, unsigned: bool = False) -> np.ndarray:
    """Clamp values to the ``bits``-bit range, signed or unsigned (§1, §2), as int64. Clamped
    before the cast: a float beyond int64 (a dead channel's bias at weight fl 107) would wrap to
    the wrong end in it."""
    lo, hi = tensor_range(bits, unsigned=unsigned)
    return np.clip(np.asarray(values), lo, hi).astype(np.int64)


def quantize(x, fl: int, bits: int, *, unsigned: bool = False) -> np.ndarray:
    """Float to ``bits``-bit integers with fractional length ``fl``: round half up, saturate to
    the signed or, with ``unsigned``, the unsigned range (§2; a negative value becomes 0).

    ``fl`` may be a scalar or an array broadcasting against ``x`` (per-channel weights).
    """
    scaled = np.asarray(x, dtype=np.float64) * np.ldexp(1.0, np.asarray(fl, dtype=np.int32))
    return saturate(np.floor(scaled + 0.5), bits, unsigned=unsigned)


def check_values(values, width: int, *, unsigned: bool, what: str) -> None:
    """Refuse a tensor with a value outside its W-bit range (§1), naming the tensor and the value."""
    values = np.asarray(values)
    if values.size == 0:
        return
    lo, hi = tensor_range(width, unsigned=unsigned)
    low, high = int(values.min()), int(values.max())
    if low < lo or high > hi:
        kind = "unsigned" if unsigned else "signed"
        raise ContractError(f"{what} holds {low if low < lo else high}, outside the {kind} {width}-bit range "
                            f"[{lo}, {hi}] (§1)")


def quantize_bias(bias, fl_b, width: int) -> np.ndarray:
    """Bias at the accumulator's alignment ``fl_b`` held in ``A - 1`` bits (§4).

    ``fl_b`` may be a scalar or one value per output channel.
    """
    bias = np.asarray(bias, dtype=np.float64)
    scaled = bias * np.ldexp(1.0, np.asarray(fl_b, dtype=np.int32))
    return saturate(np.floor(scaled + 0.5), acc_width(width) - 1)


def shift_range(width: int) -> tuple[int, int]:
    """The data shifts the engine executes, ``[-W, A]`` (§5)."""
    check_width(width)
    return data_shift_range(width)


def clamp_shift(shift, width: int) -> np.ndarray:
    """Clamp data shifts into ``[-W, A]``; §5 shows this changes no result."""
    lo, hi = shift_range(width)
    return np.clip(np.asarray(shift, dtype=np.int64), lo, hi)


def round_shift(acc, shift) -> np.ndarray:
    """``acc`` brought down by ``shift`` bits with round half up, or up by ``-shift`` (§5).

    ``shift`` broadcasts against ``acc`` (per-channel shifts are allowed).
    """
    acc = np.asarray(acc, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.size == 1:  # one shift for the whole tensor: the common case, without masks
        s = int(shift.reshape(-1)[0])
        return np.right_shift(acc + (1 << (s - 1)), s) if s > 0 else np.left_shift(acc, -s)
    shift = np.broadcast_to(shift, acc.shape)
    right = np.maximum(shift, 0)
    half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    down = np.right_shift(acc + half, right)
    up = np.left_shift(acc, np.maximum(-shift, 0))
    return np.where(shift >= 0, down, up)


@dataclass(frozen=True)
class Requantized:
    """Output of the output unit: W-bit values and the number of saturated elements (§5)."""

    values: np.ndarray
    saturated: int


def requantize(acc, shift, *, relu: bool, width: int, unsigned: bool = False) -> Requantized:
    """Data shift, optional ReLU and saturation to the ``width``-bit range of the output, signed or
    unsigned; elements outside it are counted (§5: without ReLU a negative value of an unsigned
    output saturates to 0 and counts)."""
    r = round_shift(acc, clamp_shift(shift, width))
    if relu:
        r = np.maximum(r, 0)
    lo, hi = tensor_range(width, unsigned=unsigned)
    saturated = int(np.count_nonzero((r < lo) | (r > hi)))
    return Requantized(np.clip(r, lo, hi), saturated)


def maxpool2x2(y: np.ndarray) -> np.ndarray:
    """2x2 stride-2 max pooling of ``(N, C, H, W)`` integers, odd edges dropped (§6; the integers'
    own order, so unsigned values compare as unsigned)."""
    n, c, h, w = y.shape
    h2, w2 = h // 2, w // 2
    if h2 == 0 or w2 == 0:
        raise ContractError(f"max pooling needs at least a 2x2 map, got {h}x{w}")
    tiles = y[:, :, : 2 * h2, : 2 * w2].reshape(n, c, h2, 2, w2, 2)
    return tiles.max(axis=(3, 5))


def even_crop(y: np.ndarray) -> np.ndarray:
    """Drop an odd last row and column, which 2x2/2 pooling never reads (§6)."""
    h, w = y.shape[-2:]
    return y[..., : h - h % 2, : w - w % 2]


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int | None = None) -> int:
    """``floor((size + pad_before + pad_after - kernel) / stride) + 1`` (§7; symmetric by default)."""
    pad_after = pad_before if pad_after is None else pad_after
    return (size + pad_before + pad_after - kernel) // stride + 1


def padding4(pad) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` zero padding from one int or a 4-sequence (§7)."""
    if isinstance(pad, (int, np.integer)):
        return (int(pad),) * 4
    values = tuple(int(p) for p in pad)
    if len(values) != 4:
        raise ContractError(f"padding {pad!r}: give one value or (top, left, bottom, right)")
    return values


def check_conv_geometry(*, c_in: int, height: int, width_px: int, kernel, stride, pad, add: bool = False,
                        unsigned_in: bool = False, groups: int = 1, c_out: int | None = None) -> None:
    """Refuse a convolution outside the contract's limits (§3, §7, §9), naming the limit.
    ``kernel`` and ``stride`` are one int (square) or ``(vertical, horizontal)``; ``groups``
    divides ``c_in`` (and ``c_out`` when given)."""
    if groups < 1 or c_in % groups or (c_out is not None and c_out % groups):
        raise ContractError(f"groups={groups} does not divide the {c_in} input"
                            + ("" if c_out is None else f" and {c_out} output") + " channels")
    kh, kw = pair(kernel, "kernel")
    sh, sw = pair(stride, "stride")
    if not all(KERNEL_RANGE[0] <= k <= KERNEL_RANGE[1] for k in (kh, kw)):
        raise ContractError(f"kernel {kh}x{kw} outside the supported {KERNEL_RANGE[0]}..{KERNEL_RANGE[1]} "
                            "per dimension")
    if not all(STRIDE_RANGE[0] <= s <= STRIDE_RANGE[1] for s in (sh, sw)):
        raise ContractError(f"stride {sh}x{sw} outside the supported {STRIDE_RANGE[0]}..{STRIDE_RANGE[1]} "
                            "per dimension")
    top, left, bottom, right = padding4(pad)
    if not (all(0 <= p < kh for p in (top, bottom)) and all(0 <= p < kw for p in (left, right))):
        raise ContractError(f"padding {(top, left, bottom, right)} (top, left, bottom, right) outside the "
                            f"supported 0..{kh - 1} above and below, 0..{kw - 1} left and right for a {kh}x{kw} "
                            "kernel")
    check_reduction(c_in // groups * kh * kw, add=add, unsigned_in=unsigned_in)
    if (conv_output_size(height, kh, sh, top, bottom) < 1
            or conv_output_size(width_px, kw, sw, left, right) < 1):
        raise ContractError(f"a {kh}x{kw} kernel with padding {(top, left, bottom, right)} does not fit "
                            f"a {height}x{width_px} map")


def check_reduction(k: int, *, add: bool = False, unsigned_in: bool = False) -> None:
    """Refuse ``K`` products per output beyond :func:`max_reduction` (§3, §9), naming the limit."""
    limit = max_reduction(add=add, unsigned_in=unsigned_in)
    if k > limit:
        what = ", ".join(["K = C_in/groups*KH*KW or in_features"] + ["an unsigned input"] * unsigned_in
                         + ["a residual add"] * add)
        raise ContractError(f"reduction length {k} exceeds the accumulator limit {limit} ({what}; §3)")


def align_skip(skip, skip_shift, width: int, *, unsigned: bool = False) -> np.ndarray:
    """The skip tensor at the accumulator's alignment: ``round_shift(b, t)`` (§9).

    ``skip_shift`` broadcasts against ``skip``; a shift above ``W + 1`` is clamped (no change in
    the result), one below ``-(A - W - 2)`` (one more for an ``unsigned`` skip) is refused.
    """
    lo, hi = skip_shift_range(width, unsigned=unsigned)
    t = np.asarray(skip_shift, dtype=np.int64)
    if np.any(t < lo):
        kind = "an unsigned" if unsigned else "a signed"
        raise ContractError(f"skip shift {int(t.min())} below the supported {lo} for {kind} skip (§9): the skip "
                            f"tensor's fl is too coarse for the accumulator")
    return round_shift(skip, np.minimum(t, hi))


def conv_accumulate(x, w, b, *, stride, pad, skip=None, skip_shift=None, width: int | None = None,
                    unsigned_skip: bool = False, groups: int = 1) -> np.ndarray:
    """Exact accumulators of a convolution (§7): ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``
    with weights ``(C_out, C_in / groups, KH, KW)`` and ``stride`` one int or ``(SH, SW)``: output
    channel ``c`` of group ``g = c // (C_out / groups)`` reads input channels ``g * C_in / groups ..``
    (§7; ``groups = C_in = C_out`` is a depthwise convolution).

    With ``skip`` (the output's shape, before any pooling crop), the aligned skip tensor is added
    (§9); then ``skip_shift`` (per output channel or one value) and ``width`` are required, and
    ``unsigned_skip`` says the skip tensor's signedness.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    top, left, bottom, right = padding4(pad)
    n, c_in, h, wd = x.shape
    c_out, c_group, kh, kw = w.shape
    if c_group * groups != c_in or c_out % groups:
        raise ContractError(f"weights {w.shape} with groups={groups} do not take {c_in} input channels")
    sh, sw = pair(stride, "stride")
    h_out = conv_output_size(h, kh, sh, top, bottom)
    w_out = conv_output_size(wd, kw, sw, left, right)
    xp = np.pad(x, ((0, 0), (0, 0), (top, max(bottom, 0)), (left, max(right, 0))))
    acc = np.zeros((n, groups, c_out // groups, h_out, w_out), dtype=np.int64)
    wg = w.reshape(groups, c_out // groups, c_group, kh, kw)
    for u in range(kh):
        for v in range(kw):
            window = xp[:, :, u : u + sh * (h_out - 1) + 1 : sh, v : v + sw * (w_out - 1) + 1 : sw]
            window = window.reshape(n, groups, c_group, h_out, w_out)
            acc += np.einsum("ngchw,goc->ngohw", window, wg[:, :, :, u, v])
    acc = acc.reshape(n, c_out, h_out, w_out)
    acc += np.asarray(b, dtype=np.int64).reshape(1, c_out, 1, 1)
    if skip is not None:
        acc += align_skip(skip, _per_channel(skip_shift, 4), width, unsigned=unsigned_skip)
    return acc


def _check_operands(x, skip, width: int, *, unsigned_in: bool, unsigned_skip: bool) -> None:
    """The main input and the skip tensor lie in their W-bit ranges (§1)."""
    check_values(x, width, unsigned=unsigned_in, what="the input")
    if skip is not None:
        check_values(skip, width, unsigned=unsigned_skip, what="the skip tensor")


def conv2d(x, w, b, *, stride, pad, shift, relu: bool, pool: bool, width: int, skip=None,
           skip_shift=None, unsigned_in: bool = False, unsigned_skip: bool = False,
           unsigned_out: bool = False, groups: int = 1) -> Requantized:
    """A whole engine convolution: accumulate (with the residual add, if ``skip``), requantize,
    ReLU, saturate, optional 2x2 pool. ``unsigned_*`` give the signedness of the input, the skip
    tensor and the output (§1); ``groups`` as for :func:`conv_accumulate`."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    _check_operands(x, skip, width, unsigned_in=unsigned_in, unsigned_skip=unsigned_skip)
    check_conv_geometry(c_in=x.shape[1], height=x.shape[2], width_px=x.shape[3], kernel=w.shape[2:], stride=stride,
                        pad=pad, add=skip is not None, unsigned_in=unsigned_in, groups=groups, c_out=w.shape[0])
    acc = conv_accumulate(x, w, b, stride=stride, pad=pad, skip=skip, skip_shift=skip_shift, width=width,
                          unsigned_skip=unsigned_skip, groups=groups)
    return output_stage(acc, shift, relu=relu, pool=pool, width=width, unsigned=unsigned_out)


def linear(x, w, b, *, shift, relu: bool, width: int, skip=None, skip_shift=None, unsigned_in: bool = False,
           unsigned_skip: bool = False, unsigned_out: bool = False) -> Requantized:
    """A fully connected layer (§7): ``(N, F_in)`` -> ``(N, F_out)``, with the residual add (§9)
    of a ``(N, F_out)`` skip tensor if given; ``unsigned_*`` as for :func:`conv2d`."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    _check_operands(x, skip, width, unsigned_in=unsigned_in, unsigned_skip=unsigned_skip)
    check_reduction(x.shape[1], add=skip is not None, unsigned_in=unsigned_in)
    acc = x @ w.T + np.asarray(b, dtype=np.int64).reshape(1, -1)
    if skip is not None:
        acc = acc + align_skip(skip, _per_channel(skip_shift, 2), width, unsigned=unsigned_skip)
    return requantize(acc, _per_channel(shift, acc.ndim), relu=relu, width=width, unsigned=unsigned_out)


def output_stage(acc, shift, *, relu: bool, pool: bool, width: int, unsigned: bool = False) -> Requantized:
    """§5 and §6 on a batch of accumulators ``(N, C, H, W)`` (or ``(N, F)`` without pooling);
    ``shift`` is one value or one per channel; ``unsigned`` is the output's signedness."""
    if pool:
        acc = even_crop(acc)
    out = requantize(acc, _per_channel(shift, acc.ndim), relu=relu, width=width, unsigned=unsigned)
    values = maxpool2x2(out.values) if pool else out.values
    return Requantized(values, out.saturated)


def _per_channel(shift, ndim: int) -> np.ndarray:
    """Shape a scalar or per-output-channel shift to broadcast over axis 1."""
    shift = np.asarray(shift, dtype=np.int64)
    if shift.ndim == 0:
        return shift
    return shift.reshape((1, -1) + (1,) * (ndim - 2))


def summed_weights(weights, channels: int, pixels: int) -> np.ndarray | None:
    """The ``(F_out, channels)`` weights of a fully connected layer over a ``channels``-channel map
    of ``pixels`` pixels (flattened in PyTorch's order) when its weights repeat over the pixels, as
    after a global average pool folded into it (§10: the layer is then a summed job), else None."""
    weights = np.asarray(weights)
    per_pixel = weights.reshape(weights.shape[0], channels, pixels)
    if not np.array_equal(per_pixel, np.broadcast_to(per_pixel[:, :, :1], per_pixel.shape)):
        return None
    return per_pixel[:, :, 0]


def conv_job(x_tile, w, b, *, stride, pad_top: int, pad_left: int, out_h: int, out_w: int, shift, relu: bool,
             pool: bool, width: int, skip=None, skip_shift=None, unsigned_in: bool = False,
             unsigned_skip: bool = False, unsigned_out: bool = False, sum_pool: bool = False) -> Requantized:
    """One engine job: a convolution over a spatial tile, exactly as the engine computes it.

    Output pixel ``(i, j)`` of the ``out_h x out_w`` map reads input pixel
    ``(i*SH + u - pad_top, j*SW + v - pad_left)`` of the ``(N, C_in, IN_H, IN_W)`` tile (weights
    ``(C_out, C_in, KH, KW)``, ``stride`` one int or ``(SH, SW)``),
    zero outside it (docs/engine.md); with ``skip`` (``(N, C_out, h, w)``, the computed map: with
    pooling even-cropped) the residual add (§9); then §5 and, if ``pool``, §6 (an odd last
    row/column is neither computed nor counted). A whole layer is the job with the whole map as
    its tile. ``unsigned_*`` as for :func:`conv2d`. With ``sum_pool`` (no ``pool``, no ``skip``)
    the ``out_h x out_w`` pixels' products sum into one output pixel with the bias added once: a
    global average pool folded into a fully connected layer whose weights repeat over the map
    (§10), ``K = C_in * KH * KW * out_h * out_w``.
    """
    x_tile = np.asarray(x_tile, dtype=np.int64)
    _check_operands(x_tile, skip, width, unsigned_in=unsigned_in, unsigned_skip=unsigned_skip)
    if sum_pool and (pool or skip is not None):
        raise ContractError("a summed job has neither 2x2 pooling nor a residual add")
    pixels = out_h * out_w if sum_pool else 1
    kh, kw = np.asarray(w).shape[2:]
    sh, sw = pair(stride, "stride")
    check_reduction(x_tile.shape[1] * kh * kw * pixels, add=skip is not None, unsigned_in=unsigned_in)
    n, c, h, wd = x_tile.shape
    need_h = (out_h - 1) * sh + kh
    need_w = (out_w - 1) * sw + kw
    padded = np.zeros((n, c, max(need_h, pad_top + h), max(need_w, pad_left + wd)), dtype=np.int64)
    padded[:, :, pad_top : pad_top + h, pad_left : pad_left + wd] = x_tile
    if sum_pool:
        acc = conv_accumulate(padded[:, :, :need_h, :need_w], w, np.zeros(np.asarray(w).shape[0], dtype=np.int64),
                              stride=stride, pad=0)
        acc = acc.sum(axis=(2, 3), keepdims=True) + np.asarray(b, dtype=np.int64).reshape(1, -1, 1, 1)
        return output_stage(acc, shift, relu=relu, pool=False, width=width, unsigned=unsigned_out)
    acc = conv_accumulate(padded[:, :, :need_h, :need_w], w, b, stride=stride, pad=0)
    if pool:
        acc = even_crop(acc)
    if skip is not None:
        acc = acc + align_skip(skip, _per_channel(skip_shift, 4), width, unsigned=unsigned_skip)
    return output_stage(acc, shift, relu=relu, pool=pool, width=width, unsigned=unsigned_out)
