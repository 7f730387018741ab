"""The reference bus-master engine (engine version 13): command lists executed over a numpy memory.

:func:`execute` runs a command list exactly as docs/engine.md ("Memory and commands") says: it
fetches each command, checks it (``OPCODE``, ``LIMIT``, ``BAND``, ``ALIGN``, in that order), reads
the job's bias words, skip pixels, input tiles and weight rows in the order the core's input stream
takes them, computes the job with :func:`radix.golden.conv_job` from that stream (decoded with
:mod:`radix.stream_format`, so it is bit-exact with the golden model), writes the output words and
the stats word. Every access is cut into bursts as the engine cuts them — each contiguous run of
words split at 16 beats and at 4 KB boundaries — and each burst is checked against the window
before it is issued (``WINDOW``) and against the memory (``BUS``: the engine's bus would answer
DECERR). The reference checks a command's reads before its writes; the hardware may already have
written earlier output tiles of a command whose later read faults.

``CYCLES`` and the stats words' cycles come from the analytic cycle model
(:class:`radix.cycle_model.ListClock`, job by job): an estimate, not a measurement. Saturation
counts are exact (the layer's ``out_ch`` channels).

:class:`ReferenceBusTransport` puts this engine behind the bus-master registers
(``engine_spec.BUS_REGISTERS``) and one memory buffer. Numpy only (runs on the board).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import golden, stream_format
from .bus_transport import BusTransport
from .cycle_model import ListClock
from .engine_spec import (BURST_BOUNDARY, BUS_ADDR_BITS, BUS_BYTES, BUS_REGISTERS, COMMAND_BYTES, COMMAND_WORDS,
                          DEFAULT_CONFIG, ERROR_CODE, ERROR_CODES, FOLD_SPAN, MAX_BURST_BEATS, OPCODE_CONV, EngineConfig,
                          build_value, bus_register, computed_map, decode_command, field_mask_of,
                          input_band_groups, input_group_words, skip_shift_range, tensor_lanes, written_map)

WORDS_PER_BOUNDARY = BURST_BOUNDARY // BUS_BYTES
STAT_MAX = (1 << 32) - 1
DEFAULT_BASE = 0x1000_0000  # the reference buffer's bus address: nonzero, so a placement's base bugs show


@dataclass
class ExecResult:
    """What a command list left: ``done`` or an ``error`` code (``ERROR_CODES``; 0 for none) with
    the failing command's index and the byte address at fault, the commands completed, the beats
    moved, the outputs saturated and the cycles (an estimate)."""

    done: bool = False
    error: int = 0
    error_index: int = 0
    error_addr: int = 0
    commands_done: int = 0
    beats_read: int = 0
    beats_written: int = 0
    saturated: int = 0
    cycles: int = 0

    @property
    def error_name(self) -> str:
        """The error code's name (``WINDOW``, ``LIMIT``, ...), or '' without an error."""
        return ERROR_CODES[self.error][0] if self.error else ""


class _Fault(Exception):
    """Stops the list: an ERR_CODE and the byte address at fault."""

    def __init__(self, code: int, addr: int = 0):
        super().__init__(code, addr)
        self.code, self.addr = code, addr


def command_error(fields: dict, config: EngineConfig, previous: dict | None = None) -> tuple[int, str, int] | None:
    """The engine's checks of one decoded command (docs/engine.md, "Checks and errors"), in the
    order ``OPCODE``, ``LIMIT``, ``BAND``, ``ALIGN``: ``(ERR_CODE, reason, ERR_ADDR)`` of the first
    that fails, or None. ``skip_addr`` is checked only with ``add``, ``stat_addr`` only with ``stats``.
    ``previous`` is the list's command before this one (None for the first), against which an
    ``input_ahead`` job's input band is checked."""
    f, cfg = fields, config
    if f["opcode"] != OPCODE_CONV:
        return ERROR_CODE["OPCODE"], f"OPCODE: opcode {f['opcode']} (this engine knows {OPCODE_CONV})", 0
    limit = _limit(f, cfg) or _ahead_limit(f, previous, cfg)
    if limit:
        return ERROR_CODE["LIMIT"], f"LIMIT: {limit}", 0
    band = _band(f, cfg)
    if band:
        return ERROR_CODE["BAND"], f"BAND: {band}", 0
    for name in ("in_addr", "out_addr", "skip_addr", "wt_addr", "stat_addr"):
        if (name == "skip_addr" and not f["add"]) or (name == "stat_addr" and not f["stats"]):
            continue
        if f[name] % BUS_BYTES:
            return ERROR_CODE["ALIGN"], f"ALIGN: {name} 0x{f[name]:X} is not {BUS_BYTES}-byte aligned", f[name]
    return None


