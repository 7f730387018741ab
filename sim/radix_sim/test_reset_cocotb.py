"""cocotb tests of CTRL.RESET, the engine's soft reset (run through ``tests/test_sim_reset.py``).

A reset in the middle of a job (while its input streams in, or while its output drains under
backpressure) must leave the engine idle and ready: STATUS.BUSY and DONE low, CYCLES and
SATURATED 0, no output word offered, the layer registers as programmed; and the next job's output
must be exactly its golden output, with nothing left over from the aborted one. What a PYNQ
transport does around the engine's reset, resetting the AXI DMA, is modelled by resetting the
testbench's stream source and sink (their queued and partial frames are dropped).

Environment: ``RADIX_ENGINE_CONFIG`` (JSON of the EngineConfig the Verilog was built for),
``RADIX_SEED`` (random seed), ``RADIX_JOBS`` (aborted jobs per test, each followed by a checked one).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge
from radix.engine_spec import LAYER_REGISTERS, EngineConfig, field_mask, register
from radix_hw.axil import layer_fields

from .tb import EngineTB, JobTimeout, compare_words, random_job, words_frame

WAIT_CYCLES = 20_000  # bound on waiting for a stream to reach the point where the reset goes in
IDLE, BACKPRESSURE = 0.2, 0.3  # source idle and sink pause probabilities, as EngineTB's defaults


def _config() -> EngineConfig:
    return EngineConfig(**json.loads(os.environ["RADIX_ENGINE_CONFIG"]))


def _seed() -> int:
    return int(os.environ.get("RADIX_SEED", "1"))


def _jobs() -> int:
    return int(os.environ.get("RADIX_JOBS", "3"))


class Beats:
    """Counts the handshakes (TVALID and TREADY high at a rising edge) of one stream."""

    def __init__(self, dut, prefix: str):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.count = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            if int(self.valid.value) and int(self.ready.value):
                self.count += 1

    async def reach(self, count: int, what: str) -> None:
        """Wait, at most WAIT_CYCLES cycles, until ``count`` handshakes have happened."""
        for _ in range(WAIT_CYCLES):
            if self.count >= count:
                return
            await RisingEdge(self.clk)
        raise JobTimeout(f"{what}: {self.count} of {count} stream words within {WAIT_CYCLES} cycles")


def _pauses(rng: random.Random, probability: float):
    """A random pause pattern for a stream model."""
    while True:
        yield rng.random() < probability


def _hold(model) -> None:
    """Stop a stream model (source or sink) from moving words until it gets a pattern again."""
    model.clear_pause_generator()
    model.pause = True


def _held_bits(name: str, value: int) -> int:
    """The bits of ``value`` that layer register ``name`` holds."""
    mask = sum(((1 << width) - 1) << offset for _, offset, width in layer_fields(register(name)))
    return value & mask


async def _program(tb: EngineTB, layer: dict) -> None:
    """Write every layer register (0 where ``layer`` has none)."""
    for name in LAYER_REGISTERS:
        await tb.write_reg(name, int(layer.get(name, 0)))


async def _soft_reset(tb: EngineTB, aborted) -> None:
    """CTRL.RESET as the pynq transport issues it (engine, then the DMA: here the stream models),
    then check that the engine is idle and kept the aborted job's layer registers."""
    await tb.write_reg("CTRL", field_mask("CTRL", "RESET"))
    status = await tb.read_reg("STATUS")
    assert status == 0, f"STATUS 0x{status:X} after CTRL.RESET, expected idle (BUSY=0, DONE=0)"
    for model in (tb.source, tb.sink):
        model.clear()
        model.assert_reset()
    for name in ("CYCLES", "SATURATED", "CTRL"):
        value = await tb.read_reg(name)
        assert value == 0, f"{name} reads 0x{value:X} after CTRL.RESET, expected 0"
    for name in LAYER_REGISTERS:
        value = await tb.read_reg(name)
        expected = _held_bits(name, int(aborted.layer.get(name, 0)))
        assert value == expected, f"layer register {name} reads 0x{value:X} after CTRL.RESET, was 0x{expected:X}"
    await ClockCycles(tb.dut.clk, 4)
    assert int(tb.dut.m_axis_tvalid.value) == 0, "m_axis_tvalid high after CTRL.RESET"
    assert int(tb.dut.s_axis_tready.value) == 0, "s_axis_tready high after CTRL.RESET with no job started"


async def _clean_job(tb: EngineTB, rng: np.random.Generator, config: EngineConfig, patterns: random.Random) -> None:
    """A fresh job after a reset, with random idle cycles and backpressure again: its output must
    be exactly the golden output."""
    tb.source.set_pause_generator(_pauses(patterns, IDLE))
    tb.sink.set_pause_generator(_pauses(patterns, BACKPRESSURE))
    job = random_job(rng, config)
    result = await tb.run_job(job.layer, job.words)
    compare_words(job, result.words, config)
    assert result.saturated == job.saturated, f"{job.description}: SATURATED {result.saturated}, golden {job.saturated}"


