"""A test-only AXI4 master with the bus-master engine's ports, to prove the bus testbench.

:class:`AxiCopyProbe` has the ports the bus engine (``radix_hw.bus_engine.BusEngine``) has —
``s_axi_*`` (AXI4-Lite, ``radix_hw.axil.axi_lite_members``), ``m_axi_*``
(``radix_hw.axi4.axi4_master_members``) and ``interrupt`` — and a part of its register map
(``radix.engine_spec.BUS_REGISTERS``), so :class:`radix_sim.bus_tb.BusEngineTB` drives it as it
will drive the engine. It runs a command list of *copy commands* instead of convolution jobs:

* CTRL.START (ignored while STATUS.BUSY) clears STATUS.DONE/ERROR, the error registers and the
  counters, and runs ``CMD_COUNT`` commands from ``CMD_BASE``; command ``n`` is read as one
  burst of ``COMMAND_WORDS`` beats at ``CMD_BASE + COMMAND_BYTES * n``. Its word 0 holds the
  source byte address (bits 0..31) and the destination byte address (bits 32..63), word 1 the
  number of 64-bit words to copy (bits 0..31); the other words are ignored, and so are the
  three low bits of both addresses.
* A copy reads its source in INCR bursts of at most ``MAX_BURST_BEATS`` beats that never cross
  a ``BURST_BOUNDARY``, up to ``MAX_READS`` bursts outstanding, into a buffer of
  ``BUFFER_WORDS`` words (a read burst is issued only when the buffer has room for all of it),
  and writes the destination in bursts cut the same way, each issued only when all its data is
  in the buffer. A command completes when its last write response has come; then CMD_DONE
  counts it. After the last command STATUS.DONE rises.
* Every burst, the command fetch included, is checked against ``[WIN_BASE, WIN_BASE +
  WIN_SIZE)`` before it is issued: one outside stops the list with ERR_CODE ``WINDOW`` and
  ERR_ADDR its first byte. A read or write response SLVERR or DECERR stops it with ``BUS``
  (ERR_ADDR 0: the probe does not track which burst answered). Stopping issues no new burst,
  takes the data of every read issued, finishes the write burst under way and waits for the
  write responses; then STATUS.ERROR rises, ERR_INDEX naming the command.
* CYCLES counts the cycles from START to DONE or ERROR; BEATS_READ and BEATS_WRITTEN the beats;
  ``interrupt`` is ``CTRL.IRQ_EN & (DONE | ERROR)``. ID and VERSION read the engine's values;
  the other read-only registers read 0; CTRL.RESET is not implemented.

AXI4-Lite: a write is accepted when AW and W are both valid (AWREADY and WREADY rise together,
as the protocol allows), a read when R is free; every response is OKAY.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out
from radix.engine_spec import (BURST_BOUNDARY, BUS_BYTES, BUS_ENGINE_VERSION, BUS_REGISTERS, COMMAND_BYTES,
                               COMMAND_WORDS, ENGINE_ID, ERROR_CODE, MAX_BURST_BEATS, bus_register, field_mask_of)
from radix_hw.axi4 import (BURST_INCR, CACHE_BUFFERABLE_MODIFIABLE, DATA_BITS, SIZE_8_BYTES, axi4_master_members)
from radix_hw.axil import ADDR_WIDTH, DATA_WIDTH, RESP_OKAY, axi_lite_members

MAX_READS = 4  # read bursts outstanding at once
BUFFER_WORDS = MAX_READS * MAX_BURST_BEATS  # room for every outstanding read
BEAT_BITS = (BUS_BYTES - 1).bit_length()  # log2 of the bytes per beat
BOUNDARY_BITS = (BURST_BOUNDARY - 1).bit_length()
CFG_REGISTERS = ("CMD_BASE", "CMD_COUNT", "WIN_BASE", "WIN_SIZE")
COUNTERS = ("CYCLES", "CMD_DONE", "BEATS_READ", "BEATS_WRITTEN")


def _bit(register: str, field: str) -> int:
    return field_mask_of(register, field).bit_length() - 1


def burst_beats(addr, left) -> Value:
    """Beats of the next burst from byte address ``addr`` with ``left`` words to go: at most
    ``MAX_BURST_BEATS``, none past the next ``BURST_BOUNDARY``."""
    to_boundary = (BURST_BOUNDARY - addr[:BOUNDARY_BITS]) >> BEAT_BITS
    limit = Mux(to_boundary < MAX_BURST_BEATS, to_boundary, MAX_BURST_BEATS)
    return Mux(left < limit, left, limit)


class AxiCopyProbe(wiring.Component):
    """Copies memory by command list over an AXI4 master port; see the module docstring."""

    def __init__(self):
        super().__init__({**axi_lite_members(), **axi4_master_members("m_axi"), "interrupt": Out(1)})

    def elaborate(self, platform):
        m = Module()
        regs = {name: Signal(32, name=name.lower()) for name in (*CFG_REGISTERS, *COUNTERS)}
        err_code, err_index, err_addr = Signal(8), Signal(32), Signal(32)
        busy, done, error, irq_en = Signal(), Signal(), Signal(), Signal()
        start = Signal()
        self._registers(m, regs, start, busy, done, error, irq_en, err_code, err_index, err_addr)
        m.d.comb += self.interrupt.eq(irq_en & (done | error))

        # Copy state: the command's source and destination cursors and words left to read/write.
        index = Signal(32)
        rd_addr, wr_addr = Signal(32), Signal(32)
        rd_left, wr_left = Signal(32), Signal(32)
        rd_beats, wr_beats = burst_beats(rd_addr, rd_left), burst_beats(wr_addr, wr_left)
        r_pending = Signal(range(MAX_READS + 1))  # read bursts issued, their last beat not yet in
        b_pending = Signal(32)  # write bursts issued, their response not yet in
        claimed = Signal(range(BUFFER_WORDS + 1))  # buffer words of issued reads not yet written out
        level = Signal(range(BUFFER_WORDS + 1))  # words in the buffer
        w_left = Signal(range(MAX_BURST_BEATS + 1))  # beats of the write burst under way (0: none)
        fetch_beat = Signal(range(COMMAND_WORDS))
        stopping = Signal()  # an error: drain the bus, then set ERROR

        buffer = m.submodules.buffer = Memory(shape=DATA_BITS, depth=BUFFER_WORDS, init=[])
        buf_w = buffer.write_port()
        buf_r = buffer.read_port(domain="comb")
        head, tail = Signal(range(BUFFER_WORDS)), Signal(range(BUFFER_WORDS))

        win_end = Signal(33)
        m.d.comb += win_end.eq(regs["WIN_BASE"] + regs["WIN_SIZE"])

        def inside(addr, beats):
            return (addr >= regs["WIN_BASE"]) & ((addr + (beats << BEAT_BITS)) <= win_end)

        ar_hs = Signal()
        r_hs = Signal()
        w_hs = Signal()
        b_hs = Signal()
        m.d.comb += [
            ar_hs.eq(self.m_axi_arvalid & self.m_axi_arready),
            r_hs.eq(self.m_axi_rvalid & self.m_axi_rready),
            w_hs.eq(self.m_axi_wvalid & self.m_axi_wready),
            b_hs.eq(self.m_axi_bvalid & self.m_axi_bready),
            self.m_axi_rready.eq(1),  # every read has its buffer room (or a command register) reserved
            self.m_axi_bready.eq(1),
        ]
        for ch in ("ar", "aw"):
            m.d.comb += [
                getattr(self, f"m_axi_{ch}size").eq(SIZE_8_BYTES),
                getattr(self, f"m_axi_{ch}burst").eq(BURST_INCR),
                getattr(self, f"m_axi_{ch}cache").eq(CACHE_BUFFERABLE_MODIFIABLE),
            ]
        with m.If(ar_hs):
            m.d.sync += self.m_axi_arvalid.eq(0)
        with m.If(self.m_axi_awvalid & self.m_axi_awready):
            m.d.sync += self.m_axi_awvalid.eq(0)

        def fail(code: str, addr):
            m.d.sync += [stopping.eq(1), err_code.eq(ERROR_CODE[code]), err_addr.eq(addr), err_index.eq(index)]

        bus_fault = Signal()
        m.d.comb += bus_fault.eq((r_hs & self.m_axi_rresp[1]) | (b_hs & self.m_axi_bresp[1]))
        with m.If(bus_fault & ~stopping):
            fail("BUS", 0)
        ar_issue, aw_issue = Signal(), Signal()  # a burst's address goes out (set by the FSM)
        m.d.sync += [
            r_pending.eq(r_pending + ar_issue - (r_hs & self.m_axi_rlast)),
            b_pending.eq(b_pending + aw_issue - b_hs),
        ]

        # Write data: the buffer's head, a burst issued only once all its words are in.
        m.d.comb += [
            buf_r.addr.eq(head),
            self.m_axi_wdata.eq(buf_r.data),
            self.m_axi_wstrb.eq((1 << BUS_BYTES) - 1),
            self.m_axi_wvalid.eq(w_left != 0),
            self.m_axi_wlast.eq(w_left == 1),
        ]
        # Read data: command words while fetching (FETCH), else into the buffer (dropped once stopping).
        copy_r = Signal()
        m.d.comb += [buf_w.addr.eq(tail), buf_w.data.eq(self.m_axi_rdata), buf_w.en.eq(copy_r)]
        claim = Signal(range(MAX_BURST_BEATS + 1))
        m.d.sync += [
            level.eq(level + copy_r - w_hs),
            claimed.eq(claimed + claim - w_hs),
        ]
        with m.If(copy_r):
            m.d.sync += tail.eq(tail + 1)
        with m.If(w_hs):
            m.d.sync += [head.eq(head + 1), w_left.eq(w_left - 1)]

        with m.If(busy):
            m.d.sync += regs["CYCLES"].eq(regs["CYCLES"] + 1)
        with m.If(r_hs):
            m.d.sync += regs["BEATS_READ"].eq(regs["BEATS_READ"] + 1)
        with m.If(w_hs):
            m.d.sync += regs["BEATS_WRITTEN"].eq(regs["BEATS_WRITTEN"] + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(start):
                    # the buffer may hold words a stopped list read and never wrote
                    m.d.sync += [busy.eq(1), index.eq(0), stopping.eq(0), head.eq(0), tail.eq(0), level.eq(0),
                                 claimed.eq(0)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                cmd_addr = (regs["CMD_BASE"] + index * COMMAND_BYTES)[:32]
                with m.If(stopping):
                    m.next = "STOP"
                with m.Elif(index == regs["CMD_COUNT"]):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(~inside(cmd_addr, COMMAND_WORDS)):
                    fail("WINDOW", cmd_addr)
                    m.next = "STOP"
                with m.Else():
                    m.d.comb += ar_issue.eq(1)
                    m.d.sync += [self.m_axi_araddr.eq(cmd_addr), self.m_axi_arlen.eq(COMMAND_WORDS - 1),
                                 self.m_axi_arvalid.eq(1), fetch_beat.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(r_hs):
                    m.d.sync += fetch_beat.eq(fetch_beat + 1)
                    with m.Switch(fetch_beat):
                        with m.Case(0):
                            m.d.sync += [rd_addr.eq(Cat(Const(0, BEAT_BITS), self.m_axi_rdata[BEAT_BITS:32])),
                                         wr_addr.eq(Cat(Const(0, BEAT_BITS), self.m_axi_rdata[32 + BEAT_BITS:64]))]
                        with m.Case(1):
                            m.d.sync += [rd_left.eq(self.m_axi_rdata[:32]), wr_left.eq(self.m_axi_rdata[:32])]
                    with m.If(self.m_axi_rlast):
                        m.next = "COPY"
            with m.State("COPY"):
                m.d.comb += copy_r.eq(r_hs & ~stopping)
                # A read burst: when the address channel is free, a burst may be outstanding and
                # the buffer has room for all its beats.
                with m.If(~stopping & (rd_left != 0) & ~self.m_axi_arvalid & (r_pending < MAX_READS)
                          & (claimed + rd_beats <= BUFFER_WORDS)):
                    with m.If(inside(rd_addr, rd_beats)):
                        m.d.comb += [ar_issue.eq(1), claim.eq(rd_beats)]
                        m.d.sync += [self.m_axi_araddr.eq(rd_addr), self.m_axi_arlen.eq(rd_beats - 1),
                                     self.m_axi_arvalid.eq(1), rd_addr.eq(rd_addr + (rd_beats << BEAT_BITS)),
                                     rd_left.eq(rd_left - rd_beats)]
                    with m.Else():
                        fail("WINDOW", rd_addr)
                # A write burst: all its data in the buffer, the previous one's data sent.
                with m.If(~stopping & (wr_left != 0) & ~self.m_axi_awvalid & (w_left == 0) & (level >= wr_beats)):
                    with m.If(inside(wr_addr, wr_beats)):
                        m.d.comb += aw_issue.eq(1)
                        m.d.sync += [self.m_axi_awaddr.eq(wr_addr), self.m_axi_awlen.eq(wr_beats - 1),
                                     self.m_axi_awvalid.eq(1), w_left.eq(wr_beats),
                                     wr_addr.eq(wr_addr + (wr_beats << BEAT_BITS)), wr_left.eq(wr_left - wr_beats)]
                    with m.Else():
                        fail("WINDOW", wr_addr)
                with m.If(stopping):
                    m.next = "STOP"
                with m.Elif((wr_left == 0) & (w_left == 0) & (r_pending == 0)):
                    m.next = "RESPONSES"
            with m.State("RESPONSES"):
                with m.If(stopping):
                    m.next = "STOP"
                with m.Elif(b_pending == 0):
                    m.d.sync += [index.eq(index + 1), regs["CMD_DONE"].eq(regs["CMD_DONE"] + 1)]
                    m.next = "NEXT"
            with m.State("STOP"):
                with m.If((r_pending == 0) & (w_left == 0) & (b_pending == 0)):
                    m.d.sync += [busy.eq(0), error.eq(1)]
                    m.next = "IDLE"
        return m

    def _registers(self, m, regs, start, busy, done, error, irq_en, err_code, err_index, err_addr):
        """The AXI4-Lite register file: configuration, CTRL/STATUS and the read-only values."""
        ctrl, status = bus_register("CTRL"), bus_register("STATUS")
        start_bit, irq_bit = _bit("CTRL", "START"), _bit("CTRL", "IRQ_EN")
        busy_bit, done_bit, error_bit = _bit("STATUS", "BUSY"), _bit("STATUS", "DONE"), _bit("STATUS", "ERROR")
        m.d.comb += [self.s_axi_bresp.eq(RESP_OKAY), self.s_axi_rresp.eq(RESP_OKAY)]

        write = Signal()
        m.d.comb += [
            write.eq(self.s_axi_awvalid & self.s_axi_wvalid & ~self.s_axi_bvalid),
            self.s_axi_awready.eq(write),
            self.s_axi_wready.eq(write),
        ]
        data = self.s_axi_wdata
        m.d.sync += start.eq(0)
        with m.If(write):
            m.d.sync += self.s_axi_bvalid.eq(1)
            with m.Switch(self.s_axi_awaddr[2:ADDR_WIDTH]):
                for name in CFG_REGISTERS:
                    with m.Case(bus_register(name).offset >> 2):
                        m.d.sync += regs[name].eq(data)
                with m.Case(ctrl.offset >> 2):
                    m.d.sync += irq_en.eq(data[irq_bit])
                    with m.If(data[start_bit] & ~busy):
                        m.d.sync += [start.eq(1), done.eq(0), error.eq(0), err_code.eq(0), err_index.eq(0),
                                     err_addr.eq(0)]
                        m.d.sync += [regs[name].eq(0) for name in COUNTERS]
                with m.Case(status.offset >> 2):
                    with m.If(data[done_bit]):
                        m.d.sync += done.eq(0)
                    with m.If(data[error_bit]):
                        m.d.sync += error.eq(0)
        with m.Elif(self.s_axi_bready):
            m.d.sync += self.s_axi_bvalid.eq(0)

        values = {
            "ID": Const(ENGINE_ID, DATA_WIDTH),
            "VERSION": Const(BUS_ENGINE_VERSION, DATA_WIDTH),
            "CTRL": irq_en << irq_bit,
            "STATUS": (busy << busy_bit) | (done << done_bit) | (error << error_bit),
            "ERR_CODE": err_code,
            "ERR_INDEX": err_index,
            "ERR_ADDR": err_addr,
            **regs,
        }
        m.d.comb += self.s_axi_arready.eq(~self.s_axi_rvalid)
        with m.If(self.s_axi_arvalid & ~self.s_axi_rvalid):
            m.d.sync += [self.s_axi_rvalid.eq(1), self.s_axi_rdata.eq(0)]
            with m.Switch(self.s_axi_araddr[2:ADDR_WIDTH]):
                for reg in BUS_REGISTERS:
                    if reg.name in values:
                        with m.Case(reg.offset >> 2):
                            m.d.sync += self.s_axi_rdata.eq(values[reg.name])
        with m.Elif(self.s_axi_rready):
            m.d.sync += self.s_axi_rvalid.eq(0)