def _limit(f: dict, cfg: EngineConfig) -> str:
    """Why a command is over the build's limits, or ''."""
    for name in ("in_ch", "out_ch", "in_h", "in_w", "out_h", "out_w"):
        if f[name] == 0:
            return f"{name} is 0"
    kh, kw, sh, sw = f["kernel_h"], f["kernel_w"], f["stride_h"], f["stride_w"]
    if not all(golden.KERNEL_RANGE[0] <= k <= golden.KERNEL_RANGE[1] for k in (kh, kw)):
        return f"kernel {kh}x{kw} outside {golden.KERNEL_RANGE[0]}..{golden.KERNEL_RANGE[1]} per dimension"
    if not all(golden.STRIDE_RANGE[0] <= s <= golden.STRIDE_RANGE[1] for s in (sh, sw)):
        return f"stride {sh}x{sw} outside {golden.STRIDE_RANGE[0]}..{golden.STRIDE_RANGE[1]} per dimension"
    span = kw * f["fold_taps"] if f["fold_lanes"] else kw  # the kernel columns a folded job covers
    if f["pad_top"] >= kh or f["pad_left"] >= span:
        return f"padding (top {f['pad_top']}, left {f['pad_left']}) not below the {kh}x{span} kernel"
    if f["in_ch"] % cfg.rows:
        return f"in_ch {f['in_ch']} is not a multiple of the {cfg.rows} rows"
    fold = _fold_limit(f, cfg)
    if fold:
        return fold
    t_in = f["in_ch"] // cfg.rows
    if t_in * f["in_h"] * f["in_w"] > cfg.in_depth:
        return f"{t_in * f['in_h'] * f['in_w']} input pixel groups exceed IN_DEPTH {cfg.in_depth}"
    if t_in * kh * kw * cfg.rows > cfg.wt_depth:
        return f"{t_in * kh * kw * cfg.rows} weight rows per output tile exceed WT_DEPTH {cfg.wt_depth}"
    comp_h, comp_w = computed_map(f["out_h"], f["out_w"], f["pool"])
    if comp_h * comp_w > cfg.acc_depth:
        return f"{comp_h * comp_w} computed pixels exceed ACC_DEPTH {cfg.acc_depth}"
    if f["pool"] and (f["out_h"] < 2 or f["out_w"] < 2):
        return f"pooling a {f['out_h']}x{f['out_w']} map (at least 2x2)"
    if f["sum_pool"] and ((kh, kw, sh, sw) != (1, 1, 1, 1) or f["pool"] or f["add"] or f["fold_lanes"]
                          or f["strip_rows"]):
        return (f"sum_pool with kernel {kh}x{kw}, stride {sh}x{sw}, pool {f['pool']}, add {f['add']}, fold_lanes "
                f"{f['fold_lanes']}, strip_rows {f['strip_rows']} (kernel 1x1, stride 1, no pool, add, fold or strips)")
    return ""


def _ahead_limit(f: dict, previous: dict | None, cfg: EngineConfig) -> str:
    """Why an ``input_ahead`` job cannot load its input beside the job before's, or ''."""
    if f["input_follows"] and not f["input_ahead"]:
        return "input_follows without input_ahead"
    if not f["input_ahead"]:
        return ""
    if f["fold_lanes"] or (previous is not None and previous["fold_lanes"]):
        return "input_ahead with a folded job or after one"
    together = input_band_groups(f, cfg) + (0 if previous is None else input_band_groups(previous, cfg))
    if together > cfg.in_depth:
        return f"input_ahead: {together} input pixel groups with the job before's exceed IN_DEPTH {cfg.in_depth}"
    return ""


