"""cocotb tests of ``radix_engine`` (run through the pytest wrappers in ``tests/test_sim_*.py``).

Environment: ``RADIX_ENGINE_CONFIG`` (JSON of the EngineConfig the Verilog was built for),
``RADIX_SEED`` (random seed), ``RADIX_JOBS`` (number of random jobs), ``RADIX_CHECK_DATA``
(``0`` when the build uses the stand-in core of ``tests/test_sim_regfile.py``, whose output is
a word counter and whose SATURATED is the input word count).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiResp
from radix.engine_spec import (
    LAYER_REGISTERS,
    REGISTERS,
    EngineConfig,
    build_value,
    field_mask,
    register,
)
from radix_hw.axil import layer_fields

from .tb import CLOCK_NS, EngineTB, JobTimeout, compare_words, random_job, skip_reuse_job, words_frame

HANDSHAKE_TIMEOUT_CYCLES = 100


def _config() -> EngineConfig:
    return EngineConfig(**json.loads(os.environ["RADIX_ENGINE_CONFIG"]))


def _seed() -> int:
    return int(os.environ.get("RADIX_SEED", "1"))


def _register_mask(name: str) -> int:
    """Bits a layer register holds."""
    return sum(((1 << width) - 1) << offset for _, offset, width in layer_fields(register(name)))


async def _tb(dut, **kwargs) -> EngineTB:
    tb = EngineTB(dut, seed=_seed(), **kwargs)
    await tb.start()
    return tb


def _tiny_job(config: EngineConfig):
    """A small real job: 1x1 kernel over a 2x2 map, no residual add (the stand-in core of
    tests/test_sim_regfile.py runs it too)."""
    rng = np.random.default_rng(_seed())
    return random_job(rng, config, max_channels=2, max_size=2, add_probability=0.0)


@cocotb.test()
async def test_build_registers(dut):
    """Every read-only build register reports its value; the engine describes its own config."""
    tb = await _tb(dut)
    config = _config()
    for reg in REGISTERS:
        expected = build_value(reg, config)
        if reg.access == "ro" and expected is not None:
            value = await tb.read_reg(reg.name)
            assert value == expected, f"{reg.name} reads 0x{value:X}, expected 0x{expected:X}"
    assert await tb.read_config() == config
    for reg in REGISTERS:
        if reg.access == "ro":
            before = await tb.read_reg(reg.name)
            await tb.write_reg(reg.name, 0xFFFFFFFF)
            assert await tb.read_reg(reg.name) == before, f"a write changed read-only {reg.name}"


@cocotb.test()
async def test_layer_registers_round_trip(dut):
    """rw registers keep their field bits, drop the others, and honour WSTRB."""
    tb = await _tb(dut)
    rng = random.Random(_seed())
    written = {}
    for _ in range(3):
        for name in LAYER_REGISTERS:
            written[name] = rng.getrandbits(32)
            await tb.write_reg(name, written[name])
        for name in rng.sample(LAYER_REGISTERS, len(LAYER_REGISTERS)):
            value = await tb.read_reg(name)
            expected = written[name] & _register_mask(name)
            assert value == expected, f"{name} reads 0x{value:X} after writing 0x{written[name]:X}"
    for name in LAYER_REGISTERS:
        offset = register(name).offset
        await tb.write_reg(name, 0)
        for byte in range(4):  # one strobed byte at a time
            assert await tb.write(offset + byte, bytes([0xA5])) == AxiResp.OKAY
            expected = int.from_bytes(bytes(0xA5 if b <= byte else 0 for b in range(4)), "little")
            value = await tb.read_reg(name)
            assert value == expected & _register_mask(name), f"{name} byte {byte}: reads 0x{value:X}"


@cocotb.test()
async def test_unmapped_addresses(dut):
    """Unmapped word addresses read 0, ignore writes and answer OKAY."""
    tb = await _tb(dut)
    mapped = {reg.offset for reg in REGISTERS}
    for name in LAYER_REGISTERS:
        await tb.write_reg(name, 0xFFFFFFFF)
    snapshot = {reg.name: await tb.read_reg(reg.name) for reg in REGISTERS if reg.name not in ("CYCLES", "STATUS")}
    for address in range(0, 1 << 12, 4):
        if address in mapped:
            continue
        assert await tb.write(address, 0xFFFFFFFF) == AxiResp.OKAY, f"write 0x{address:03X} not OKAY"
        value, resp = await tb.read(address)
        assert resp == AxiResp.OKAY and value == 0, f"0x{address:03X} reads 0x{value:X} ({resp!r})"
    for name, before in snapshot.items():
        assert await tb.read_reg(name) == before, f"writes to unmapped addresses changed {name}"
    assert int(dut.interrupt.value) == 0


@cocotb.test()
async def test_start_done_irq(dut):
    """CTRL.START pulses, STATUS.BUSY is live, STATUS.DONE is sticky W1C, interrupt = DONE & IRQ_EN."""
    tb = await _tb(dut, idle=0.0, backpressure=0.0)
    config = await tb.read_config()
    start, irq_en = field_mask("CTRL", "START"), field_mask("CTRL", "IRQ_EN")
    busy, done = field_mask("STATUS", "BUSY"), field_mask("STATUS", "DONE")
    assert await tb.read_reg("STATUS") == 0
    await tb.write(register("CTRL").offset + 1, bytes([0xFF]))  # CTRL's bits lie in byte 0: no effect
    await ClockCycles(dut.clk, 4)
    assert await tb.read_reg("STATUS") == 0 and await tb.read_reg("CTRL") == 0, "an unstrobed byte acted"
    await tb.write_reg("CTRL", irq_en)
    assert await tb.read_reg("CTRL") == irq_en, "CTRL.IRQ_EN does not hold"
    await tb.write_reg("CTRL", 0)
    assert await tb.read_reg("CTRL") == 0

    job = _tiny_job(config)
    for name in LAYER_REGISTERS:
        await tb.write_reg(name, job.layer[name])
    await tb.write_reg("CTRL", start)
    assert await tb.read_reg("CTRL") == 0, "CTRL.START reads back as 1"
    status = await tb.read_reg("STATUS")
    assert status & busy and not status & done, f"STATUS 0x{status:X} right after START"
    await tb.write_reg("CTRL", start)  # ignored while BUSY
    await tb.source.send(words_frame(job.words))
    await tb.wait_done(20_000 + 20 * job.words.size)
    status = await tb.read_reg("STATUS")
    assert status == done, f"STATUS 0x{status:X} after the job"
    frame = await tb.bounded(tb.sink.recv(), HANDSHAKE_TIMEOUT_CYCLES, "output frame")
    assert len(frame.tdata) == 8 * job.expected.size, "output frame length"
    assert tb.sink.empty(), "output beyond the job's frame"
    assert int(dut.interrupt.value) == 0, "interrupt without IRQ_EN"
    cycles = await tb.read_reg("CYCLES")
    assert job.words.size <= cycles, f"CYCLES {cycles} shorter than the input stream"
    await ClockCycles(dut.clk, 20)
    assert await tb.read_reg("CYCLES") == cycles, "CYCLES runs on after done"

    await tb.write_reg("CTRL", irq_en)
    await RisingEdge(dut.clk)
    assert int(dut.interrupt.value) == 1, "interrupt low with DONE and IRQ_EN set"
    await tb.write_reg("STATUS", busy)  # writing 0 to DONE keeps it
    assert await tb.read_reg("STATUS") == done
    await tb.write_reg("STATUS", done)
    assert await tb.read_reg("STATUS") == 0, "STATUS.DONE not cleared by writing 1"
    await RisingEdge(dut.clk)
    assert int(dut.interrupt.value) == 0, "interrupt stays high after DONE was cleared"

    # A second job through run_job: interrupt rises with DONE, START clears a stale DONE.
    result = await tb.run_job(job.layer, job.words, irq=True)
    assert result.words.size == job.expected.size
    assert int(dut.interrupt.value) == 0, "run_job leaves DONE cleared"
    await tb.write_reg("CTRL", start | irq_en)
    await tb.source.send(words_frame(job.words))
    await tb.wait_done(20_000 + 20 * job.words.size)
    await tb.bounded(tb.sink.recv(), HANDSHAKE_TIMEOUT_CYCLES, "output frame")
    assert int(dut.interrupt.value) == 1
    for name in LAYER_REGISTERS:
        await tb.write_reg(name, job.layer[name])
    await tb.write_reg("CTRL", start | irq_en)
    assert not await tb.read_reg("STATUS") & done, "START did not clear a stale DONE"
    await tb.source.send(words_frame(job.words))
    await tb.wait_done(20_000 + 20 * job.words.size)
    await tb.bounded(tb.sink.recv(), HANDSHAKE_TIMEOUT_CYCLES, "output frame")
    await tb.write_reg("STATUS", done)


class _RawAxiLite:
    """Pin-level AXI4-Lite driving for handshake orderings the master model never produces.

    Inputs change just after a falling edge and outputs are sampled before the next rising edge,
    so a handshake happens at the rising edge after a sample that saw valid and ready high.
    """

    def __init__(self, dut):
        self.dut = dut
        for name in ("awvalid", "wvalid", "bready", "arvalid", "rready", "awaddr", "wdata", "araddr", "awprot", "arprot"):
            getattr(dut, f"s_axi_{name}").value = 0
        dut.s_axi_wstrb.value = 0xF

    def _get(self, name: str) -> int:
        return int(getattr(self.dut, f"s_axi_{name}").value)

    async def _cycle(self, name: str) -> int:
        """Sample ``s_axi_<name>`` in the low phase, then move on to the next falling edge."""
        await ReadOnly()
        value = self._get(name)
        await FallingEdge(self.dut.clk)
        return value

    async def wait_for(self, name: str, what: str) -> None:
        """Clock until a cycle in which ``s_axi_<name>`` is high has passed its rising edge."""
        for _ in range(HANDSHAKE_TIMEOUT_CYCLES):
            if await self._cycle(name):
                return
        raise JobTimeout(f"{what}: s_axi_{name} not high within {HANDSHAKE_TIMEOUT_CYCLES} cycles")

    async def send(self, channel: str, **payload: int) -> None:
        for name, value in payload.items():
            getattr(self.dut, f"s_axi_{name}").value = value
        getattr(self.dut, f"s_axi_{channel}valid").value = 1
        await self.wait_for(f"{channel}ready", channel.upper())
        getattr(self.dut, f"s_axi_{channel}valid").value = 0

    async def response(self, channel: str, delay: int) -> int:
        """Wait for ``<channel>valid``, keep ``<channel>ready`` low ``delay`` cycles, then take it.

        Returns the data sampled when valid first showed (RDATA) or the response (B).
        """
        await self.wait_for(f"{channel}valid", channel.upper())
        data = self._get("rdata") if channel == "r" else self._get("bresp")
        for cycle in range(delay):
            await ReadOnly()
            assert self._get(f"{channel}valid"), f"{channel.upper()}VALID dropped without READY (cycle {cycle})"
            if channel == "r":
                assert self._get("rdata") == data, "RDATA changed while RVALID waited for RREADY"
            await FallingEdge(self.dut.clk)
        assert self._get(f"{channel}resp") == AxiResp.OKAY
        getattr(self.dut, f"s_axi_{channel}ready").value = 1
        assert await self._cycle(f"{channel}valid"), f"{channel.upper()}VALID dropped before the handshake"
        getattr(self.dut, f"s_axi_{channel}ready").value = 0
        assert not await self._cycle(f"{channel}valid"), f"{channel.upper()}VALID stays high after the handshake"
        return data

    async def write(self, address: int, data: int, *, w_first: bool, gap: int, b_delay: int) -> None:
        """One write with W ``gap`` cycles before or after AW and BREADY held low ``b_delay`` cycles."""
        channels = [("aw", {"awaddr": address}), ("w", {"wdata": data})]
        if w_first:
            channels.reverse()
        await self.send(channels[0][0], **channels[0][1])
        await ClockCycles(self.dut.clk, gap, rising=False)
        await self.send(channels[1][0], **channels[1][1])
        await self.response("b", b_delay)

    async def read(self, address: int, *, r_delay: int) -> int:
        """One read with RREADY held low ``r_delay`` cycles while RVALID and RDATA must hold."""
        await self.send("ar", araddr=address)
        return await self.response("r", r_delay)


@cocotb.test()
async def test_axi_handshakes(dut):
    """AW and W in either order with gaps, B and R backpressure; data must not be lost or repeated."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 0
    raw = _RawAxiLite(dut)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    rng = random.Random(_seed())
    for trial in range(24):
        name = rng.choice(LAYER_REGISTERS)
        value = rng.getrandbits(32)
        await raw.write(register(name).offset, value, w_first=bool(trial % 2), gap=rng.randrange(4), b_delay=rng.randrange(4))
        got = await raw.read(register(name).offset, r_delay=rng.randrange(4))
        assert got == value & _register_mask(name), f"trial {trial}: {name} reads 0x{got:X} after 0x{value:X}"
    assert await raw.read(register("ID").offset, r_delay=0) == build_value(register("ID"), _config())