async def _start(tb: EngineTB) -> None:
    await tb.start()
    assert await tb.read_config() == _config()


@cocotb.test()
async def test_reset_while_input_streams(dut):
    """RESET after part of a job's input stream was accepted; the next job is exact."""
    tb = EngineTB(dut, seed=_seed())
    await _start(tb)
    config, rng, patterns = tb.config, np.random.default_rng(_seed()), random.Random(_seed())
    accepted = Beats(dut, "s_axis")
    for index in range(_jobs()):
        job = random_job(rng, config)
        await _program(tb, job.layer)
        await tb.write_reg("CTRL", field_mask("CTRL", "START"))
        cut = int(rng.integers(1, job.words.size // 2 + 1))
        start = accepted.count
        await tb.source.send(words_frame(job.words))
        await accepted.reach(start + cut, f"aborted job {index} ({job.description})")
        _hold(tb.source)  # the reset goes in with the rest of the input still waiting
        await ClockCycles(dut.clk, 2)
        got = accepted.count - start
        assert got < job.words.size, f"the whole input went in before the reset ({job.description})"
        dut._log.info("job %d: reset after %d of %d input words: %s", index, got, job.words.size, job.description)
        await _soft_reset(tb, job)
        await _clean_job(tb, rng, config, patterns)


@cocotb.test()
async def test_reset_while_output_drains(dut):
    """RESET while the output stream is stalled by backpressure with words still to come."""
    tb = EngineTB(dut, seed=_seed())
    await _start(tb)
    config, rng, patterns = tb.config, np.random.default_rng(_seed() + 1), random.Random(_seed())
    delivered = Beats(dut, "m_axis")
    done = 0
    while done < _jobs():
        job = random_job(rng, config)
        if job.expected.size < 3:
            continue  # too short to stop in the middle
        _hold(tb.sink)
        await _program(tb, job.layer)
        await tb.write_reg("CTRL", field_mask("CTRL", "START"))
        start = delivered.count
        await tb.source.send(words_frame(job.words))
        let_through = int(rng.integers(1, job.expected.size - 1))
        for _ in range(WAIT_CYCLES):
            if int(dut.m_axis_tvalid.value):
                break
            await RisingEdge(dut.clk)
        else:
            raise JobTimeout(f"aborted job {done}: no output word within {WAIT_CYCLES} cycles ({job.description})")
        tb.sink.pause = False
        await delivered.reach(start + let_through, f"aborted job {done} ({job.description})")
        tb.sink.pause = True
        await ClockCycles(dut.clk, 8)  # the engine now waits with its next word offered
        got = delivered.count - start
        assert got < job.expected.size and tb.sink.empty(), f"the whole output went through before the reset ({job.description})"
        dut._log.info("job %d: reset after %d of %d output words: %s", done, got, job.expected.size, job.description)
        await _soft_reset(tb, job)
        await _clean_job(tb, rng, config, patterns)
        done += 1


@cocotb.test()
async def test_reset_when_idle_clears_done_and_ignores_start(dut):
    """RESET after a finished job clears DONE and the interrupt; RESET with START starts nothing."""
    tb = EngineTB(dut, seed=_seed())
    await _start(tb)
    config, rng = tb.config, np.random.default_rng(_seed() + 2)
    job = random_job(rng, config)
    await _program(tb, job.layer)
    await tb.write_reg("CTRL", field_mask("CTRL", "START") | field_mask("CTRL", "IRQ_EN"))
    await tb.source.send(words_frame(job.words))
    await tb.bounded(tb.sink.recv(), WAIT_CYCLES, "the output frame of the job before the reset")
    await tb.wait_done(WAIT_CYCLES)
    await RisingEdge(dut.clk)
    assert int(dut.interrupt.value) == 1, "interrupt low with DONE and IRQ_EN set"
    await tb.write_reg("CTRL", field_mask("CTRL", "RESET") | field_mask("CTRL", "IRQ_EN"))
    assert await tb.read_reg("STATUS") == 0, "DONE survives CTRL.RESET"
    assert await tb.read_reg("CTRL") == field_mask("CTRL", "IRQ_EN"), "CTRL.IRQ_EN not kept as written"
    await RisingEdge(dut.clk)
    assert int(dut.interrupt.value) == 0, "interrupt high after CTRL.RESET"
    await tb.write_reg("CTRL", field_mask("CTRL", "RESET") | field_mask("CTRL", "START"))
    await ClockCycles(dut.clk, 4)
    assert await tb.read_reg("STATUS") == 0, "a START written with RESET started a job"
    assert int(dut.s_axis_tready.value) == 0, "the engine takes input after RESET|START"
    await tb.write_reg("CTRL", 0)
    await _clean_job(tb, rng, config, random.Random(_seed()))