def _fold_limit(f: dict, cfg: EngineConfig) -> str:
    """Why a folded job's ``fold_taps``/``fold_lanes`` are outside docs/engine.md's limits, or ''."""
    lanes, taps = f["fold_lanes"], f["fold_taps"]
    if not lanes:
        return ""
    if f["in_ch"] != cfg.rows:
        return f"a folded job reads one input tile (in_ch {f['in_ch']}, not {cfg.rows})"
    if taps < 2 or lanes * taps > cfg.rows:
        return f"fold of {taps} taps of {lanes} lanes (2 or more taps, at most {cfg.rows} lanes)"
    if f["kernel_w"] * taps > FOLD_SPAN:
        return f"a folded kernel of {f['kernel_w']}x{taps} columns (at most {FOLD_SPAN})"
    if f["in_h"] * f["in_w"] + taps - 1 > cfg.in_depth:
        return f"{f['in_h'] * f['in_w']} input pixel groups and {taps - 1} of fold exceed IN_DEPTH {cfg.in_depth}"
    return ""


def _band(f: dict, cfg: EngineConfig) -> str:
    """Why a command's band, tile or channel range lies outside its tensor, or ''."""
    comp_h, comp_w = computed_map(f["out_h"], f["out_w"], f["pool"])
    written_rows = written_map(f["out_h"], f["out_w"], pool=f["pool"], sum_pool=f["sum_pool"])[0]
    if f["in_y0"] + f["in_h"] > f["in_height"]:
        return f"input rows {f['in_y0']}..{f['in_y0'] + f['in_h'] - 1} beyond in_height {f['in_height']}"
    if f["out_y0"] + written_rows > f["out_height"]:
        return f"output rows {f['out_y0']}..{f['out_y0'] + written_rows - 1} beyond out_height {f['out_height']}"
    if f["add"] and f["skip_y0"] + comp_h > f["skip_height"]:
        return f"skip rows {f['skip_y0']}..{f['skip_y0'] + comp_h - 1} beyond skip_height {f['skip_height']}"
    if f["add"] and comp_w > f["skip_width"]:
        return f"{comp_w} skip columns beyond skip_width {f['skip_width']}"
    t_in = f["in_ch"] // cfg.rows
    if f["narrow_in"] and t_in > 1:
        return f"{t_in} input tiles of a narrow input (one word a pixel holds one tile)"
    if not f["narrow_in"] and t_in * cfg.in_words > f["in_pixel_words"]:
        return f"{t_in} input tiles of {cfg.in_words} word(s) beyond in_pixel_words {f['in_pixel_words']}"
    written = _written_words(f["out_ch"], cfg)
    if f["out_word_offset"] + written > f["out_pixel_words"]:
        return (f"output words {f['out_word_offset']}..{f['out_word_offset'] + written - 1} beyond out_pixel_words "
                f"{f['out_pixel_words']}")
    return ""


