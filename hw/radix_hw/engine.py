"""The engine's top level: AXI4-Lite register file, convolution core, cycle counter, interrupt.

Ports (docs/engine.md): ``s_axi_*`` (AXI4-Lite slave), ``s_axis_*`` (job input stream),
``m_axis_*`` (job output stream), ``interrupt``; ``clk``/``rst`` are the default domain's.
``radix_hw.verilog`` wraps this module in a Verilog top level that carries Vivado's interface
attributes.
"""

from __future__ import annotations

from typing import Callable

from amaranth import Module, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from radix.engine_spec import STREAM_BITS, EngineConfig

from .axil import RegisterFile, axi_lite_members

CYCLES_BITS = 32
KEEP_BITS = STREAM_BITS // 8


def _default_core(*, config: EngineConfig) -> wiring.Component:
    from .core import ConvCore  # imported late: the core is the heavy part of the gateware

    return ConvCore(config=config)


class Engine(wiring.Component):
    """The whole Radix engine for one :class:`EngineConfig`.

    Parameters
    ----------
    config:
        Build parameters.
    core_factory:
        Callable ``(*, config) -> component`` with ConvCore's signature; ``None`` builds
        ``radix_hw.core.ConvCore``. Testbenches pass stand-ins here.

    ``CYCLES`` counts the clock cycles from the core's START pulse to its done pulse (their
    difference; it saturates at 2**32 - 1). ``STATUS.BUSY`` is set from START until done.
    Input TLAST and TKEEP are ignored: the core knows the job's length from the layer registers
    and every word is whole (``s_axis_tkeep`` exists so the DMA's MM2S TKEEP has a pin).

    ``CTRL.RESET`` (the register file's ``soft_reset`` pulse) resets the core's ``sync`` domain
    as ``rst`` does (reset-less pipeline data and the memories keep their contents, as after
    ``rst``: no job reads them before writing them), the cycle counter and the running flag, two cycles after the write (before any later register read
    answers): the engine is idle, STATUS.BUSY low, ``m_axis_tvalid`` and ``s_axis_tready`` low,
    CYCLES and SATURATED 0. Words still on either stream are the DMA's to drop (the pynq
    transport resets the DMA with the engine).
    """

    def __init__(self, *, config: EngineConfig, core_factory: Callable[..., wiring.Component] | None = None):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        if core_factory is not None and not callable(core_factory):
            raise TypeError(f"core_factory must be callable, not {type(core_factory).__name__}")
        self._config = config
        self._core_factory = core_factory or _default_core
        super().__init__(
            {
                **axi_lite_members(),
                "s_axis_tdata": In(STREAM_BITS),
                "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "s_axis_tkeep": In(KEEP_BITS),
                "m_axis_tdata": Out(STREAM_BITS),
                "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1),
                "m_axis_tlast": Out(1),
                "m_axis_tkeep": Out(KEEP_BITS),
                "interrupt": Out(1),
            }
        )

    @property
    def config(self) -> EngineConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = RegisterFile(config=self._config)
        core = self._core_factory(config=self._config)
        # the soft reset acts on the core's flip-flops as `rst` does, in addition to it
        m.submodules.core = ResetInserter({"sync": regs.soft_reset})(core)

        for name, member in axi_lite_members().items():
            outer, inner = getattr(self, name), getattr(regs, name)
            m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)

        running = Signal()
        cycles = Signal(CYCLES_BITS)
        with m.If(regs.soft_reset):
            m.d.sync += [running.eq(0), cycles.eq(0)]
        with m.Elif(regs.start):
            m.d.sync += [running.eq(1), cycles.eq(0)]
        with m.Elif(running):
            with m.If(cycles != (1 << CYCLES_BITS) - 1):
                m.d.sync += cycles.eq(cycles + 1)
            with m.If(core.done):
                m.d.sync += running.eq(0)

        m.d.comb += [
            core.layer.eq(regs.layer),
            core.start.eq(regs.start),
            # running covers the cycle between START and the core raising busy
            regs.busy.eq(running | core.busy),
            regs.job_done.eq(core.done),
            regs.cycles.eq(cycles),
            regs.saturated.eq(core.saturated),
            self.interrupt.eq(regs.done & regs.irq_en),
            core.s_in.payload.eq(self.s_axis_tdata),
            core.s_in.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(core.s_in.ready),
            self.m_axis_tdata.eq(core.m_out.payload.data),
            self.m_axis_tlast.eq(core.m_out.payload.last),
            self.m_axis_tvalid.eq(core.m_out.valid),
            core.m_out.ready.eq(self.m_axis_tready),
            self.m_axis_tkeep.eq((1 << KEEP_BITS) - 1),
        ]
        return m
