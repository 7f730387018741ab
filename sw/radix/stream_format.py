"""The engine's AXI4-Stream formats, shared by the driver, the golden checks and the testbenches.

One job (one layer, or one spatial tile of one) is a single input stream of 64-bit words, made
of two kinds of parts:

* the *input tiles*: for each input-channel tile ``t`` (``rows`` channels, the last one
  zero-filled), for each pixel in raster order, one *pixel group* of ``rows`` lanes; a *narrow*
  input (one tile of at most ``64/W`` channels, ``narrow_in``) sends only the group's first word;
* for each output-channel tile (``cols`` channels): ``cols`` *bias words*; then the *weight
  rows*: for each input-channel tile ``t``, for each kernel tap ``(u, v)`` of the ``KH x KW``
  kernel in raster order (``v`` fastest), for each array row ``r``, one row of ``cols`` lanes
  (weight ``w[co, t*rows + r, u, v]`` in lane ``co - tile*cols``; lanes beyond the layer's
  channels are zero); then, for a job with a residual add (FLAGS.ADD), the tile's *skip
  pixels*: for each computed output pixel (before pooling; with pooling the even-cropped map,
  docs/arithmetic.md §6) in raster order, one group of ``cols`` lanes (skip ``b[co, i, j]`` in
  lane ``co - tile*cols``). A tile's weight rows and skip pixels carry only the words that hold
  its channels, as its output pixels do (:func:`tile_out_words`: all ``wt_words`` but in a last
  tile of fewer channels); the engine fills the rest of the group with zeros.

They are sent in this order: the first output tile's bias words; then, for each input-channel
tile ``t``, the first output tile's weight rows of ``t``'s first tap (:func:`leading_weight_words`),
input tile ``t``, and the rest of that tile's weight rows of ``t``; then the first output
tile's skip pixels; then the other output tiles whole, in order. Interleaving the first output
tile with the input lets its passes on input tile ``t`` run while input tile ``t + 1`` still
streams in, and its first pass on ``t`` trail input tile ``t`` as it streams in
(docs/engine.md): only the first pass's weight rows precede it (:func:`job_words`,
:func:`split_job_words`). A *striped* job (``strip_rows`` set: its passes run strip by strip,
docs/engine.md) sends all of ``t``'s weight rows before input tile ``t``, since its first
strip's passes on every tap trail the tile. A *weights-first* job (``weights_first``) sends all of the
first output tile's weight rows, of every input tile, before its input tiles, which then follow one
another: when the job loads while the job before computes, its head is then all of its weights,
and only its input streams after the job before is done. The skip pixels come last because only a
tile's last pass adds them: they stream while its earlier passes run.

The output stream carries, for each output-channel tile, for each output pixel (after pooling)
in raster order, one group of ``cols`` lanes, of which only the words that hold the layer's
channels are sent (all ``wt_words`` but in a last tile of fewer channels: :func:`tile_out_words`);
``last`` marks the job's last word.

A group of lanes is packed little-endian: lane 0 in the lowest W bits of the first word, lane
``64/W`` in the lowest bits of the second word, unused high bits zero. A lane holds a value of its
tensor's range (docs/arithmetic.md §1): W-bit two's complement, or W-bit unsigned where the
layer's FLAGS say the tensor is (``IN_UNSIGNED``, ``SKIP_UNSIGNED``, ``OUT_UNSIGNED``). A bias word holds the bias
(docs/arithmetic.md §4) as 48-bit two's complement in bits 0..47, the channel's data shift
(§5) as 8-bit two's complement in bits 48..55 and its skip shift (§9, zero without an add) as
8-bit two's complement in bits 56..63.
"""

from __future__ import annotations

import math

import numpy as np

from .engine_spec import STREAM_BITS, EngineConfig, input_group_words, pair

BIAS_BITS = 48
SHIFT_BITS = 8  # the data shift and the skip shift fields of a bias word
SKIP_SHIFT_OFFSET = BIAS_BITS + SHIFT_BITS