def _written_words(out_ch: int, cfg: EngineConfig) -> int:
    """Words of an output pixel a job writes: those holding its channels (docs/engine.md); the
    pixel's remaining words up to ``pixel_words`` are padding that stays zero."""
    return -(-tensor_lanes(out_ch, cfg) // cfg.lanes_per_word)


def _bursts(addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first index, beats)`` of the bursts carrying the word addresses ``addrs`` in order: each
    contiguous run, split at 4 KB boundaries and then every 16 beats."""
    n = addrs.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    segment_start = np.ones(n, dtype=bool)
    segment_start[1:] = addrs[1:] != addrs[:-1] + 1
    segment_start |= addrs % WORDS_PER_BOUNDARY == 0
    starts = np.flatnonzero(segment_start)
    position = np.arange(n) - starts[np.cumsum(segment_start) - 1]
    first = np.flatnonzero(position % MAX_BURST_BEATS == 0)
    return first, np.diff(np.append(first, n))


class _Bus:
    """The engine's AXI master over ``memory`` (word 0 at byte ``base``) inside the window."""

    def __init__(self, memory: np.ndarray, base: int, win_base: int, win_size: int):
        self.memory, self.base = memory, base
        self.win_lo, self.win_hi = win_base, min(win_base + win_size, 1 << BUS_ADDR_BITS)
        self.mem_lo, self.mem_hi = base, base + memory.size * BUS_BYTES
        self.beats_read = self.beats_written = 0

    def _issue(self, addrs: np.ndarray):
        """Cut ``addrs`` (word addresses) into bursts: ``(first index, beats)`` of each, how many
        are issued (those before the first that faults) and that fault, or None. A burst outside
        the window is refused before it is issued (WINDOW); one outside the memory gets DECERR (BUS)."""
        first, beats = _bursts(addrs)
        start = addrs[first] * BUS_BYTES
        end = start + beats * BUS_BYTES
        outside = (start < self.win_lo) | (end > self.win_hi)
        unmapped = (start < self.mem_lo) | (end > self.mem_hi)
        bad = np.flatnonzero(outside | unmapped)
        if not bad.size:
            return first, beats, first.size, None
        index = int(bad[0])
        return first, beats, index, _Fault(ERROR_CODE["WINDOW" if outside[index] else "BUS"], int(start[index]))

    def read(self, addrs: np.ndarray) -> np.ndarray:
        """The words at word addresses ``addrs``, read burst by burst."""
        addrs = np.asarray(addrs, dtype=np.int64)
        _, beats, issued, fault = self._issue(addrs)
        self.beats_read += int(beats[:issued].sum())
        if fault is not None:
            raise fault
        return self.memory[addrs - self.base // BUS_BYTES]

    def write(self, addrs: np.ndarray, words: np.ndarray) -> None:
        """Write ``words`` at word addresses ``addrs`` burst by burst; the bursts before a fault
        complete."""
        addrs = np.asarray(addrs, dtype=np.int64)
        first, _, issued, fault = self._issue(addrs)
        done = int(first[issued]) if fault is not None else addrs.size
        self.memory[addrs[:done] - self.base // BUS_BYTES] = words[:done]
        self.beats_written += done
        if fault is not None:
            raise fault


def execute(memory_words: np.ndarray, *, cmd_base: int, cmd_count: int, win_base: int, win_size: int,
            config: EngineConfig, base: int = 0) -> ExecResult:
    """Run ``cmd_count`` commands from byte address ``cmd_base`` over ``memory_words`` (uint64,
    written in place; word 0 is at bus address ``base``), allowed to touch
    ``[win_base, win_base + win_size)``. Stops at the first error as the engine does."""
    if memory_words.dtype != np.uint64 or memory_words.ndim != 1:
        raise ValueError(f"memory must be a 1-D uint64 array, got {memory_words.dtype} of shape "
                         f"{memory_words.shape}")
    if base % BUS_BYTES:
        raise ValueError(f"memory base 0x{base:X} is not {BUS_BYTES}-byte aligned")
    bus = _Bus(memory_words, base, win_base, win_size)
    result = ExecResult()
    clock = ListClock(config)
    index, previous = 0, None
    try:
        if cmd_count and cmd_base % COMMAND_BYTES:
            raise _Fault(ERROR_CODE["ALIGN"], cmd_base)
        for index in range(cmd_count):
            addr = cmd_base + index * COMMAND_BYTES
            fields = decode_command(bus.read(addr // BUS_BYTES + np.arange(COMMAND_WORDS)))
            problem = command_error(fields, config, previous)
            if problem is not None:
                raise _Fault(problem[0], problem[2])
            previous = fields
            try:
                saturated = _run_job(bus, fields, config)
            except golden.ContractError as exc:  # only from weights no placement makes
                raise golden.ContractError(f"command {index}: {exc}; the reference does not model an "
                                           f"accumulator overflow") from None
            result.saturated += saturated
            result.cycles = clock.job(fields)
            if fields["stats"]:
                stat = (result.cycles & STAT_MAX) | (min(saturated, STAT_MAX) << 32)
                bus.write(np.array([fields["stat_addr"] // BUS_BYTES]), np.array([stat], dtype=np.uint64))
            result.commands_done += 1
        result.cycles = clock.done
        result.done = True
    except _Fault as fault:
        result.error, result.error_index, result.error_addr = fault.code, index, fault.addr
    result.beats_read, result.beats_written = bus.beats_read, bus.beats_written
    return result


def _pixel_rows(y0: int, rows: int, width: int, columns: int) -> np.ndarray:
    """Pixel indices (raster order) of rows ``y0 ..`` and columns ``0 .. columns - 1`` of a map ``width`` wide."""
    return ((y0 + np.arange(rows)).reshape(-1, 1) * width + np.arange(columns)).reshape(-1)


def _run_job(bus: _Bus, f: dict, cfg: EngineConfig) -> int:
    """Read one checked command's data, compute it, write its outputs; its saturated outputs."""
    k, c_in, c_out = (f["kernel_h"], f["kernel_w"]), f["in_ch"], f["out_ch"]
    t_in, t_out = c_in // cfg.rows, stream_format.tiles(c_out, cfg.cols)
    comp_h, comp_w = computed_map(f["out_h"], f["out_w"], f["pool"])
    skip_pixels = comp_h * comp_w if f["add"] else 0
    # one output tile's words in the weight block (all but the last tile's are whole)
    block = stream_format.cotile_word_count(c_in, k, cfg)
    wt = f["wt_addr"] // BUS_BYTES
    in_pixels = _pixel_rows(f["in_y0"], f["in_h"], max(1, f["in_row_pitch"]) * f["in_w"], f["in_w"])
    in_start = f["in_addr"] // BUS_BYTES + in_pixels * f["in_pixel_words"]
    if f["add"]:
        skip_start = (f["skip_addr"] // BUS_BYTES + f["skip_pixel_words"]
                      * _pixel_rows(f["skip_y0"], comp_h, f["skip_width"], comp_w)).reshape(-1, 1)
    # the stream in the core's order (docs/engine.md); -1 marks a skip word beyond the skip
    # tensor's pixel, which is not read but streamed as zero
    parts = []
    for o in range(t_out):
        tile = wt + o * block
        row_words = stream_format.tile_out_words(c_out, o, cfg)  # a weight row's and a skip pixel's
        tile_weights = stream_format.tile_weight_words(k, cfg, row_words=row_words)
        parts.append(tile + np.arange(cfg.cols))
        if o == 0:
            group = input_group_words(cfg, narrow=bool(f["narrow_in"]))
            inputs = [(in_start.reshape(-1, 1) + t * cfg.in_words + np.arange(group)).reshape(-1) for t in range(t_in)]
            if f["weights_first"]:
                parts += [tile + cfg.cols + np.arange(t_in * tile_weights), *inputs]
            else:
                first_tap = stream_format.leading_weight_words((f["kernel_h"], f["kernel_w"]), cfg,
                                                               striped=bool(f["strip_rows"]), row_words=row_words)
                for t in range(t_in):
                    weights = tile + cfg.cols + t * tile_weights + np.arange(tile_weights)
                    parts += [weights[:first_tap], inputs[t], weights[first_tap:]]
        else:
            parts.append(tile + cfg.cols + np.arange(t_in * tile_weights))
        if f["add"]:
            word = o * cfg.wt_words + np.arange(row_words)
            parts.append(np.where(word < f["skip_pixel_words"], skip_start + word, -1).reshape(-1))
    source = np.concatenate(parts)
    stream = np.zeros(source.size, dtype=np.uint64)
    stream[source >= 0] = bus.read(source[source >= 0])
    values, saturated = _compute(stream, f, cfg, skip_pixels)
    # output tile o of pixel (i, j): words out_word_offset + o * wt_words .. of the pixel, only
    # the words holding the layer's channels (the last tile's zero-extended to them)
    written = _written_words(c_out, cfg)
    out_h, out_w = values.shape[1:]
    lanes = np.zeros((t_out * cfg.cols, out_h * out_w), dtype=np.int64)
    lanes[:c_out] = values.reshape(c_out, -1)
    tiles = stream_format.pack_lanes(lanes.reshape(t_out, cfg.cols, -1).transpose(0, 2, 1).reshape(-1, cfg.cols),
                                     width=cfg.width).reshape(t_out, out_h * out_w, cfg.wt_words)
    out_pixels = _pixel_rows(f["out_y0"], out_h, out_w, out_w)
    out_start = f["out_addr"] // BUS_BYTES + out_pixels * f["out_pixel_words"] + f["out_word_offset"]
    addrs, words = [], []
    for o in range(t_out):
        count = written - o * cfg.wt_words if o == t_out - 1 else min(cfg.wt_words, written - o * cfg.wt_words)
        data = np.zeros((out_h * out_w, count), dtype=np.uint64)
        data[:, : min(count, cfg.wt_words)] = tiles[o, :, :count]
        addrs.append((out_start.reshape(-1, 1) + o * cfg.wt_words + np.arange(count)).reshape(-1))
        words.append(data.reshape(-1))
    bus.write(np.concatenate(addrs), np.concatenate(words))
    return saturated


def _compute(stream: np.ndarray, f: dict, cfg: EngineConfig, skip_pixels: int) -> tuple[np.ndarray, int]:
    """The core on one job's input stream: its ``(out_ch, h, w)`` output (after pooling) and
    saturated count, with :func:`radix.golden.conv_job` on the decoded stream."""
    k, c_in, c_out = (f["kernel_h"], f["kernel_w"]), f["in_ch"], f["out_ch"]
    comp_h, comp_w = computed_map(f["out_h"], f["out_w"], f["pool"])
    narrow = bool(f["narrow_in"])
    input_part, cotiles = stream_format.split_job_words(
        stream, c_in=c_in, height=f["in_h"], width_px=f["in_w"], kernel=k, c_out=c_out, config=cfg,
        skip_pixels=skip_pixels, narrow=narrow, striped=bool(f["strip_rows"]), weights_first=bool(f["weights_first"]))
    x = stream_format.decode_input_words(input_part, c_in, f["in_h"], f["in_w"], cfg, unsigned=bool(f["in_unsigned"]),
                                         narrow=narrow)
    tiles = [stream_format.decode_cotile_words(words, c_in, k, cfg, skip_pixels=skip_pixels,
                                               skip_unsigned=bool(f["skip_unsigned"]),
                                               row_words=stream_format.tile_out_words(c_out, o, cfg))
             for o, words in enumerate(cotiles)]
    part = {key: np.concatenate([tile[key] for tile in tiles])[:c_out] for key in tiles[0]}
    # lanes whose weights are all zero (the tensor's unused lanes) add exactly nothing: leaving
    # them out keeps the golden model's reduction check to the layer's real products
    weights = part["weights"]
    if f["fold_lanes"]:
        x, weights = unfold(x, weights, lanes=f["fold_lanes"], taps=f["fold_taps"])
    used = np.flatnonzero(np.any(weights != 0, axis=(0, 2, 3)))
    skip = part["skip"].reshape(1, c_out, comp_h, comp_w) if f["add"] else None
    # the engine clamps the skip shifts when a tile starts (docs/engine.md, step 5)
    skip_shift = np.clip(part["skip_shift"], *skip_shift_range(cfg.width, unsigned=bool(f["skip_unsigned"])))
    out = golden.conv_job(
        x[None, used], weights[:, used], part["bias"], stride=(f["stride_h"], f["stride_w"]),
        pad_top=f["pad_top"], pad_left=f["pad_left"], out_h=f["out_h"], out_w=f["out_w"], shift=part["shift"],
        relu=bool(f["relu"]), pool=bool(f["pool"]), sum_pool=bool(f["sum_pool"]), width=cfg.width, skip=skip, skip_shift=skip_shift,
        unsigned_in=bool(f["in_unsigned"]), unsigned_skip=bool(f["skip_unsigned"]),
        unsigned_out=bool(f["out_unsigned"]))
    return out.values[0], out.saturated


def unfold(x: np.ndarray, weights: np.ndarray, *, lanes: int, taps: int) -> tuple[np.ndarray, np.ndarray]:
    """A folded job (docs/engine.md, "Few-channel layers") as the convolution it computes: the
    input's first ``lanes`` channels and ``(C_out, lanes, KH, KW * taps)`` weights, whose column
    ``v * taps + g`` is the folded weights' column ``v`` at lane ``g * lanes + c``. Lanes from
    ``lanes * taps`` on are never multiplied (the engine zeroes them)."""
    c_out, _, kh, kw = weights.shape
    grouped = weights[:, : lanes * taps].reshape(c_out, taps, lanes, kh, kw)
    return x[:lanes], grouped.transpose(0, 2, 3, 4, 1).reshape(c_out, lanes, kh, kw * taps)


class ReferenceBusTransport(BusTransport):
    """The reference bus-master engine behind its registers and one memory buffer.

    ``CTRL.START`` runs the list synchronously with :func:`execute`; ``STATUS.DONE`` and
    ``STATUS.ERROR`` are sticky (write 1 to clear); ``CTRL.RESET`` returns to idle and clears the
    status and the counters. ``CYCLES`` is the cycle model's estimate. The buffer sits at bus
    address ``base``; the last list's :class:`ExecResult` is ``last_result``.
    """

    name = "reference"
    measures_cycles = False  # CYCLES comes from the analytic cycle model

    def __init__(self, config: EngineConfig = DEFAULT_CONFIG, *, base: int = DEFAULT_BASE):
        super().__init__()
        if base % COMMAND_BYTES:
            raise ValueError(f"buffer base 0x{base:X} is not {COMMAND_BYTES}-byte aligned")
        self.config, self.base = config, base
        self.regs = {reg.offset: build_value(reg, config) or 0 for reg in BUS_REGISTERS}
        self._by_offset = {reg.offset: reg for reg in BUS_REGISTERS}
        self._memory = np.zeros(0, dtype=np.uint64)
        self.last_result: ExecResult | None = None

    # -- registers ----------------------------------------------------------------------
    def read(self, offset: int) -> int:
        self.register_accesses += 1
        return self.regs.get(offset, 0)

    def write(self, offset: int, value: int) -> None:
        self.register_accesses += 1
        reg = self._by_offset.get(offset)
        if reg is None or reg.access == "ro":
            return
        if reg.name == "CTRL":
            self.regs[offset] = value & field_mask_of("CTRL", "IRQ_EN")
            if value & field_mask_of("CTRL", "RESET"):
                self._idle()
            elif value & field_mask_of("CTRL", "START"):
                self._start()
        elif reg.name == "STATUS":
            self.regs[offset] &= ~(value & (field_mask_of("STATUS", "DONE") | field_mask_of("STATUS", "ERROR")))
        else:
            self.regs[offset] = value & 0xFFFFFFFF

    def _reg(self, name: str) -> int:
        return self.regs[bus_register(name).offset]

    def _set(self, name: str, value: int) -> None:
        self.regs[bus_register(name).offset] = value & 0xFFFFFFFF

    def _idle(self) -> None:
        """CTRL.RESET: nothing runs between register accesses here, so only the state clears."""
        for name in ("STATUS", "CYCLES", "SATURATED", "CMD_DONE", "ERR_CODE", "ERR_INDEX", "ERR_ADDR", "BEATS_READ",
                     "BEATS_WRITTEN"):
            self._set(name, 0)

    def _start(self) -> None:
        started = time.perf_counter()
        result = execute(self._memory, cmd_base=self._reg("CMD_BASE"), cmd_count=self._reg("CMD_COUNT"),
                         win_base=self._reg("WIN_BASE"), win_size=self._reg("WIN_SIZE"), config=self.config,
                         base=self.base)
        self.last_result = result
        self.engine_seconds += time.perf_counter() - started
        self._set("STATUS", field_mask_of("STATUS", "DONE") if result.done else field_mask_of("STATUS", "ERROR"))
        for name, value in (("CYCLES", result.cycles), ("SATURATED", min(result.saturated, STAT_MAX)),
                            ("CMD_DONE", result.commands_done), ("ERR_CODE", result.error),
                            ("ERR_INDEX", result.error_index), ("ERR_ADDR", result.error_addr),
                            ("BEATS_READ", result.beats_read), ("BEATS_WRITTEN", result.beats_written)):
            self._set(name, value)

    # -- memory -------------------------------------------------------------------------
    def allocate(self, nbytes: int) -> int:
        self._memory = np.zeros(-(-int(nbytes) // BUS_BYTES), dtype=np.uint64)
        return self.base

    @property
    def memory_size(self) -> int:
        return self._memory.size * BUS_BYTES

    def _words(self, offset: int, count: int) -> slice:
        if offset % BUS_BYTES or offset < 0 or offset + count * BUS_BYTES > self.memory_size:
            raise ValueError(f"{count} words at byte offset {offset} are not aligned words inside the "
                             f"{self.memory_size}-byte buffer")
        return slice(offset // BUS_BYTES, offset // BUS_BYTES + count)

    def write_memory(self, offset: int, words: np.ndarray) -> None:
        words = np.asarray(words, dtype=np.uint64).reshape(-1)
        self._memory[self._words(offset, words.size)] = words

    def read_memory(self, offset: int, count: int) -> np.ndarray:
        return self._memory[self._words(offset, count)].copy()

    # -- control ------------------------------------------------------------------------
    def wait_done(self, cycles: int) -> bool:
        return bool(self._reg("STATUS") & (field_mask_of("STATUS", "DONE") | field_mask_of("STATUS", "ERROR")))
