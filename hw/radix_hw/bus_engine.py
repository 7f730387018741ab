"""The bus-master engine (engine version 6): a whole command list from one START.

Ports (docs/engine.md, "Memory and commands"): ``s_axi_*`` (AXI4-Lite slave, the registers of
``radix.engine_spec.BUS_REGISTERS``), ``m_axi_*`` (AXI4 master to memory, :mod:`radix_hw.axi4`),
``interrupt``; ``clk``/``rst`` are the default domain's.

Inside: the register file, the :class:`~radix_hw.command_unit.CommandUnit`, the
:class:`~radix_hw.bus_read.ReadMaster` and :class:`~radix_hw.bus_write.WriteMaster` and the
unchanged convolution core, which takes its input stream from the read master (words for the
core) and gives its output stream to the write master.
"""

from __future__ import annotations

from typing import Callable

from amaranth import Module, Mux, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from radix.engine_spec import BUS_REGISTERS, ERROR_CODE, WRITE_BURSTS, EngineConfig

from .axi4 import BURST_INCR, CACHE_BUFFERABLE_MODIFIABLE, SIZE_8_BYTES, axi4_master_members
from .axil import RegisterFile, axi_lite_members
from .bus_read import ReadMaster
from .bus_write import WriteMaster
from .command_unit import DEST_COMMAND, CommandUnit
from .helpers import named_bits

CYCLES_BITS = 32


def _default_core(*, config: EngineConfig) -> wiring.Component:
    from .core import ConvCore  # imported late: the core is the heavy part of the gateware

    return ConvCore(config=config)