def tiles(count: int, size: int) -> int:
    """Number of ``size``-wide tiles covering ``count`` channels."""
    return math.ceil(count / size)


# Lanes of 8 or 16 bits are whole bytes of a little-endian word: packing is a cast and a view
# (the driver packs every batch's input this way, on the board's CPU too).
_BYTE_LANES = {8: (np.dtype("<u1"), np.dtype("<i1")), 16: (np.dtype("<u2"), np.dtype("<i2"))}


def pack_lanes(values, *, width: int) -> np.ndarray:
    """Pack ``(groups, lanes)`` signed or unsigned W-bit integers into 64-bit words,
    ``ceil(lanes*W/64)`` per group (each lane keeps its low W bits)."""
    values = np.asarray(values, dtype=np.int64)
    groups, lanes = values.shape
    per_word = STREAM_BITS // width
    words_per_group = math.ceil(lanes / per_word)
    if width in _BYTE_LANES:
        lane_type = _BYTE_LANES[width][0]
        padded = np.zeros((groups, words_per_group * per_word), dtype=lane_type)
        padded[:, :lanes] = values.astype(lane_type)  # the low W bits, two's complement
        return padded.view(np.dtype("<u8")).astype(np.uint64, copy=False).reshape(-1)
    padded = np.zeros((groups, words_per_group * per_word), dtype=np.uint64)
    padded[:, :lanes] = values.astype(np.uint64) & np.uint64((1 << width) - 1)
    padded = padded.reshape(groups, words_per_group, per_word)
    shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(width)).reshape(1, 1, per_word)
    return np.bitwise_or.reduce(padded << shifts, axis=2).reshape(-1)


