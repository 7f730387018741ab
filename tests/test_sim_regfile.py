"""The register map over AXI4-Lite, in simulation, with a stand-in core.

The stand-in consumes exactly the job's input stream (its length follows from the layer
registers and docs/engine.md), answers with as many output words as the real core would (a word
counter as data), and reports its input word count as SATURATED. That keeps these register tests
independent of the convolution core, whose results ``test_sim_engine.py`` checks.
"""

from __future__ import annotations

import json

import pytest
from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from radix.engine_spec import EngineConfig

from radix_hw.layout import LayerConfigLayout
from radix_sim.build import build_engine, run_tests

CONFIG = EngineConfig(rows=3, cols=5, width=8, in_depth=256, wt_depth=256, acc_depth=128)
COUNT_BITS = 48


class StandInCore(wiring.Component):
    """ConvCore's signature and stream lengths, without the arithmetic."""

    def __init__(self, *, config: EngineConfig):
        self._config = config
        super().__init__(
            {
                "layer": In(LayerConfigLayout),
                "start": In(1),
                "busy": Out(1),
                "done": Out(1),
                "saturated": Out(32),
                "s_in": In(stream.Signature(64)),
                "m_out": Out(stream.Signature(data.StructLayout({"data": 64, "last": 1}))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg, layer = self._config, self.layer
        t_in = (layer.in_ch + cfg.rows - 1) // cfg.rows
        t_out = (layer.out_ch + cfg.cols - 1) // cfg.cols
        taps = layer.kernel * layer.kernel
        in_total = t_in * layer.in_h * layer.in_w * cfg.in_words + t_out * (cfg.cols + t_in * taps * cfg.rows * cfg.wt_words)
        out_h = Mux(layer.pool, layer.out_h >> 1, layer.out_h)
        out_w = Mux(layer.pool, layer.out_w >> 1, layer.out_w)
        out_total = t_out * out_h * out_w * cfg.wt_words

        left, sent = Signal(COUNT_BITS), Signal(COUNT_BITS)
        m.d.sync += self.done.eq(0)
        m.d.comb += [
            self.m_out.payload.data.eq(sent),
            self.m_out.payload.last.eq(left == 1),
        ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [left.eq(in_total), self.busy.eq(1), self.saturated.eq(in_total)]
                    m.next = "IN"
            with m.State("IN"):
                m.d.comb += self.s_in.ready.eq(1)
                with m.If(self.s_in.valid):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.d.sync += [left.eq(out_total), sent.eq(0)]
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.m_out.valid.eq(1)
                with m.If(self.m_out.ready):
                    m.d.sync += [left.eq(left - 1), sent.eq(sent + 1)]
                    with m.If(left == 1):
                        m.d.sync += [self.done.eq(1), self.busy.eq(0)]
                        m.next = "IDLE"
        return m


@pytest.fixture(scope="module")
def build():
    return build_engine(CONFIG, core_factory=StandInCore)


@pytest.mark.parametrize(
    "testcase",
    [
        "test_build_registers",
        "test_layer_registers_round_trip",
        "test_unmapped_addresses",
        "test_start_done_irq",
        "test_axi_handshakes",
        "test_random_jobs",
    ],
)
def test_regfile(build, testcase):
    run_tests(
        build,
        test_module="radix_sim.test_engine_cocotb",
        testcase=testcase,
        extra_env={
            "RADIX_ENGINE_CONFIG": json.dumps(CONFIG.as_dict()),
            "RADIX_CHECK_DATA": "0",
            "RADIX_JOBS": "4",
            "RADIX_SEED": "7",
        },
    )
