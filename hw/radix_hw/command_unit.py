"""The command unit: fetches, checks and runs a command list (docs/engine.md, "Memory and commands").

Two cooperating parts:

* the **issuer** fetches command ``n`` (one 8-beat burst), checks it (``OPCODE``, ``LIMIT``,
  ``BAND``, ``ALIGN``), computes its addresses with one shared multiplier, hands the job to the
  runner and issues the job's read descriptors in the order the core's input stream takes them
  (bias words, skip pixels, input tile ``t`` then its weight rows, the other tiles' weights).
  With ``sync`` it waits, before the first input or skip read, until every earlier command is
  complete. It then goes on with command ``n + 1`` while the core still computes ``n``, so the
  next command and its weights are read while the current job computes and drains.
* the **runner** starts the core on each handed-over job, gives the write master the job's
  output tiles, waits for the core's last word and the writes' responses, writes the stats word
  (with ``stats``) and counts the command complete.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from radix.engine_spec import (BUS_ADDR_BITS, BUS_BYTES, COMMAND_BYTES, COMMAND_FIELDS, COMMAND_WORDS, ERROR_CODE,
                               OPCODE_CONV, EngineConfig)

from .axi4 import DATA_BITS
from .bus_read import ReadDescriptor
from .bus_write import WriteDescriptor
from .layout import LayerConfigLayout

DEST_CORE, DEST_COMMAND = 0, 1
CommandLayout = data.StructLayout({f.name: f.width for f in COMMAND_FIELDS})
CODE_BITS = 4
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
            "hold": In(1),
            "layer": Out(LayerConfigLayout),
            "core_start": Out(1),
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
        t_in, t_out, kk = Signal(16), Signal(16), Signal(6)
        hw_in, band_groups, in_off, comp_px, out_px, out_off, skip_off, skip_row = (
            Signal(WIDE, name=name) for name in ("hw_in", "band_groups", "in_off", "comp_px", "out_px",
                                                 "out_off", "skip_off", "skip_row"))
        t_chunk, t_kk, extra_lanes, in_run = (Signal(WIDE, name=name) for name in ("t_chunk", "t_kk", "extra_lanes",
                                                                                      "in_run"))
        scratch = Signal(WIDE)
        comp_h = Mux(cmd.pool, cmd.out_h & ~1, cmd.out_h)[:16]
        comp_w = Mux(cmd.pool, cmd.out_w & ~1, cmd.out_w)[:16]
        rows_out = Mux(cmd.pool, comp_h >> 1, comp_h)[:16]
        width_out = Mux(cmd.pool, comp_w >> 1, comp_w)[:16]
        mul_r, shift_r = reciprocal(rows, bits=17)
        mul_c, shift_c = reciprocal(cols, bits=17)
        chunk_words = rows * wt_words  # weight words per tap and input tile
        # (destination, a, b[, shift right]) for each step; a product is registered a cycle later
        steps = [
            (t_in, (cmd.in_ch + rows - 1), Const(mul_r), shift_r),
            (t_out, (cmd.out_ch + cols - 1), Const(mul_c), shift_c),
            (hw_in, cmd.in_h, cmd.in_w, 0),
            (band_groups, hw_in, t_in, 0),
            (scratch, cmd.in_y0, cmd.in_w, 0),
            (in_off, scratch, cmd.in_pixel_words, 0),
            (comp_px, comp_h, comp_w, 0),
            (out_px, rows_out, width_out, 0),
            (scratch, cmd.out_y0, width_out, 0),
            (out_off, scratch, cmd.out_pixel_words, 0),
            (scratch, cmd.skip_y0, cmd.skip_width, 0),
            (skip_off, scratch, cmd.skip_pixel_words, 0),
            (skip_row, cmd.skip_width, cmd.skip_pixel_words, 0),
            (kk, cmd.kernel, cmd.kernel, 0),
            (t_kk, t_in, kk, 0),
            (t_chunk, t_kk, Const(chunk_words), 0),
            (extra_lanes, t_out - 1, Const(tile_lanes - cols), 0),
            (in_run, hw_in, Const(in_words), 0),
        ]
        step = Signal(range(len(steps) + 1))
        phase = Signal(2)
        # registered operands and product: a step takes three cycles and the multiplier's paths
        # are register to register
        mul_a, mul_b = Signal(32), Signal(24)
        held_a, held_b = Signal(32), Signal(24)
        product = Signal(WIDE)
        m.d.sync += [held_a.eq(mul_a), held_b.eq(mul_b), product.eq(held_a * held_b)]

        # -- issuer: descriptor walk state ----------------------------------------------------
        o_tile = Signal(16)  # output tile being issued
        t_tile = Signal(16)  # input tile being issued (tile 0 only)
        wt_block = Signal(BUS_ADDR_BITS)  # the current output tile's weight block
        tile_words = Signal(WIDE)
        out_words = Signal(WIDE)
        synced = Signal()
        in_tile_wt = Signal(WIDE)  # offset of input tile t's weight rows in tile 0's block

        desc = self.read_desc.payload
        m.d.comb += desc.outer_count.eq(1)

        def read(addr, beats, *, count=1, stride=0, fill=0, outer_count=1, outer_stride=0, dest=DEST_CORE):
            m.d.comb += [desc.addr.eq(addr), desc.beats.eq(beats), desc.count.eq(count), desc.stride.eq(stride),
                         desc.fill.eq(fill), desc.outer_count.eq(outer_count), desc.outer_stride.eq(outer_stride),
                         desc.dest.eq(dest), desc.tag.eq(n), self.read_desc.valid.eq(1)]
            return self.read_desc.ready

        # -- runner state -------------------------------------------------------------------
        handed = Signal()  # a checked job waits for the runner
        job = Signal(CommandLayout)
        job_t_out, job_out_px, job_out_off, job_out_words = Signal(16), Signal(WIDE), Signal(WIDE), Signal(WIDE)
        pending = [Signal.like(s, name=f"pending_{s.name}") for s in (job_t_out, job_out_px, job_out_off,
                                                                        job_out_words)]
        pending_cmd = Signal(CommandLayout)
        take_job = Signal()
        complete = self.commands_done

        def out_words_of(cmd):
            """Words of an output pixel that hold the layer's channels (docs/engine.md)."""
            return (cmd.out_ch + extra_lanes + lpw - 1) >> (lpw.bit_length() - 1)

        def fail(code: str, addr=0):
            m.d.comb += [self.error.eq(1)]
            m.d.sync += [self.error_code.eq(ERROR_CODE[code]), self.error_index.eq(n), self.error_addr.eq(addr)]
            m.next = "HALT"

        with m.FSM(name="issuer"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n.eq(0), self.busy.eq(1), complete.eq(0), self.saturated.eq(0)]
                    with m.If(self.cmd_base[:6] != 0):
                        fail("ALIGN", self.cmd_base)
                    with m.Elif(self.cmd_count == 0):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += word_count.eq(0)
                with m.If(read(self.cmd_base + (n << 6)[:BUS_ADDR_BITS], COMMAND_WORDS, dest=DEST_COMMAND)):
                    m.next = "RECEIVE"
            with m.State("RECEIVE"):
                with m.If(word_count == COMMAND_WORDS):
                    m.d.sync += [step.eq(0), phase.eq(0)]
                    m.next = "DERIVE"
            with m.State("DERIVE"):
                m.d.sync += phase.eq(Mux(phase == 2, 0, phase + 1))
                with m.Switch(step):
                    for index, (dst, a, b, shift) in enumerate(steps):
                        with m.Case(index):
                            m.d.comb += [mul_a.eq(a), mul_b.eq(b)]
                            with m.If(phase == 2):
                                m.d.sync += [dst.eq(product >> shift), step.eq(step + 1)]
                    with m.Default():
                        m.next = "CHECK"
            with m.State("CHECK"):
                self._check(m, cmd, fail, t_in=t_in, kk=kk, band_groups=band_groups, t_kk=t_kk, comp_px=comp_px,
                            rows_out=rows_out, comp_h=comp_h, comp_w=comp_w, out_words=out_words_of(cmd),
                            offsets=(in_off, out_off, Mux(cmd.add, skip_off, 0)))
            with m.State("HAND"):
                # wait for the runner's slot, then issue this job's reads
                with m.If(~handed):
                    m.d.sync += [handed.eq(1), pending_cmd.eq(cmd), pending[0].eq(t_out), pending[1].eq(out_px),
                                 pending[2].eq(out_off + cmd.out_word_offset),
                                 pending[3].eq(out_words_of(cmd)),
                                 o_tile.eq(0), t_tile.eq(0), wt_block.eq(cmd.wt_addr),
                                 tile_words.eq(cols + t_chunk), in_tile_wt.eq(0), synced.eq(~cmd.sync)]
                    m.next = "BIAS"
            with m.State("BIAS"):
                with m.If(read(wt_block, cols)):
                    with m.If(cmd.add):
                        m.next = "SKIP"
                    with m.Elif(o_tile == 0):
                        m.next = "INPUT"
                    with m.Else():
                        m.next = "WEIGHTS"
            with m.State("SKIP"):
                with m.If(synced | (complete == n)):
                    m.d.sync += synced.eq(1)
                    have = cmd.skip_pixel_words - o_tile * wt_words
                    beats = Mux(cmd.skip_pixel_words <= o_tile * wt_words, 0, Mux(have > wt_words, wt_words, have))
                    base = cmd.skip_addr + ((skip_off + o_tile * wt_words) << 3)
                    with m.If(read(base[:BUS_ADDR_BITS], beats, count=comp_w, stride=cmd.skip_pixel_words << 3,
                                   fill=wt_words - beats, outer_count=comp_h, outer_stride=skip_row << 3)):
                        m.next = "INPUT_OR_WEIGHTS"
            with m.State("INPUT_OR_WEIGHTS"):
                with m.If(o_tile == 0):
                    m.next = "INPUT"
                with m.Else():
                    m.next = "WEIGHTS"
            with m.State("INPUT"):
                with m.If(synced | (complete == n)):
                    m.d.sync += synced.eq(1)
                    base = (cmd.in_addr + ((in_off + t_tile * in_words) << 3))[:BUS_ADDR_BITS]
                    contiguous = cmd.in_pixel_words == in_words
                    with m.If(read(base, Mux(contiguous, in_run, in_words), count=Mux(contiguous, 1, hw_in),
                                   stride=cmd.in_pixel_words << 3)):
                        m.next = "TILE_WEIGHTS"
            with m.State("TILE_WEIGHTS"):
                one_tile = kk * chunk_words  # one input tile's weight rows
                with m.If(read((wt_block + ((cols + in_tile_wt) << 3))[:BUS_ADDR_BITS], one_tile)):
                    with m.If(t_tile + 1 == t_in):
                        m.next = "NEXT_TILE"
                    with m.Else():
                        m.d.sync += [t_tile.eq(t_tile + 1), in_tile_wt.eq(in_tile_wt + one_tile)]
                        m.next = "INPUT"
            with m.State("WEIGHTS"):
                with m.If(read((wt_block + (cols << 3))[:BUS_ADDR_BITS], t_chunk)):
                    m.next = "NEXT_TILE"
            with m.State("NEXT_TILE"):
                with m.If(o_tile + 1 == t_out):
                    with m.If(n + 1 == self.cmd_count):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += n.eq(n + 1)
                        m.next = "FETCH"
                with m.Else():
                    m.d.sync += [o_tile.eq(o_tile + 1), wt_block.eq(wt_block + (tile_words << 3))]
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
        core_finished = Signal()
        with m.If(self.core_done):
            m.d.sync += core_finished.eq(1)
        with m.FSM(name="runner"):
            with m.State("WAIT"):
                with m.If(handed & ~self.core_busy & ~self.hold):
                    m.d.comb += take_job.eq(1)
                    m.d.sync += [job.eq(pending_cmd), job_t_out.eq(pending[0]), job_out_px.eq(pending[1]),
                                 job_out_off.eq(pending[2]), job_out_words.eq(pending[3]), handed.eq(0),
                                 o_out.eq(0), core_finished.eq(0)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.core_start.eq(1)
                m.next = "OUTPUTS"
            with m.State("OUTPUTS"):
                have = job_out_words - o_out * wt_words
                beats = Mux(job_out_words <= o_out * wt_words, 0, Mux(have > wt_words, wt_words, have))
                # pixels whose words touch in memory are one run (the words dropped are not written)
                contiguous = job.out_pixel_words == beats
                total = beats * job_out_px  # the core sends exactly these words for the tile
                m.d.comb += [
                    w.addr.eq((job.out_addr + ((job_out_off + o_out * wt_words) << 3))[:BUS_ADDR_BITS]),
                    w.run_beats.eq(Mux(contiguous, total, beats)),
                    w.runs.eq(Mux(contiguous, 1, job_out_px)),
                    w.beats.eq(total),
                    w.stride.eq(job.out_pixel_words << 3),
                    self.write_desc.valid.eq(1),
                ]
                with m.If(self.write_desc.ready):
                    with m.If(o_out + 1 == job_t_out):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += o_out.eq(o_out + 1)
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

        m.d.comb += [
            self.layer.in_ch.eq(job.in_ch), self.layer.in_h.eq(job.in_h), self.layer.in_w.eq(job.in_w),
            self.layer.out_ch.eq(job.out_ch), self.layer.out_h.eq(job.out_h), self.layer.out_w.eq(job.out_w),
            self.layer.kernel.eq(job.kernel), self.layer.stride.eq(job.stride), self.layer.pad_top.eq(job.pad_top),
            self.layer.pad_left.eq(job.pad_left), self.layer.relu.eq(job.relu), self.layer.pool.eq(job.pool),
            self.layer.add.eq(job.add), self.layer.in_unsigned.eq(job.in_unsigned),
            self.layer.skip_unsigned.eq(job.skip_unsigned), self.layer.out_unsigned.eq(job.out_unsigned),
        ]
        return m

    def _check(self, m, cmd, fail, *, t_in, kk, band_groups, t_kk, comp_px, rows_out, comp_h, comp_w, out_words,
               offsets):
        """The command's checks in the order of docs/engine.md; on success go on to HAND."""
        cfg = self.config
        sizes = [cmd.in_ch, cmd.out_ch, cmd.in_h, cmd.in_w, cmd.out_h, cmd.out_w, cmd.in_pixel_words,
                 cmd.out_pixel_words, cmd.in_height, cmd.out_height]
        limit = (Cat(*(size == 0 for size in sizes)).any()
                 | (cmd.kernel == 0) | (cmd.kernel > 7) | (cmd.stride == 0) | (cmd.stride > 4)
                 | (cmd.pad_top >= cmd.kernel) | (cmd.pad_left >= cmd.kernel)
                 | (band_groups > cfg.in_depth) | (t_kk > cfg.wt_depth // cfg.rows) | (comp_px > cfg.acc_depth)
                 | (cmd.pool & ((cmd.out_h < 2) | (cmd.out_w < 2))))
        # a band starting 2^29 words (4 GB) or more into its tensor would wrap the address space
        offsets_wrap = Cat(*((offset >> (BUS_ADDR_BITS - 3)) != 0 for offset in offsets)).any()
        skip_band = cmd.add & ((cmd.skip_y0 + comp_h > cmd.skip_height) | (comp_w > cmd.skip_width)
                               | (cmd.skip_pixel_words == 0))
        band = ((cmd.in_y0 + cmd.in_h > cmd.in_height) | (t_in * cfg.in_words > cmd.in_pixel_words)
                | (cmd.out_y0 + rows_out > cmd.out_height) | (cmd.out_word_offset + out_words > cmd.out_pixel_words)
                | skip_band | offsets_wrap)
        # in the reference's order: the first unaligned address is the one reported
        addresses = [cmd.in_addr, cmd.out_addr, Mux(cmd.add, cmd.skip_addr, 0), cmd.wt_addr,
                     Mux(cmd.stats, cmd.stat_addr, 0)]
        align = Cat(*(addr[:3] != 0 for addr in addresses)).any()
        unaligned = Const(0, BUS_ADDR_BITS)
        for addr in reversed(addresses):
            unaligned = Mux(addr[:3] != 0, addr, unaligned)
        with m.If(cmd.opcode != OPCODE_CONV):
            fail("OPCODE")
        with m.Elif(limit):
            fail("LIMIT")
        with m.Elif(band):
            fail("BAND")
        with m.Elif(align):
            fail("ALIGN", unaligned)
        with m.Else():
            m.next = "HAND"
