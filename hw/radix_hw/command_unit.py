"""The command unit: fetches, checks and runs a command list (docs/engine.md, "Memory and commands").

Two cooperating parts:

* the **issuer** fetches command ``n`` (one 8-beat burst), checks it (``OPCODE``, ``LIMIT``,
  ``BAND``, ``ALIGN``), computes its addresses with one shared multiplier, hands the job to the
  runner and issues the job's read descriptors in the order the core's input stream takes them
  (bias words, per input tile ``t`` its first tap's weight rows (a striped job's all), the tile
  and the rest of its weight rows, skip pixels, the other tiles' bias words, weights and skip pixels).
  With ``sync`` it waits, before the first input read, until every earlier command is
  complete (the skip reads come after it); with ``input_ahead`` until every command but the one
  before is (the skip reads still wait for all), and with ``input_follows`` it reads the input
  row by row, each row once the write master's ``answered_end`` passes its end or the command
  before is complete. It then goes on with command ``n + 1`` while the
  core still computes ``n``, so the next command and its weights are read while the current
  job computes and drains.
* the **runner** starts the core's loader on each handed-over job as soon as the loader is
  idle (so a job's bias words and first weight rows are loaded while the job before still
  computes and drains), then the core itself once it is free, gives the write master the job's
  output tiles (the last one ``final``, for ``answered_end``), waits for the core's last word and
  the writes' responses, writes the stats word
  (with ``stats``) and counts the command complete.
"""

from __future__ import annotations

import math
import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from radix.engine_spec import (BUS_ADDR_BITS, COMMAND_FIELD, COMMAND_FIELDS, COMMAND_WORDS, CORE_LAYER_FIELDS,
                               ERROR_CODE, FOLD_SPAN, KERNEL_BITS, KERNEL_RANGE, OPCODE_CONV, STRIDE_RANGE,
                               EngineConfig)

from .axi4 import DATA_BITS
from .bus_read import BEATS_BITS, ReadDescriptor
from .bus_write import WriteDescriptor
from .helpers import small_product
from .layout import LayerConfigLayout

DEST_CORE, DEST_COMMAND = 0, 1
CommandLayout = data.StructLayout({f.name: f.width for f in COMMAND_FIELDS})
CODE_BITS = 4
_Checks = data.StructLayout({"opcode": 1, "limit": 16, "band": 8, "align": 1, "unaligned": BUS_ADDR_BITS})
_FoldChecks = data.StructLayout({"folded": 1, "pad": 1, "limit": 1})
WIDE = 50  # bits of the derived sizes and offsets: products of three 16-bit fields, in bytes