def unpack_lanes(words, *, lanes: int, width: int, unsigned: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: 64-bit words to ``(groups, lanes)`` signed integers, or
    unsigned ones with ``unsigned``."""
    words = np.asarray(words, dtype=np.uint64)
    per_word = STREAM_BITS // width
    words_per_group = math.ceil(lanes / per_word)
    if words.size % words_per_group:
        raise ValueError(f"{words.size} words do not make whole groups of {words_per_group}")
    if width in _BYTE_LANES:
        lane_type = _BYTE_LANES[width][0 if unsigned else 1]
        raw = np.ascontiguousarray(words, dtype=np.dtype("<u8")).view(lane_type).reshape(words.size // words_per_group,
                                                                     words_per_group * per_word)
        return raw[:, :lanes].astype(np.int64)
    shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(width)).reshape(1, 1, per_word)
    raw = (words.reshape(-1, words_per_group, 1) >> shifts) & np.uint64((1 << width) - 1)
    raw = raw.reshape(words.size // words_per_group, words_per_group * per_word)[:, :lanes]
    return raw.astype(np.int64) if unsigned else _signed(raw, width)


def input_words(x, config: EngineConfig, *, narrow: bool = False) -> np.ndarray:
    """Stream words of one input feature map ``(C_in, H, W)``, input tile after input tile
    (``narrow``: one word per pixel, ``C_in`` at most a word's lanes)."""
    x = np.asarray(x, dtype=np.int64)
    c_in, h, w = x.shape
    n_tiles = tiles(c_in, config.rows)
    lanes = np.zeros((n_tiles * config.rows, h, w), dtype=np.int64)
    lanes[:c_in] = x
    groups = lanes.reshape(n_tiles, config.rows, h * w).transpose(0, 2, 1).reshape(-1, config.rows)
    words = pack_lanes(groups, width=config.width)
    if narrow:
        if c_in > config.lanes_per_word:
            raise ValueError(f"a narrow input holds at most {config.lanes_per_word} channels, not {c_in}")
        return words.reshape(-1, config.in_words)[:, 0].copy()
    return words


def bias_words(bias, shift, skip_shift=0) -> np.ndarray:
    """Bias words of one output-channel tile (already zero-filled to ``cols`` lanes)."""
    bias = np.asarray(bias, dtype=np.int64)
    low = bias.astype(np.uint64) & np.uint64((1 << BIAS_BITS) - 1)
    mask = np.uint64((1 << SHIFT_BITS) - 1)
    shift_field = (np.asarray(shift, dtype=np.int64).astype(np.uint64) & mask) << np.uint64(BIAS_BITS)
    skip_field = (np.asarray(skip_shift, dtype=np.int64).astype(np.uint64) & mask) << np.uint64(SKIP_SHIFT_OFFSET)
    return low | shift_field | skip_field


def _tile_lanes(values, tile: int, cols: int) -> np.ndarray:
    """Channels ``tile*cols ..`` of per-channel ``values`` (broadcast to ``(C,) + rest``), zero-filled
    to ``cols`` lanes."""
    values = np.asarray(values, dtype=np.int64)
    lo, hi = tile * cols, min((tile + 1) * cols, values.shape[0])
    out = np.zeros((cols,) + values.shape[1:], dtype=np.int64)
    out[: hi - lo] = values[lo:hi]
    return out


def _tile_groups(groups: np.ndarray, c_out: int, tile: int, config: EngineConfig) -> np.ndarray:
    """Packed ``cols``-lane groups of output tile ``tile`` cut to the words holding its channels."""
    return groups.reshape(-1, config.wt_words)[:, : tile_out_words(c_out, tile, config)].reshape(-1)


def _full_groups(words, row_words: int, config: EngineConfig) -> np.ndarray:
    """Groups of ``row_words`` words zero-filled to ``wt_words`` (inverse of :func:`_tile_groups`)."""
    words = np.asarray(words, dtype=np.uint64).reshape(-1, row_words)
    full = np.zeros((words.shape[0], config.wt_words), dtype=np.uint64)
    full[:, :row_words] = words
    return full.reshape(-1)


def skip_words(skip, tile: int, config: EngineConfig) -> np.ndarray:
    """The skip pixels of output-channel tile ``tile`` of a ``(C_out, h, w)`` skip map."""
    lanes = _tile_lanes(skip, tile, config.cols)
    groups = pack_lanes(lanes.reshape(config.cols, -1).T, width=config.width)
    return _tile_groups(groups, np.asarray(skip).shape[0], tile, config)


def cotile_words(weights, bias, shift, tile: int, config: EngineConfig, *, skip=None, skip_shift=None) -> np.ndarray:
    """Stream words of output-channel tile ``tile``: bias words, weight rows, skip pixels (with
    ``skip``, the ``(C_out, h, w)`` computed-size skip map, and its per-channel ``skip_shift``)."""
    weights = np.asarray(weights, dtype=np.int64)
    c_out, c_in, kh, kw = weights.shape
    n_in_tiles = tiles(c_in, config.rows)
    w = np.zeros((config.cols, n_in_tiles * config.rows, kh, kw), dtype=np.int64)
    w[:, :c_in] = _tile_lanes(weights, tile, config.cols)
    # (cols, t, r, u, v) -> (t, u, v, r, cols): one row of cols lanes per (t, u, v, r)
    rows = w.reshape(config.cols, n_in_tiles, config.rows, kh, kw).transpose(1, 3, 4, 2, 0)
    per_channel = (c_out,)
    b = _tile_lanes(np.broadcast_to(np.asarray(bias, dtype=np.int64), per_channel), tile, config.cols)
    s = _tile_lanes(np.broadcast_to(np.asarray(shift, dtype=np.int64), per_channel), tile, config.cols)
    weight_rows = _tile_groups(pack_lanes(rows.reshape(-1, config.cols), width=config.width), c_out, tile, config)
    if skip is None:
        return np.concatenate([bias_words(b, s), weight_rows])
    t = _tile_lanes(np.broadcast_to(np.asarray(skip_shift, dtype=np.int64), per_channel), tile, config.cols)
    return np.concatenate([bias_words(b, s, t), weight_rows, skip_words(skip, tile, config)])


def tile_weight_words(kernel, config: EngineConfig, *, row_words: int | None = None) -> int:
    """Words of one output tile's weight rows for one input-channel tile of a ``kernel`` (one int,
    square, or ``(KH, KW)``) kernel, ``row_words`` words a row (the tile's :func:`tile_out_words`;
    by default ``wt_words``, a whole tile's)."""
    kh, kw = pair(kernel, "kernel")
    return kh * kw * config.rows * (config.wt_words if row_words is None else row_words)


def cotile_word_count(c_in: int, kernel, config: EngineConfig, *, skip_pixels: int = 0,
                      row_words: int | None = None) -> int:
    """Words of one output-channel tile: bias words, weight rows, ``skip_pixels`` skip groups,
    ``row_words`` words a row and a group (by default ``wt_words``, a whole tile's)."""
    row_words = config.wt_words if row_words is None else row_words
    return (config.cols + tiles(c_in, config.rows) * tile_weight_words(kernel, config, row_words=row_words)
            + skip_pixels * row_words)


def input_tile_words(height: int, width_px: int, config: EngineConfig, *, narrow: bool = False) -> int:
    """Words of one input-channel tile of a job's input map (``narrow``: a narrow input's)."""
    return height * width_px * input_group_words(config, narrow=narrow)


def input_word_count(c_in: int, height: int, width_px: int, config: EngineConfig, *, narrow: bool = False) -> int:
    """Words of a job's input map."""
    return tiles(c_in, config.rows) * input_tile_words(height, width_px, config, narrow=narrow)


def job_words(x, weights, bias, shift, config: EngineConfig, *, skip=None, skip_shift=None,
              narrow: bool = False, striped: bool = False, weights_first: bool = False) -> np.ndarray:
    """The whole input stream of one job, in the order of the module docstring (``narrow``: its
    input narrow; ``striped``: the job has ``strip_rows``; ``weights_first``: the job's field)."""
    c_out, c_in = np.asarray(weights).shape[:2]
    inputs = input_words(x, config, narrow=narrow).reshape(
        -1, input_tile_words(*np.asarray(x).shape[1:], config, narrow=narrow))
    cotiles = [cotile_words(weights, bias, shift, t, config, skip=skip, skip_shift=skip_shift)
               for t in range(tiles(c_out, config.cols))]
    first_words = tile_out_words(c_out, 0, config)
    weight_part = tiles(c_in, config.rows) * tile_weight_words(np.asarray(weights).shape[2:], config,
                                                               row_words=first_words)
    bias, first_weights, skip_part = np.split(cotiles[0], [config.cols, config.cols + weight_part])
    parts = [bias]
    if weights_first:
        parts += [first_weights, *inputs]
    else:
        leading = leading_weight_words(np.asarray(weights).shape[2:], config, striped=striped, row_words=first_words)
        for tile, tile_weights in zip(inputs, first_weights.reshape(len(inputs), -1)):
            parts += [tile_weights[:leading], tile, tile_weights[leading:]]
    return np.concatenate(parts + [skip_part] + cotiles[1:])


def leading_weight_words(kernel, config: EngineConfig, *, striped: bool, row_words: int | None = None) -> int:
    """Words of an input tile's weight rows that precede the input tile in a job's stream: one
    tap's (the first pass's), or in a striped job all ``KH * KW`` taps' (every tap's first strip),
    ``row_words`` words a row (the first output tile's; by default ``wt_words``)."""
    row_words = config.wt_words if row_words is None else row_words
    return config.rows * row_words * (math.prod(pair(kernel, "kernel")) if striped else 1)


def split_job_words(words, *, c_in: int, height: int, width_px: int, kernel, c_out: int,
                    config: EngineConfig, skip_pixels: int = 0, narrow: bool = False,
                    striped: bool = False, weights_first: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Inverse of the ordering of :func:`job_words`: ``(input words, [cotile words per output tile])``,
    each as :func:`input_words` and :func:`cotile_words` make them."""
    words = np.asarray(words, dtype=np.uint64)
    n_in = tiles(c_in, config.rows)
    in_tile = input_tile_words(height, width_px, config, narrow=narrow)
    sizes = [cotile_word_count(c_in, kernel, config, skip_pixels=skip_pixels, row_words=tile_out_words(c_out, o, config))
             for o in range(tiles(c_out, config.cols))]
    expected = n_in * in_tile + sum(sizes)
    if words.size != expected:
        raise ValueError(f"{words.size} words, but a job of this layer streams {expected}")
    first_words = tile_out_words(c_out, 0, config)
    tile_weights = tile_weight_words(kernel, config, row_words=first_words)
    bias = config.cols
    # the first output tile's weight rows and the input tiles, in either order, end here
    weights_end = bias + n_in * (in_tile + tile_weights)
    if weights_first:
        weights, inputs = np.split(words[bias:weights_end], [n_in * tile_weights])
    else:
        interleaved = words[bias:weights_end].reshape(n_in, in_tile + tile_weights)
        leading = leading_weight_words(kernel, config, striped=striped, row_words=first_words)
        weights = np.concatenate([interleaved[:, :leading], interleaved[:, leading + in_tile:]], axis=1)
        inputs = interleaved[:, leading:leading + in_tile]
    skip_end = weights_end + skip_pixels * first_words
    first = np.concatenate([words[:bias], weights.reshape(-1), words[weights_end:skip_end]])
    rest = np.split(words[skip_end:], np.cumsum(sizes[1:-1])) if len(sizes) > 1 else []
    return inputs.reshape(-1), [first, *rest]


def decode_bias_words(words) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`bias_words`: ``(bias, shift, skip_shift)`` signed integers."""
    words = np.asarray(words, dtype=np.uint64)
    mask = np.uint64((1 << SHIFT_BITS) - 1)
    bias = _signed(words & np.uint64((1 << BIAS_BITS) - 1), BIAS_BITS)
    shift = _signed((words >> np.uint64(BIAS_BITS)) & mask, SHIFT_BITS)
    skip_shift = _signed((words >> np.uint64(SKIP_SHIFT_OFFSET)) & mask, SHIFT_BITS)
    return bias, shift, skip_shift


def decode_input_words(words, c_in: int, height: int, width_px: int, config: EngineConfig, *,
                       unsigned: bool = False, narrow: bool = False) -> np.ndarray:
    """Inverse of :func:`input_words`: a ``(C_in, H, W)`` map (of unsigned values with ``unsigned``;
    ``narrow``: one word per pixel, the group's other lanes zero)."""
    n_tiles = tiles(c_in, config.rows)
    if narrow:
        if n_tiles != 1:
            raise ValueError(f"a narrow input is one input tile, not {n_tiles}")
        padded = np.zeros((np.asarray(words).size, config.in_words), dtype=np.uint64)
        padded[:, 0] = np.asarray(words, dtype=np.uint64)
        words = padded.reshape(-1)
    groups = unpack_lanes(words, lanes=config.rows, width=config.width, unsigned=unsigned)
    x = groups.reshape(n_tiles, height * width_px, config.rows).transpose(0, 2, 1)
    return x.reshape(n_tiles * config.rows, height, width_px)[:c_in]


def decode_cotile_words(words, c_in: int, kernel, config: EngineConfig, *, skip_pixels: int = 0,
                        skip_unsigned: bool = False, row_words: int | None = None) -> dict:
    """Inverse of :func:`cotile_words` for one tile of a ``kernel`` (int or ``(KH, KW)``) kernel
    whose rows and skip groups are ``row_words`` words (the tile's :func:`tile_out_words`; by
    default ``wt_words``): ``weights`` (cols, C_in, KH, KW), ``bias``,
    ``shift``, ``skip_shift`` (cols,) and ``skip`` (cols, skip_pixels; unsigned values with
    ``skip_unsigned``)."""
    words = np.asarray(words, dtype=np.uint64)
    row_words = config.wt_words if row_words is None else row_words
    n_tiles = tiles(c_in, config.rows)
    bias, shift, skip_shift = decode_bias_words(words[: config.cols])
    skip_start = words.size - skip_pixels * row_words
    skip = unpack_lanes(_full_groups(words[skip_start:], row_words, config), lanes=config.cols, width=config.width,
                        unsigned=skip_unsigned).T
    rows = unpack_lanes(_full_groups(words[config.cols : skip_start], row_words, config), lanes=config.cols,
                        width=config.width)
    kh, kw = pair(kernel, "kernel")
    w = rows.reshape(n_tiles, kh, kw, config.rows, config.cols).transpose(4, 0, 3, 1, 2)
    weights = w.reshape(config.cols, n_tiles * config.rows, kh, kw)[:, :c_in]
    return {"weights": weights, "bias": bias, "shift": shift, "skip_shift": skip_shift, "skip": skip}


def tile_out_words(c_out: int, tile: int, config: EngineConfig) -> int:
    """Words per pixel of output tile ``tile`` in the output stream, and per weight row and skip
    pixel in the input stream: those holding its channels."""
    lanes = min(config.cols, c_out - tile * config.cols)
    return min(config.wt_words, math.ceil(lanes * config.width / STREAM_BITS))


def output_words(maps, config: EngineConfig) -> np.ndarray:
    """The output stream of a ``(C_out, H, W)`` map (after pooling); inverse of :func:`decode_output`."""
    maps = np.asarray(maps, dtype=np.int64)
    c_out = maps.shape[0]
    n_tiles = tiles(c_out, config.cols)
    lanes = np.zeros((n_tiles * config.cols,) + maps.shape[1:], dtype=np.int64)
    lanes[:c_out] = maps
    groups = lanes.reshape(n_tiles, config.cols, -1).transpose(0, 2, 1)
    parts = []
    for tile in range(n_tiles):
        words = pack_lanes(groups[tile], width=config.width).reshape(-1, config.wt_words)
        parts.append(words[:, :tile_out_words(c_out, tile, config)].reshape(-1))
    return np.concatenate(parts)


def _signed(raw, bits: int) -> np.ndarray:
    raw = np.asarray(raw).astype(np.int64)
    return np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)


def output_word_count(c_out: int, out_h: int, out_w: int, config: EngineConfig) -> int:
    """Words the engine sends for ``c_out`` channels of an ``out_h x out_w`` (after pooling) map."""
    return out_h * out_w * sum(tile_out_words(c_out, tile, config) for tile in range(tiles(c_out, config.cols)))


def decode_output(words, c_out: int, out_h: int, out_w: int, config: EngineConfig, *,
                  unsigned: bool = False) -> np.ndarray:
    """Output stream words to a ``(C_out, H, W)`` map (``out_h x out_w`` after pooling) of signed
    values, or unsigned ones with ``unsigned`` (the output's signedness)."""
    expected = output_word_count(c_out, out_h, out_w, config)
    words = np.asarray(words, dtype=np.uint64)
    if words.size != expected:
        raise ValueError(f"output stream has {words.size} words, expected {expected}")
    n_tiles = tiles(c_out, config.cols)
    padded = np.zeros((n_tiles, out_h * out_w, config.wt_words), dtype=np.uint64)
    start = 0
    for tile in range(n_tiles):
        count = tile_out_words(c_out, tile, config)
        size = out_h * out_w * count
        padded[tile, :, :count] = words[start:start + size].reshape(-1, count)
        start += size
    lanes = unpack_lanes(padded.reshape(-1), lanes=config.cols, width=config.width, unsigned=unsigned)
    maps = lanes.reshape(n_tiles, out_h, out_w, config.cols).transpose(0, 3, 1, 2)
    return maps.reshape(n_tiles * config.cols, out_h, out_w)[:c_out]


def pack_int(values, bits: int) -> int:
    """Signed lanes of any width into one unsigned Python integer, lane ``i`` at bit ``i*bits``
    (the layout of the gateware's wide lane signals)."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def unpack_int(word: int, count: int, bits: int) -> list[int]:
    """Inverse of :func:`pack_int`: ``count`` signed lanes."""
    lanes = []
    for i in range(count):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        lanes.append(v - (1 << bits) if v >> (bits - 1) else v)
    return lanes