class BusEngine(wiring.Component):
    """The whole bus-master engine for one :class:`EngineConfig`.

    ``CTRL.START`` runs ``CMD_COUNT`` commands from ``CMD_BASE``; ``STATUS.DONE`` rises once the
    last command's writes have their responses, ``CYCLES`` counts from START to DONE. On an error
    (a failed command check, a burst outside the window, an SLVERR/DECERR response) or a
    ``CTRL.RESET``, the engine lets the commands before the failing one complete (a reset stops
    at once), stops issuing bursts, takes the data of the reads it issued,
    completes the write bursts it issued (their data is always held before the AW goes out),
    waits for every response, then resets everything but the register file; after an error it
    sets ``STATUS.ERROR`` with ``ERR_CODE``, ``ERR_INDEX`` and ``ERR_ADDR``.
    """

    def __init__(self, *, config: EngineConfig, core_factory: Callable[..., wiring.Component] | None = None):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        if core_factory is not None and not callable(core_factory):
            raise TypeError(f"core_factory must be callable, not {type(core_factory).__name__}")
        self._config = config
        self._core_factory = core_factory or _default_core
        super().__init__({**axi_lite_members(), **axi4_master_members("m_axi"), "interrupt": Out(1)})

    @property
    def config(self) -> EngineConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.regs = regs = RegisterFile(config=cfg, registers=BUS_REGISTERS)
        # everything behind the register file resets on the edge after a clear request, from one
        # register: the request's logic stays off the reset net's 5,000 loads
        clear_request, clearing = named_bits("clear_request", "clearing")
        m.d.sync += clearing.eq(clear_request)
        reset_behind = ResetInserter({"sync": clearing})
        m.submodules.core = core = reset_behind(self._core_factory(config=cfg))
        m.submodules.commands = cu = reset_behind(CommandUnit(config=cfg))
        m.submodules.reader = reader = reset_behind(ReadMaster())
        m.submodules.writer = writer = reset_behind(WriteMaster(max_bursts=WRITE_BURSTS))

        for name, member in axi_lite_members().items():
            outer, inner = getattr(self, name), getattr(regs, name)
            m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)

        # -- run, stop and error state ------------------------------------------------------
        running, stopping, failed = named_bits("running", "stopping", "failed")
        err_code, err_index, err_addr = Signal(4), Signal(32), Signal(32)
        cycles = Signal(CYCLES_BITS)
        saturated, commands_done = Signal(32), Signal(32)
        beats_read, beats_written = Signal(32), Signal(32)
        cu_error_seen = Signal()

        start = regs.start & ~running & ~stopping & ~clearing
        with m.If(start):
            m.d.sync += [running.eq(1), cycles.eq(0), failed.eq(0), err_code.eq(0), err_index.eq(0),
                         err_addr.eq(0), beats_read.eq(0), beats_written.eq(0), saturated.eq(0),
                         commands_done.eq(0)]
        with m.Elif(running & (cycles != (1 << CYCLES_BITS) - 1)):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(running & ~stopping):
            m.d.sync += [saturated.eq(cu.saturated), commands_done.eq(cu.commands_done)]

        # the first error wins; the command unit's code and index are registered a cycle later
        m.d.sync += cu_error_seen.eq(cu.error)
        first = running & ~stopping & ~failed
        with m.If(first & cu_error_seen):
            m.d.sync += [failed.eq(1), err_code.eq(cu.error_code), err_index.eq(cu.error_index),
                         err_addr.eq(cu.error_addr)]
        with m.Elif(first & (reader.window_error | reader.bus_error)):
            m.d.sync += [failed.eq(1), err_addr.eq(reader.error_addr), err_index.eq(reader.error_tag),
                         err_code.eq(Mux(reader.window_error, ERROR_CODE["WINDOW"], ERROR_CODE["BUS"]))]
        with m.Elif(first & (writer.window_error | writer.bus_error)):
            m.d.sync += [failed.eq(1), err_addr.eq(writer.error_addr), err_index.eq(cu.commands_done),
                         err_code.eq(Mux(writer.window_error, ERROR_CODE["WINDOW"], ERROR_CODE["BUS"]))]
        # a command's error lets the commands before it complete, then stops the list
        stop_request = Signal()
        m.d.comb += stop_request.eq((failed & running & ~stopping & (cu.commands_done >= err_index))
                                    | (regs.soft_reset & running))
        with m.If(stop_request):
            m.d.sync += stopping.eq(1)
        with m.If(regs.soft_reset & ~running):
            m.d.comb += clear_request.eq(1)

        # registered (a one-cycle pulse). Once stopped, the masters issue nothing, so a cycle late
        # they are still quiet and drained, and stopping is still set
        drained = Signal()
        m.d.sync += drained.eq(stopping & reader.quiet & writer.drained & ~drained)
        with m.If(drained):
            m.d.comb += clear_request.eq(1)
            m.d.sync += [stopping.eq(0), running.eq(0)]
            m.d.comb += regs.error_set.eq(failed)
        with m.If(cu.done & running & ~stopping & ~failed):
            m.d.sync += running.eq(0)
            m.d.comb += regs.job_done.eq(1)

        # -- datapath -----------------------------------------------------------------------
        word = reader.words.payload
        to_command = word.dest == DEST_COMMAND
        m.d.comb += [
            cu.start.eq(start),
            cu.cmd_base.eq(regs.cfg_cmd_base),
            cu.cmd_count.eq(regs.cfg_cmd_count),
            cu.cycles.eq(cycles),
            cu.writer_quiet.eq(writer.quiet),
            cu.answered_end.eq(writer.answered_end),
            writer.answered_clear.eq(cu.answered_clear),
            cu.hold.eq(failed | stopping),
            cu.core_busy.eq(core.busy),
            cu.core_done.eq(core.done),
            cu.core_saturated.eq(core.saturated),
            core.layer.eq(cu.layer),
            core.start.eq(cu.core_start),
            core.load_layer.eq(cu.load_layer),
            core.load_start.eq(cu.load_start),
            cu.load_idle.eq(core.load_idle),
            cu.cmd_words.payload.eq(word.data),
            cu.cmd_words.valid.eq(reader.words.valid & to_command),
            core.s_in.payload.eq(word.data),
            core.s_in.valid.eq(reader.words.valid & ~to_command),
            reader.words.ready.eq(Mux(to_command, cu.cmd_words.ready, core.s_in.ready)),
            writer.words.payload.eq(core.m_out.payload.data),
            writer.words.valid.eq(core.m_out.valid),
            core.m_out.ready.eq(writer.words.ready),
        ]
        wiring.connect(m, cu.read_desc, reader.desc)
        wiring.connect(m, cu.write_desc, writer.desc)
        # the masters' copy of `stopping`: its many loads stay off the error and stop logic's paths
        masters_stop = Signal()
        m.d.sync += masters_stop.eq(Mux(drained, 0, stopping | stop_request))
        for master in (reader, writer):
            m.d.comb += [master.win_base.eq(regs.cfg_win_base), master.win_size.eq(regs.cfg_win_size),
                         master.stop.eq(masters_stop), master.flush.eq(masters_stop)]

        # -- AXI master ports ---------------------------------------------------------------
        m.d.comb += [
            self.m_axi_araddr.eq(reader.ar_addr), self.m_axi_arlen.eq(reader.ar_len),
            self.m_axi_arvalid.eq(reader.ar_valid), reader.ar_ready.eq(self.m_axi_arready),
            reader.r_data.eq(self.m_axi_rdata), reader.r_resp.eq(self.m_axi_rresp),
            reader.r_last.eq(self.m_axi_rlast), reader.r_valid.eq(self.m_axi_rvalid),
            self.m_axi_rready.eq(reader.r_ready),
            self.m_axi_awaddr.eq(writer.aw_addr), self.m_axi_awlen.eq(writer.aw_len),
            self.m_axi_awvalid.eq(writer.aw_valid), writer.aw_ready.eq(self.m_axi_awready),
            self.m_axi_wdata.eq(writer.w_data), self.m_axi_wstrb.eq(writer.w_strb),
            self.m_axi_wlast.eq(writer.w_last), self.m_axi_wvalid.eq(writer.w_valid),
            writer.w_ready.eq(self.m_axi_wready),
            writer.b_resp.eq(self.m_axi_bresp), writer.b_valid.eq(self.m_axi_bvalid),
            self.m_axi_bready.eq(writer.b_ready),
        ]
        for ch in ("ar", "aw"):
            m.d.comb += [getattr(self, f"m_axi_{ch}size").eq(SIZE_8_BYTES),
                         getattr(self, f"m_axi_{ch}burst").eq(BURST_INCR),
                         getattr(self, f"m_axi_{ch}cache").eq(CACHE_BUFFERABLE_MODIFIABLE)]
        with m.If(self.m_axi_rvalid & self.m_axi_rready):
            m.d.sync += beats_read.eq(beats_read + 1)
        with m.If(self.m_axi_wvalid & self.m_axi_wready):
            m.d.sync += beats_written.eq(beats_written + 1)

        # -- registers ----------------------------------------------------------------------
        m.d.comb += [
            regs.busy.eq(running | stopping | clearing),  # idle once the reset behind has happened
            regs.cycles.eq(cycles),
            regs.saturated.eq(saturated),
            regs.cmd_done.eq(commands_done),
            regs.err_code.eq(err_code),
            regs.err_index.eq(err_index),
            regs.err_addr.eq(err_addr),
            regs.beats_read.eq(beats_read),
            regs.beats_written.eq(beats_written),
            self.interrupt.eq((regs.done | regs.error) & regs.irq_en),
        ]
        return m