@cocotb.test()
async def test_random_jobs(dut):
    """Random layers compared word for word with the golden model through the stream format.

    ``RADIX_IDLE`` and ``RADIX_BACKPRESSURE`` set the stream stall probabilities (default 0.2 and
    0.3); ``RADIX_JOBS`` the number of jobs.
    """
    tb = await _tb(dut, idle=float(os.environ.get("RADIX_IDLE", "0.2")),
                   backpressure=float(os.environ.get("RADIX_BACKPRESSURE", "0.3")))
    config = await tb.read_config()
    assert config == _config()
    check_data = os.environ.get("RADIX_CHECK_DATA", "1") != "0"
    # The stand-in core of tests/test_sim_regfile.py derives its input length without skip pixels.
    add_probability = 0.4 if check_data else 0.0
    rng = np.random.default_rng(_seed())
    count = int(os.environ.get("RADIX_JOBS", "8"))
    kinds = ("ADD", "IN_UNSIGNED", "SKIP_UNSIGNED", "OUT_UNSIGNED")
    flagged = dict.fromkeys(kinds, 0)
    for index in range(count):
        job = random_job(rng, config, add_probability=add_probability)
        for kind in kinds:
            flagged[kind] += bool(job.layer["FLAGS"] & field_mask("FLAGS", kind))
        dut._log.info("job %d: %s", index, job.description)
        result = await tb.run_job(job.layer, job.words)
        if check_data:
            compare_words(job, result.words, config)
            assert result.saturated == job.saturated, (
                f"{job.description}: SATURATED {result.saturated}, golden {job.saturated}"
            )
        else:  # the stand-in core of tests/test_sim_regfile.py: a word counter, input count as SATURATED
            assert result.words.size == job.expected.size, f"{job.description}: output length"
            assert np.array_equal(result.words, np.arange(job.expected.size, dtype=np.uint64)), "output words lost or repeated"
            assert result.saturated == job.words.size, f"SATURATED {result.saturated}, input words {job.words.size}"
        dut._log.info("job %d: %d cycles, %d saturated", index, result.cycles, result.saturated)
    if check_data and count >= 8:
        # residual adds and unsigned tensors (docs/arithmetic.md §1, §9), each with and without
        assert all(0 < n < count for n in flagged.values()), f"jobs per FLAGS bit of {count}: {flagged}"


@cocotb.test()
async def test_skip_bank_reuse(dut):
    """Residual adds of single-pass tiles with the output stream mostly stalled and the input
    always valid: every skip bank is refilled as soon as the engine allows (tb.skip_reuse_job)."""
    tb = await _tb(dut, idle=0.0, backpressure=0.85)
    config = await tb.read_config()
    rng = np.random.default_rng(_seed())
    for pool in (False, True):
        job = skip_reuse_job(rng, config, pool=pool)
        dut._log.info("%s", job.description)
        result = await tb.run_job(job.layer, job.words)
        compare_words(job, result.words, config)
        assert result.saturated == job.saturated, f"{job.description}: SATURATED {result.saturated}, golden {job.saturated}"