def reciprocal(divisor: int, *, bits: int) -> tuple[int, int]:
    """``(multiplier, shift)`` with ``x // divisor == (x * multiplier) >> shift`` for every
    ``0 <= x < 2**bits`` (checked exhaustively, so a wrong constant cannot be built)."""
    shift = bits + max(1, math.ceil(math.log2(divisor)))
    multiplier = -(-(1 << shift) // divisor)
    if any((x * multiplier) >> shift != x // divisor for x in range(1 << bits)):
        raise ValueError(f"no {shift}-bit reciprocal of {divisor} is exact below 2**{bits}")
    return multiplier, shift


class CommandUnit(wiring.Component):
    """Runs ``cmd_count`` commands from ``cmd_base`` after ``start`` (see the module docstring).

    ``busy`` is high from ``start`` until ``done`` (a pulse once the last command is complete) or
    ``error`` (a pulse with ``error_code`` and ``error_index``: a check failed; the caller stops
    the masters and resets this unit). ``commands_done`` and ``saturated`` count since ``start``;
    ``cycles`` (the caller's count since START) goes into the stats words.
    """

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        super().__init__({
            "start": In(1),
            "cmd_base": In(BUS_ADDR_BITS),
            "cmd_count": In(32),
            "cycles": In(32),
            "read_desc": Out(stream.Signature(ReadDescriptor)),
            "cmd_words": In(stream.Signature(DATA_BITS)),
            "write_desc": Out(stream.Signature(WriteDescriptor)),
            "writer_quiet": In(1),
            "answered_end": In(BUS_ADDR_BITS + 1),
            "answered_clear": Out(1),
            "hold": In(1),
            "layer": Out(LayerConfigLayout),
            "core_start": Out(1),
            "load_layer": Out(LayerConfigLayout),
            "load_start": Out(1),
            "load_idle": In(1),
            "core_busy": In(1),
            "core_done": In(1),
            "core_saturated": In(32),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(CODE_BITS),
            "error_index": Out(32),
            "error_addr": Out(BUS_ADDR_BITS),
            "issuing": Out(32),
            "commands_done": Out(32),
            "saturated": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.rows, cfg.cols
        in_words, wt_words, lpw, tile_lanes = cfg.in_words, cfg.wt_words, cfg.lanes_per_word, cfg.tile_lanes

        # -- issuer: fetch --------------------------------------------------------------------
        n = self.issuing
        cmd = Signal(CommandLayout)
        raw = Signal(COMMAND_WORDS * DATA_BITS)
        word_count = Signal(range(COMMAND_WORDS + 1))
        m.d.comb += self.cmd_words.ready.eq(1)
        with m.If(self.cmd_words.valid):
            m.d.sync += [raw.word_select(word_count[:3], DATA_BITS).eq(self.cmd_words.payload),
                         word_count.eq(word_count + 1)]
        m.d.comb += cmd.eq(Cat(*(raw.word_select(f.word, DATA_BITS)[f.lsb:f.lsb + f.width] for f in COMMAND_FIELDS)))

        # Derived values, one product per step of the shared multiplier.
        t_in, t_out, kk = Signal(16), Signal(16), Signal(2 * KERNEL_BITS)  # kk: the KH*KW taps
        hw_in, band_groups, in_off, comp_px, out_px, out_off, skip_off, skip_row = (
            Signal(WIDE, name=name) for name in ("hw_in", "band_groups", "in_off", "comp_px", "out_px",
                                                 "out_off", "skip_off", "skip_row"))
        t_chunk, t_kk, extra_lanes, in_run = (Signal(WIDE, name=name) for name in ("t_chunk", "t_kk", "extra_lanes",
                                                                                      "in_run"))
        # The last output tile's weight rows and skip pixels carry only the words holding its
        # channels (radix.stream_format.tile_out_words): its first lane, those words, one tap's
        # rows of them, one input tile's and all input tiles' (the others' are whole tiles').
        # Registers in a chain from t_out, kk and t_kk, each a shift-and-add of a constant or of
        # the 2-bit words_last: the multiplier's steps would lengthen every command's derive.
        last_base, kk_rows, t_kk_rows, one_tile_last, t_chunk_last = (
            Signal(WIDE, name=name) for name in ("last_base", "kk_rows", "t_kk_rows", "one_tile_last", "t_chunk_last"))
        words_last = Signal(range(wt_words + 1))
        chunk_last = Signal(range(rows * wt_words + 1))
        scratch = Signal(WIDE)
        # the input's rows in memory: in_row_pitch * in_w pixels apart (in_w with 0 or 1), and in words
        in_pitch, in_row_words = Signal(16 + 4), Signal(WIDE)
        m.d.sync += in_pitch.eq(Mux(cmd.in_row_pitch > 1, small_product(cmd.in_row_pitch, cmd.in_w), cmd.in_w))
        # the computed map (even-cropped by pooling) and the written one (halved by pooling, one
        # pixel for a summed job), registered: the command is complete cycles before DERIVE
        # reads them, and the checks then start from flip-flops
        comp_h, comp_w, rows_out, width_out = (Signal(16, name=name) for name in ("comp_h", "comp_w", "rows_out",
                                                                                  "width_out"))
        m.d.sync += [comp_h.eq(Mux(cmd.pool, cmd.out_h & ~1, cmd.out_h)),
                     comp_w.eq(Mux(cmd.pool, cmd.out_w & ~1, cmd.out_w)),
                     rows_out.eq(Mux(cmd.sum_pool, 1, Mux(cmd.pool, cmd.out_h >> 1, cmd.out_h))),
                     width_out.eq(Mux(cmd.sum_pool, 1, Mux(cmd.pool, cmd.out_w >> 1, cmd.out_w)))]
        mul_r, shift_r = reciprocal(rows, bits=17)
        mul_c, shift_c = reciprocal(cols, bits=17)
        chunk_words = rows * wt_words  # weight words per tap and input tile
        # (destination, a, b[, shift right]) for each step; a product is registered a cycle later
        steps = [
            (t_in, (cmd.in_ch + rows - 1), Const(mul_r), shift_r),
            (t_out, (cmd.out_ch + cols - 1), Const(mul_c), shift_c),
            (hw_in, cmd.in_h, cmd.in_w, 0),
            (band_groups, hw_in, t_in, 0),
            (in_row_words, in_pitch, cmd.in_pixel_words, 0),
            (in_off, in_row_words, cmd.in_y0, 0),
            (comp_px, comp_h, comp_w, 0),
            (out_px, rows_out, width_out, 0),
            (scratch, cmd.out_y0, width_out, 0),
            (out_off, scratch, cmd.out_pixel_words, 0),
            (scratch, cmd.skip_y0, cmd.skip_width, 0),
            (skip_off, scratch, cmd.skip_pixel_words, 0),
            (skip_row, cmd.skip_width, cmd.skip_pixel_words, 0),
            (kk, cmd.kernel_h, cmd.kernel_w, 0),
            (t_kk, t_in, kk, 0),
            (t_chunk, t_kk, Const(chunk_words), 0),
            (extra_lanes, t_out - 1, Const(tile_lanes - cols), 0),
            (in_run, hw_in, Mux(cmd.narrow_in, 1, in_words), 0),
        ]
        # ceil(lanes / lanes_per_word) of the last tile's lanes, at most wt_words (the chain is
        # stale for a few cycles after t_out's and t_kk's steps: HAND, which reads its end, comes
        # more than a dozen cycles after the last step)
        last_lanes_up = Signal(18)
        m.d.sync += [last_base.eq(small_product(Const(cols), t_out - 1)),
                     last_lanes_up.eq(cmd.out_ch - last_base[:17] + lpw - 1),
                     words_last.eq(Mux(last_lanes_up[lpw.bit_length() - 1:] >= wt_words, wt_words,
                                       last_lanes_up[lpw.bit_length() - 1:])),
                     chunk_last.eq(small_product(words_last, Const(rows))),
                     kk_rows.eq(small_product(Const(rows), kk)), t_kk_rows.eq(small_product(Const(rows), t_kk)),
                     one_tile_last.eq(small_product(words_last, kk_rows)),
                     t_chunk_last.eq(small_product(words_last, t_kk_rows))]
        # one-hot step: selects the operands in an AND-OR tree and enables the destination, so a
        # destination's enable is three flip-flops ANDed, not a decode of a step count
        step_hot = Signal(len(steps))
        phase = Signal(range(5))
        phase_last = Signal()  # phase == 4, kept a cycle ahead
        # registered operands (twice: the step's selection, then the DSP48E1 input registers),
        # partial products and product: a step takes five cycles and the multiplier's paths are
        # register to register. Each partial product (24 x 17 and 24 x 15 bits) fits one DSP48E1
        # with its output register; their sum is a fabric adder.
        mul_a, mul_b = Signal(32), Signal(24)
        op_a, op_b = Signal(32), Signal(24)
        held_a, held_b = Signal(32), Signal(24)
        part_lo, part_hi = Signal(24 + 17), Signal(24 + 15)
        product = Signal(WIDE)
        m.d.sync += [op_a.eq(mul_a), op_b.eq(mul_b), held_a.eq(op_a), held_b.eq(op_b),
                     part_lo.eq(held_a[:17] * held_b),
                     part_hi.eq(held_a[17:] * held_b), product.eq(Cat(part_lo[:17], part_lo[17:] + part_hi))]

        # -- issuer: descriptor walk state ----------------------------------------------------
        o_tile = Signal(16)  # output tile being issued
        t_tile = Signal(16)  # input tile being issued (tile 0 only)
        wt_block = Signal(BUS_ADDR_BITS)  # the current output tile's weight block
        tile_words = Signal(WIDE)
        # words of an output pixel that hold the layer's channels (docs/engine.md), for the checks and
        # the runner: (out_ch + extra_lanes + lanes_per_word - 1) / lanes_per_word
        out_words = Signal(WIDE)
        out_ch_up = Signal(17)  # out_ch + lanes_per_word - 1, for out_words
        out_sum_lo = Signal(WIDE // 2 + 1)
        out_room = Signal(signed(17))  # out_pixel_words - out_word_offset: room for out_words
        checks = Signal(_Checks)  # the failed checks of the command, registered before the verdict
        # the verdict from them, in the order of docs/engine.md, registered again: the issuer's
        # state then selects a register, not the checks' reduction and priority
        verdict = Signal(data.StructLayout({"failed": 1, "code": CODE_BITS, "addr": BUS_ADDR_BITS}))
        first_failure = [(checks.opcode, "OPCODE"), (checks.limit.any(), "LIMIT"), (checks.band.any(), "BAND"),
                         (checks.align, "ALIGN")]
        code = Const(0, CODE_BITS)
        for failed, name in reversed(first_failure):
            code = Mux(failed, ERROR_CODE[name], code)
        m.d.sync += [verdict.failed.eq(Cat(*(failed for failed, _ in first_failure)).any()), verdict.code.eq(code),
                     verdict.addr.eq(Mux(checks.opcode | checks.limit.any() | checks.band.any(), 0, checks.unaligned))]
        fold_terms = Signal(self._fold_terms_layout())  # a folded job's sizes, registered in CHECK
        fold_checks = Signal(_FoldChecks)  # and its checks, registered in CHECK_WORDS
        synced = Signal()
        # input_ahead (docs/engine.md, "The input loads ahead"): the command before's input band and
        # fold, and the input buffer's half each job's input takes (mirrored: from its top down),
        # kept at HAND; the command's own check of them, registered in CHECK_WORDS
        band_bits = self.config.in_depth.bit_length() + 1
        prev_groups, prev_folded, prev_mirror = Signal(band_bits), Signal(), Signal()
        ahead_groups, ahead_refused = Signal(band_bits + 1), Signal()  # registered in CHECK_WORDS
        ahead_over = ahead_refused | (cmd.input_ahead & (ahead_groups > self.config.in_depth))
        pending_mirror, job_mirror = Signal(), Signal()
        behind_one = Signal()  # complete == n - 1: every command before the one before is complete
        n_before = Signal(32)  # n - 1, kept with n (an add before the compare was a slow path)
        # input_follows: the input read row by row, each row once the job before's writes below its
        # end have their responses (answered_end) or the job before is complete; row_open is
        # registered from row_end, itself from row_addr, so a row waits ``settle`` cycles after
        # the address moves before its gate is read
        row_addr, row_end = Signal(BUS_ADDR_BITS), Signal(BUS_ADDR_BITS + 1)
        row_left, row_run = Signal(16), Signal(16 + 3)
        row_beats, row_count, row_outer = Signal(BEATS_BITS), Signal(16), Signal(16)  # the input read's operands
        row_open, settle = Signal(), Signal(2)
        m.d.sync += settle.eq(Mux(settle == 0, 0, settle - 1))  # the issuer's states below set it
        # a row's read taken moves on to the next row a cycle later, from a register (the take's
        # enables of some fifty flip-flops were the bus master's slowest path); the next row's
        # read waits that cycle (row_taken), and a new tile's setup (to_input) overrides it
        input_taken, row_taken = Signal(), Signal()
        m.d.sync += row_taken.eq(input_taken)
        with m.If(row_taken):
            m.d.sync += [row_addr.eq(row_addr + (in_row_words << 3)), row_left.eq(row_left - 1), settle.eq(3)]
        # registered compares: n changes only on the way to FETCH, many cycles before these are used,
        # and the commands complete in order (`complete` reaches n only after n's input is read)
        last_command = Signal()  # n + 1 == cmd_count (from next_n, set in FETCH: RECEIVE takes 8 words)
        next_n = Signal(32)
        caught_up = Signal()  # complete == n: every earlier command is complete
        # and these, of counters that change a state or more before they are used
        last_tile = Signal()  # o_tile + 1 == t_out
        last_in_tile = Signal()  # t_tile + 1 == t_in
        one_tile = Signal(WIDE)  # kk * chunk_words: one input tile's weight rows
        one_tap = Signal()  # kk == 1: an input tile's weight rows are its first tap's
        only_tile, next_last = Signal(), Signal()  # t_out == 1; o_tile + 2 == t_out
        # the output tile's row words, and its weight words per tap, per input tile, after the
        # first tap, for all input tiles: from ``tile_is_last``, which HAND and NEXT_TILE set as
        # the tile begins (registers a cycle behind it, off the issuer's state decode; the first
        # read that takes them is BIAS's successor's, the skip beats' SKIP's)
        tile_is_last = Signal()
        tile_row_words = Signal(range(wt_words + 1))
        tile_chunk, tile_one, tile_rest, tile_t_chunk = (Signal(WIDE, name=name) for name in (
            "tile_chunk", "tile_one", "tile_rest", "tile_t_chunk"))
        rest_last = Signal(WIDE)
        striped = Signal()  # strip_rows != 0: an input tile's weight rows all precede it
        # weights_first, in the first output tile: all its weight rows precede the input tiles
        first_tile_weights_first = Signal()
        rest_of_tile = Signal(WIDE)  # (kk - 1) * chunk_words: the weight rows after the input tile
        m.d.sync += [last_tile.eq(o_tile + 1 == t_out), last_in_tile.eq(t_tile + 1 == t_in),
                     one_tile.eq(kk * chunk_words), one_tap.eq(kk == 1), rest_of_tile.eq(one_tile - chunk_words),
                     striped.eq(cmd.strip_rows != 0),
                     only_tile.eq(t_out == 1), next_last.eq(o_tile + 2 == t_out),
                     rest_last.eq(one_tile_last - chunk_last),
                     out_ch_up.eq(cmd.out_ch + lpw - 1)]
        # The reads' addresses, kept in registers and stepped with the tiles (one adder each):
        fetch_addr = Signal(BUS_ADDR_BITS)  # CMD_BASE + 64 n
        in_base = Signal(BUS_ADDR_BITS)  # in_addr + 8 (in_off + t_tile * in_words)
        # the next input tile's, kept a cycle behind in_base (which moves only at a tile's end,
        # tiles apart): no adder after the issuer's state decode
        next_in_base = Signal(BUS_ADDR_BITS)
        m.d.sync += next_in_base.eq(in_base + (in_words << 3))
        tile_wt_addr = Signal(BUS_ADDR_BITS)  # input tile t_tile's weight rows: wt_addr + 8 cols + ...
        tile_rest_addr = Signal(BUS_ADDR_BITS)  # and those after its first tap: tile_wt_addr + 8 chunk_words
        wt_rest = Signal(BUS_ADDR_BITS)  # wt_block + 8 cols: the weights after the bias words
        skip_base = Signal(BUS_ADDR_BITS)  # skip_addr + 8 (skip_off + o_tile * wt_words)
        skip_have = Signal(signed(16 + wt_words.bit_length() + 2))  # skip_pixel_words - o_tile * wt_words
        skip_beats = Signal(range(wt_words + 1))  # the skip read's beats per pixel (read in SKIP)
        # the input read's words per pixel (one for a narrow input) and whether the pixels are
        # one run (in_pixel_words equal to it), set in CHECK
        in_group = Signal(range(in_words + 1))
        in_contiguous = Signal()

        m.d.sync += [skip_beats.eq(Mux(skip_have <= 0, 0, Mux(skip_have > tile_row_words, tile_row_words,
                                                              skip_have))),
                     tile_row_words.eq(Mux(tile_is_last, words_last, wt_words)),
                     tile_chunk.eq(Mux(tile_is_last, chunk_last, chunk_words)),
                     tile_one.eq(Mux(tile_is_last, one_tile_last, one_tile)),
                     tile_rest.eq(Mux(tile_is_last, rest_last, rest_of_tile)),
                     tile_t_chunk.eq(Mux(tile_is_last, t_chunk_last, t_chunk))]

        # The read descriptors leave through a register (loaded while empty or being taken), so
        # the state decode that forms them ends there, not in the read master's queue.
        desc = Signal(ReadDescriptor, name="next_desc")
        want_read = Signal()
        load_desc = ~self.read_desc.valid | self.read_desc.ready
        # every read carries its command's index: set once, so the tag's bits skip the state decode
        m.d.comb += [desc.outer_count.eq(1), desc.tag.eq(n)]
        # the payload loads whenever the register may (its enable then comes from flip-flops), the
        # valid bit says whether a read was wanted
        with m.If(load_desc):
            m.d.sync += [self.read_desc.payload.eq(desc), self.read_desc.valid.eq(want_read)]

        def read(addr, beats, *, count=1, stride=0, fill=0, outer_count=1, outer_stride=0, dest=DEST_CORE, when=None):
            """Offer a read (only ``when``, if given: its operands are selected by the state alone, so
            the wait's condition stays off the descriptor's paths); true when it is taken."""
            m.d.comb += [desc.addr.eq(addr), desc.beats.eq(beats), desc.count.eq(count), desc.stride.eq(stride),
                         desc.fill.eq(fill), desc.outer_count.eq(outer_count), desc.outer_stride.eq(outer_stride),
                         desc.dest.eq(dest), want_read.eq(1 if when is None else when)]
            return load_desc if when is None else load_desc & when

        # -- runner state -------------------------------------------------------------------
        handed = Signal()  # a checked job waits for the runner
        job = Signal(CommandLayout)
        job_t_out, job_out_px, job_out_off, job_out_words = Signal(16), Signal(WIDE), Signal(WIDE), Signal(WIDE)
        pending = [Signal.like(s, name=f"pending_{s.name}") for s in (job_t_out, job_out_px, job_out_off,
                                                                        job_out_words)]
        pending_cmd = Signal(CommandLayout)
        pending_loaded = Signal()  # the core's loader has started on the handed job
        take_job = Signal()
        complete = self.commands_done

        def fail(code: str, addr=0):
            m.d.comb += [self.error.eq(1)]
            m.d.sync += [self.error_code.eq(ERROR_CODE[code]), self.error_index.eq(n), self.error_addr.eq(addr)]
            m.next = "HALT"

        def to_input(base):
            """On to an input tile's reads, from ``base``: all its rows, or one at a time."""
            m.d.sync += [row_addr.eq(base), row_left.eq(Mux(cmd.input_follows, cmd.in_h, 1)),
                         settle.eq(Mux(cmd.input_follows, 3, 0))]  # a row's gate follows its address
            m.next = "INPUT"

        def after_input():
            """After an input tile: the rest of its weight rows, unless none follow it."""
            with m.If(one_tap | striped | first_tile_weights_first):
                m.next = "TILE_DONE"
            with m.Else():
                m.next = "TILE_WEIGHTS"

        def skip_or_next():
            """After a tile's weight rows: its skip pixels, with ``add``, then the next tile."""
            with m.If(cmd.add):
                m.next = "SKIP"
            with m.Else():
                m.next = "NEXT_TILE"

        with m.FSM(name="issuer"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n.eq(0), n_before.eq((1 << 32) - 1), self.busy.eq(1), complete.eq(0), self.saturated.eq(0),
                                 fetch_addr.eq(self.cmd_base), prev_groups.eq(0), prev_folded.eq(0),
                                 prev_mirror.eq(0)]
                    with m.If(self.cmd_base[:6] != 0):
                        fail("ALIGN", self.cmd_base)
                    with m.Elif(self.cmd_count == 0):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += [word_count.eq(0), next_n.eq(n + 1)]
                with m.If(read(fetch_addr, COMMAND_WORDS, dest=DEST_COMMAND)):
                    m.next = "RECEIVE"
            with m.State("RECEIVE"):
                m.d.sync += last_command.eq(next_n == self.cmd_count)
                with m.If(word_count == COMMAND_WORDS):
                    m.d.sync += [step_hot.eq(1), phase.eq(0), phase_last.eq(0)]
                    m.next = "DERIVE"
            with m.State("DERIVE"):
                m.d.sync += [phase.eq(Mux(phase_last, 0, phase + 1)), phase_last.eq(phase == 3)]
                m.d.comb += [
                    mul_a.eq(reduce(operator.or_, (Mux(step_hot[i], a, 0) for i, (_, a, _, _) in enumerate(steps)))),
                    mul_b.eq(reduce(operator.or_, (Mux(step_hot[i], b, 0) for i, (_, _, b, _) in enumerate(steps)))),
                ]
                with m.If(phase_last):
                    m.d.sync += step_hot.eq(step_hot << 1)
                    for index, (dst, _, _, shift) in enumerate(steps):
                        with m.If(step_hot[index]):
                            m.d.sync += dst.eq(product >> shift)
                with m.If(step_hot == 0):
                    m.next = "CHECK"
            with m.State("CHECK"):
                # out_ch_up + extra_lanes in two adds of half the width (the low half's carry between)
                group = Mux(cmd.narrow_in, 1, in_words)
                m.d.sync += [out_sum_lo.eq(out_ch_up + extra_lanes[:WIDE // 2]),
                             out_room.eq(cmd.out_pixel_words - cmd.out_word_offset),
                             in_group.eq(group), row_run.eq(small_product(group, cmd.in_w)),
                             in_contiguous.eq((cmd.in_pixel_words == group) & (cmd.in_row_pitch <= 1))]
                self._fold_terms(m, cmd, fold_terms, band_groups=band_groups)
                m.next = "CHECK_WORDS"
            with m.State("CHECK_WORDS"):
                self._check_fold(m, cmd, fold_terms, fold_checks)
                groups = Mux(cmd.fold_lanes != 0, fold_terms.groups, band_groups[:band_bits])
                m.d.sync += [ahead_groups.eq(groups + prev_groups),
                             ahead_refused.eq((cmd.input_follows & ~cmd.input_ahead)
                                              | (cmd.input_ahead & ((cmd.fold_lanes != 0) | prev_folded)))]
                out_sum = Cat(out_sum_lo[:WIDE // 2], extra_lanes[WIDE // 2:] + out_sum_lo[WIDE // 2])
                m.d.sync += out_words.eq(out_sum >> (lpw.bit_length() - 1))
                m.next = "CHECK_FLAGS"
            with m.State("CHECK_FLAGS"):
                self._check(m, cmd, checks, fold_checks, t_in=t_in, band_groups=band_groups, t_kk=t_kk, comp_px=comp_px,
                            rows_out=rows_out, comp_h=comp_h, comp_w=comp_w, out_words=out_words, out_room=out_room,
                            offsets=(in_off, out_off, Mux(cmd.add, skip_off, 0)), ahead_over=ahead_over)
                m.next = "WEIGH"
            with m.State("WEIGH"):
                m.next = "VERDICT"  # the verdict's registers below take the checks in this cycle
            with m.State("VERDICT"):
                with m.If(verdict.failed):
                    m.d.comb += self.error.eq(1)
                    m.d.sync += [self.error_code.eq(verdict.code), self.error_index.eq(n),
                                 self.error_addr.eq(verdict.addr)]
                    m.next = "HALT"
                with m.Else():
                    m.next = "HAND"
            with m.State("HAND"):
                # wait for the runner's slot, then issue this job's reads
                with m.If(~handed):
                    m.d.sync += [handed.eq(1), pending_loaded.eq(0), pending_cmd.eq(cmd), pending[0].eq(t_out), pending[1].eq(out_px),
                                 pending[2].eq(out_off + cmd.out_word_offset),
                                 pending[3].eq(out_words),
                                 o_tile.eq(0), t_tile.eq(0), wt_block.eq(cmd.wt_addr),
                                 tile_words.eq(cols + t_chunk), synced.eq(~cmd.sync),
                                 in_base.eq(cmd.in_addr + (in_off << 3)), tile_wt_addr.eq(cmd.wt_addr + (cols << 3)),
                                 tile_rest_addr.eq(cmd.wt_addr + ((cols + Mux(only_tile, chunk_last, chunk_words)) << 3)),
                                 wt_rest.eq(cmd.wt_addr + (cols << 3)), skip_base.eq(cmd.skip_addr + (skip_off << 3)),
                                 skip_have.eq(cmd.skip_pixel_words)]
                    m.d.sync += [tile_is_last.eq(only_tile), first_tile_weights_first.eq(cmd.weights_first)]
                    m.d.sync += [row_beats.eq(Mux(in_contiguous, Mux(cmd.input_follows, row_run, in_run), in_group)),
                                 row_count.eq(Mux(in_contiguous, 1, cmd.in_w)),
                                 row_outer.eq(Mux(in_contiguous | cmd.input_follows, 1, cmd.in_h))]
                    # an input loaded ahead takes the other half of the input buffer from the job before's
                    m.d.sync += [pending_mirror.eq(cmd.input_ahead & ~prev_mirror),
                                 prev_mirror.eq(cmd.input_ahead & ~prev_mirror),
                                 prev_folded.eq(cmd.fold_lanes != 0),
                                 prev_groups.eq(Mux(cmd.fold_lanes != 0, fold_terms.groups, band_groups[:band_bits]))]
                    m.next = "BIAS"
            with m.State("BIAS"):
                with m.If(read(wt_block, cols)):
                    with m.If((o_tile == 0) & ~first_tile_weights_first):
                        m.next = "FIRST_TAP"
                    with m.Else():
                        m.next = "WEIGHTS"
            with m.State("FIRST_TAP"):
                # the first pass's weight rows, which the core takes before the input tile it
                # trails (a striped job's: all the tile's, each tap's first strip trails it)
                with m.If(read(tile_wt_addr, Mux(striped, tile_one, tile_chunk))):
                    to_input(in_base)
            with m.State("INPUT"):
                # An input loaded ahead reads nothing the job before writes: only the commands
                # before that one must be complete (its skip pixels still wait for all, in SKIP).
                # The tile in one read (one run, or each pixel's words, row by row) or, following
                # the job before, one read a row; its operands from registers.
                ready = synced | caught_up | (cmd.input_ahead & behind_one)
                with m.If(read(row_addr, row_beats, count=row_count, stride=cmd.in_pixel_words << 3,
                               outer_count=row_outer, outer_stride=in_row_words << 3,
                               when=ready & (settle == 0) & (row_open | ~cmd.input_follows) & ~row_taken)):
                    m.d.comb += input_taken.eq(1)
                    m.d.sync += synced.eq(synced | caught_up | ~cmd.input_ahead)
                    with m.If(row_left == 1):
                        after_input()
            with m.State("TILE_WEIGHTS"):
                with m.If(read(tile_rest_addr, tile_rest)):
                    m.next = "TILE_DONE"
            with m.State("TILE_DONE"):
                with m.If(last_in_tile):
                    skip_or_next()
                with m.Else():
                    m.d.sync += [t_tile.eq(t_tile + 1), in_base.eq(next_in_base),
                                 tile_wt_addr.eq(tile_wt_addr + (tile_one << 3)),
                                 tile_rest_addr.eq(tile_rest_addr + (tile_one << 3))]
                    with m.If(first_tile_weights_first):
                        to_input(next_in_base)
                    with m.Else():
                        m.next = "FIRST_TAP"
            with m.State("WEIGHTS"):
                with m.If(read(wt_rest, tile_t_chunk)):
                    with m.If(first_tile_weights_first):
                        to_input(in_base)  # then each input tile, TILE_DONE stepping through them
                    with m.Else():
                        skip_or_next()
            with m.State("SKIP"):
                # the tile's skip pixels, after its weights: the input read before them waited
                # for the earlier commands (sync), but for the one before if the input loaded ahead
                with m.If(read(skip_base, skip_beats, count=comp_w, stride=cmd.skip_pixel_words << 3,
                               fill=tile_row_words - skip_beats, outer_count=comp_h, outer_stride=skip_row << 3,
                               when=synced | caught_up)):
                    m.next = "NEXT_TILE"
            with m.State("NEXT_TILE"):
                with m.If(last_tile):
                    with m.If(last_command):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += [n.eq(next_n), n_before.eq(n), fetch_addr.eq(fetch_addr + (1 << 6))]
                        m.next = "FETCH"
                with m.Else():
                    m.d.sync += [o_tile.eq(o_tile + 1), wt_block.eq(wt_block + (tile_words << 3)),
                                 wt_rest.eq(wt_rest + (tile_words << 3)), skip_base.eq(skip_base + (wt_words << 3)),
                                 skip_have.eq(skip_have - wt_words)]
                    m.d.sync += [tile_is_last.eq(next_last), first_tile_weights_first.eq(0)]
                    m.next = "BIAS"
            with m.State("FINISH"):
                with m.If((complete == self.cmd_count) & self.writer_quiet):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
            with m.State("HALT"):
                pass  # the caller resets this unit once the bus is quiet

        # -- runner -------------------------------------------------------------------------
        w = self.write_desc.payload
        o_out = Signal(16)
        # output tile o_out's write, planned in registers before it is handed to the write master:
        # the pixel's words from the tile's first on (job_out_words - o_out * wt_words; out_words is
        # below 2^16 in a job past the BAND check), the beats per pixel (at most wt_words), the
        # address, whether the tile's pixels are one run, and the tile's words
        out_left, out_beats = Signal(signed(18 + wt_words.bit_length())), Signal(range(wt_words + 1))
        out_addr, out_contiguous, out_run = Signal(BUS_ADDR_BITS), Signal(), Signal(BEATS_BITS)
        last_out = Signal()  # o_out + 1 == job_t_out, registered: o_out changes two states before OUTPUTS
        m.d.sync += last_out.eq(o_out + 1 == job_t_out)
        core_finished = Signal()
        with m.If(self.core_done):
            m.d.sync += core_finished.eq(1)
        m.d.sync += [caught_up.eq(complete == n), behind_one.eq(complete == n_before)]
        m.d.sync += [row_end.eq(row_addr + (in_row_words << 3)[:BUS_ADDR_BITS]),
                     row_open.eq(caught_up | (row_end <= self.answered_end))]
        # the core's start, from a register: high in the cycle after the job is taken (START)
        m.d.sync += self.core_start.eq(take_job)
        # the write master's answered_end follows the running job's last output tile
        m.d.comb += self.answered_clear.eq(take_job)
        # The loader starts on the handed job as soon as it is idle, while the core may still
        # compute the job before (a pulse from a register); the job is taken after that.
        load_now = handed & ~pending_loaded & self.load_idle
        m.d.sync += self.load_start.eq(load_now)
        with m.If(load_now):
            m.d.sync += pending_loaded.eq(1)
        with m.FSM(name="runner"):
            with m.State("WAIT"):
                with m.If(handed & pending_loaded & ~self.core_busy & ~self.hold):
                    m.d.comb += take_job.eq(1)
                    m.d.sync += [job.eq(pending_cmd), job_t_out.eq(pending[0]), job_out_px.eq(pending[1]),
                                 job_out_off.eq(pending[2]), job_out_words.eq(pending[3]), handed.eq(0),
                                 o_out.eq(0), out_left.eq(pending[3][:16]), core_finished.eq(0),
                                 job_mirror.eq(pending_mirror)]
                    m.next = "START"
            with m.State("START"):  # core_start is high in this state
                m.d.sync += out_addr.eq(job.out_addr + (job_out_off << 3))
                m.next = "PLAN"
            with m.State("PLAN"):
                m.d.sync += out_beats.eq(Mux(out_left <= 0, 0, Mux(out_left > wt_words, wt_words, out_left)))
                m.next = "SIZE"
            with m.State("SIZE"):
                # pixels whose words touch in memory are one run (the words dropped are not written);
                # the tile's words (the core sends exactly these): out_beats (a few bits) times the
                # pixels, to BEATS_BITS bits, by shifts and adds (no DSP48E1)
                px = job_out_px[:BEATS_BITS]
                m.d.sync += [out_contiguous.eq(job.out_pixel_words == out_beats),
                             out_run.eq(sum(Mux(bit, px << i, 0) for i, bit in enumerate(out_beats)))]
                m.next = "OUTPUTS"
            with m.State("OUTPUTS"):
                m.d.comb += [
                    w.addr.eq(out_addr),
                    w.run_beats.eq(Mux(out_contiguous, out_run, out_beats)),
                    w.runs.eq(Mux(out_contiguous, 1, job_out_px)),
                    w.beats.eq(out_run),
                    w.stride.eq(job.out_pixel_words << 3),
                    w.final.eq(last_out),
                    self.write_desc.valid.eq(1),
                ]
                with m.If(self.write_desc.ready):
                    with m.If(last_out):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += [o_out.eq(o_out + 1), out_left.eq(out_left - wt_words),
                                     out_addr.eq(out_addr + (wt_words << 3))]
                        m.next = "PLAN"
            with m.State("DRAIN"):
                with m.If(core_finished & self.writer_quiet):
                    m.d.sync += self.saturated.eq(self.saturated + self.core_saturated)
                    with m.If(job.stats):
                        m.next = "STATS"
                    with m.Else():
                        m.d.sync += complete.eq(complete + 1)
                        m.next = "WAIT"
            with m.State("STATS"):
                # the stats word needs no wait: the next job reads nothing it writes, and the
                # list's DONE waits for every write
                m.d.comb += [w.addr.eq(job.stat_addr), w.run_beats.eq(1), w.runs.eq(1), w.beats.eq(1), w.imm.eq(1),
                             w.imm_data.eq(Cat(self.cycles, self.core_saturated)), self.write_desc.valid.eq(1)]
                with m.If(self.write_desc.ready):
                    m.d.sync += complete.eq(complete + 1)
                    m.next = "WAIT"

        # the core's fields of the job, at the core's widths (LIMIT has checked the wider ones)
        commanded = [name for name in CORE_LAYER_FIELDS if name != "in_mirror"]
        m.d.comb += [self.layer[name].eq(job[name]) for name in commanded]
        m.d.comb += [self.load_layer[name].eq(pending_cmd[name]) for name in commanded]
        m.d.comb += [self.layer.in_mirror.eq(job_mirror), self.load_layer.in_mirror.eq(pending_mirror)]
        return m

    def _fold_terms_layout(self) -> data.StructLayout:
        """A folded job's sizes at the widths their command fields give them: the kernel columns
        it covers (``kernel_w * fold_taps``), its lanes (``fold_lanes * fold_taps``), whether its
        input band reaches past IN_DEPTH's bits, and the pixel groups it needs below that."""
        taps = COMMAND_FIELD["fold_taps"].width
        return data.StructLayout({"span": COMMAND_FIELD["kernel_w"].width + taps,
                                  "rows": COMMAND_FIELD["fold_lanes"].width + taps,
                                  "groups_high": 1, "groups": self.config.in_depth.bit_length() + 1})

    def _fold_terms(self, m, cmd, terms, *, band_groups):
        """Registers a folded job's sizes (docs/engine.md, "Few-channel layers") into ``terms``
        (:meth:`_fold_terms_layout`): the kernel columns it covers and its lanes (shift-and-add,
        never a DSP48E1) and the input buffer it needs, ``band_groups + fold_taps - 1``."""
        low = len(terms.groups) - 1  # band_groups below 2^low, which exceeds IN_DEPTH
        m.d.sync += [
            terms.span.eq(small_product(cmd.fold_taps, cmd.kernel_w)),
            terms.rows.eq(small_product(cmd.fold_taps, cmd.fold_lanes)),
            terms.groups_high.eq(band_groups[low:] != 0),
            terms.groups.eq(band_groups[:low] + cmd.fold_taps - 1),
        ]

    def _check_fold(self, m, cmd, terms, fold_checks):
        """Registers a folded job's checks from its ``terms`` into ``fold_checks`` (a
        :data:`_FoldChecks`), a state ahead of the others."""
        cfg = self.config
        folded = cmd.fold_lanes != 0
        m.d.sync += [
            fold_checks.folded.eq(folded),
            fold_checks.pad.eq(cmd.pad_left >= Mux(folded, terms.span, cmd.kernel_w)),
            fold_checks.limit.eq(folded & ((cmd.in_ch != cfg.rows) | (cmd.fold_taps < 2) | (terms.rows > cfg.rows)
                                           | (terms.span > FOLD_SPAN) | terms.groups_high
                                           | (terms.groups > cfg.in_depth))),
        ]

    def _check(self, m, cmd, checks, fold_checks, *, t_in, band_groups, t_kk, comp_px, rows_out, comp_h, comp_w,
               out_words, out_room, offsets, ahead_over):
        """Registers the command's checks of docs/engine.md into ``checks`` (a :data:`_Checks`):
        each failing condition is a bit of ``limit`` or ``band``, ORed by the verdict."""
        cfg = self.config
        sizes = [cmd.in_ch, cmd.out_ch, cmd.in_h, cmd.in_w, cmd.out_h, cmd.out_w, cmd.in_pixel_words,
                 cmd.out_pixel_words, cmd.in_height, cmd.out_height]
        limit = Cat(Cat(*(size == 0 for size in sizes)).any(),
                    *((size < KERNEL_RANGE[0]) | (size > KERNEL_RANGE[1]) for size in (cmd.kernel_h, cmd.kernel_w)),
                    *((size < STRIDE_RANGE[0]) | (size > STRIDE_RANGE[1]) for size in (cmd.stride_h, cmd.stride_w)),
                    (cmd.pad_top >= cmd.kernel_h) | fold_checks.pad,
                    band_groups > cfg.in_depth, t_kk > cfg.wt_depth // cfg.rows, comp_px > cfg.acc_depth,
                    cmd.pool & ((cmd.out_h < 2) | (cmd.out_w < 2)),
                    cmd.sum_pool & ((cmd.kernel_h != 1) | (cmd.kernel_w != 1) | (cmd.stride_h != 1)
                                    | (cmd.stride_w != 1) | cmd.pool | cmd.add | fold_checks.folded
                                    | (cmd.strip_rows != 0)),
                    fold_checks.limit, ahead_over)
        # a band starting 2^29 words (4 GB) or more into its tensor would wrap the address space
        offsets_wrap = Cat(*((offset >> (BUS_ADDR_BITS - 3)) != 0 for offset in offsets)).any()
        skip_band = cmd.add & ((cmd.skip_y0 + comp_h > cmd.skip_height) | (comp_w > cmd.skip_width)
                               | (cmd.skip_pixel_words == 0))
        # out_word_offset + out_words > out_pixel_words, as out_words > out_room (a 16-bit compare
        # unless out_room is negative or out_words is 2^16 or more)
        out_over = (out_room < 0) | (out_words[16:] != 0) | (out_words[:16] > out_room[:16])
        # a narrow input's one word a pixel is its one input tile
        tiles_beyond = Mux(cmd.narrow_in, t_in != 1, t_in * cfg.in_words > cmd.in_pixel_words)
        band = Cat(cmd.in_y0 + cmd.in_h > cmd.in_height, tiles_beyond,
                   cmd.out_y0 + rows_out > cmd.out_height, out_over, skip_band, offsets_wrap)
        # in the reference's order: the first unaligned address is the one reported
        addresses = [cmd.in_addr, cmd.out_addr, Mux(cmd.add, cmd.skip_addr, 0), cmd.wt_addr,
                     Mux(cmd.stats, cmd.stat_addr, 0)]
        align = Cat(*(addr[:3] != 0 for addr in addresses)).any()
        unaligned = Const(0, BUS_ADDR_BITS)
        for addr in reversed(addresses):
            unaligned = Mux(addr[:3] != 0, addr, unaligned)
        m.d.sync += [checks.opcode.eq(cmd.opcode != OPCODE_CONV), checks.limit.eq(limit), checks.band.eq(band),
                     checks.align.eq(align), checks.unaligned.eq(unaligned)]
