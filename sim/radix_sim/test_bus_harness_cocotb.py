"""cocotb tests of the bus testbench with :class:`radix_sim.axi_probe.AxiCopyProbe` as the master
(run through ``tests/test_bus_harness.py``).

The top level is ``LatencyTop(AxiCopyProbe(), latency=L, depth=D)``; ``RADIX_LATENCY`` tells the
tests ``L``, ``RADIX_PAUSE`` the memory's pause probability, ``RADIX_SEED`` the seed of the pauses
and of the copies. Each test checks the data in memory, the probe's registers and the bus
monitor: no protocol violation, no read answered sooner than ``L`` cycles, several reads
outstanding.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.task import bridge
from radix.engine_spec import (BURST_BOUNDARY, BUS_BYTES, BUS_ENGINE_VERSION, COMMAND_WORDS, ENGINE_ID,
                               ERROR_CODE, MAX_BURST_BEATS, bus_register, field_mask_of)

from .bus_tb import BusEngineTB
from .bus_transport import SimBusTransport

MEMORY_SIZE = 64 * 1024
TIMEOUT_CYCLES = 60_000
DONE = field_mask_of("STATUS", "DONE")
ERROR = field_mask_of("STATUS", "ERROR")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _latency() -> int:
    return int(_env("RADIX_LATENCY", "0"))


def _seed() -> int:
    return int(_env("RADIX_SEED", "1"))


async def _start(dut) -> BusEngineTB:
    tb = BusEngineTB(dut, seed=_seed(), memory_size=MEMORY_SIZE, pause=float(_env("RADIX_PAUSE", "0.3")))
    await tb.start()
    return tb


def copy_command(src: int, dst: int, words: int) -> list[int]:
    """One copy command of the probe (see ``radix_sim.axi_probe``)."""
    return [src | dst << 32, words] + [0] * (COMMAND_WORDS - 2)


def place_copies(tb: BusEngineTB, rng: np.random.Generator, lengths, *, src_base: int, dst_base: int):
    """Random data for each copy, sources packed from ``src_base`` and destinations from
    ``dst_base`` with a gap after each; returns ``[(src, dst, data), ...]``."""
    copies, src, dst = [], src_base, dst_base
    for words in lengths:
        data = rng.integers(0, 1 << 64, size=words, dtype=np.uint64, endpoint=False)
        tb.write_memory(src, data)
        copies.append((src, dst, data))
        src += (words + 3) * BUS_BYTES
        dst += (words + 2) * BUS_BYTES
    return copies


def check_monitor(tb: BusEngineTB, *, reads_outstanding: int = 2) -> None:
    """No protocol violation; every read answered at least the built latency after its AR."""
    summary = tb.monitor.summary()
    tb.dut._log.info("bus: %s", summary)
    tb.monitor.check()
    if summary["read_bursts"]:
        assert summary["min_read_latency"] >= _latency(), summary
        assert summary["max_outstanding_reads"] >= reads_outstanding, summary


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_copy_list(dut):
    """Copies of 1 to 300 words, some across 4 KB boundaries, copied exactly under pauses."""
    tb = await _start(dut)
    assert await tb.read_reg("ID") == ENGINE_ID
    assert await tb.read_reg("VERSION") == BUS_ENGINE_VERSION
    rng = np.random.default_rng(_seed())
    base = tb.memory_base
    # the first source starts a word before a 4 KB boundary; lengths around a burst's 16 beats
    lengths = [3, 1, MAX_BURST_BEATS, MAX_BURST_BEATS + 1, 130, 300]
    copies = place_copies(tb, rng, lengths, src_base=base + BURST_BOUNDARY - BUS_BYTES,
                          dst_base=base + 5 * BURST_BOUNDARY + 24)
    cmd_base = base + 12 * BURST_BOUNDARY
    tb.write_memory(cmd_base, [w for src, dst, data in copies for w in copy_command(src, dst, data.size)])

    result = await tb.run_list(cmd_base, len(copies), base, MEMORY_SIZE, timeout_cycles=TIMEOUT_CYCLES)
    assert result["STATUS"] & (DONE | ERROR) == DONE, result
    assert result["CMD_DONE"] == len(copies), result
    total = sum(lengths)
    assert result["BEATS_READ"] == total + COMMAND_WORDS * len(copies), result
    assert result["BEATS_WRITTEN"] == total, result
    for n, (src, dst, data) in enumerate(copies):
        got = tb.read_memory(dst - BUS_BYTES, data.size + 2)
        np.testing.assert_array_equal(got[1:-1], data, err_msg=f"copy {n}")
        assert got[0] == 0 and got[-1] == 0, f"copy {n} wrote outside its destination"
    assert tb.monitor.read_beats == result["BEATS_READ"] and tb.monitor.write_beats == total
    assert tb.monitor.max_burst_beats == MAX_BURST_BEATS
    check_monitor(tb)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_window_error(dut):
    """A destination past the window stops the list before the burst (ERR_CODE WINDOW), after
    the first command's copy; the next list runs clean."""
    tb = await _start(dut)
    rng = np.random.default_rng(_seed() + 1)
    base = tb.memory_base
    window = 4 * BURST_BOUNDARY
    copies = place_copies(tb, rng, [40, 40], src_base=base, dst_base=base + BURST_BOUNDARY)
    outside = base + window - 8 * BUS_BYTES  # 40 words from here end past the window
    copies[1] = (copies[1][0], outside, copies[1][2])
    cmd_base = base + 2 * BURST_BOUNDARY
    tb.write_memory(cmd_base, [w for src, dst, data in copies for w in copy_command(src, dst, data.size)])

    result = await tb.run_list(cmd_base, 2, base, window, timeout_cycles=TIMEOUT_CYCLES)
    assert result["STATUS"] & (DONE | ERROR) == ERROR, result
    assert result["ERR_CODE"] == ERROR_CODE["WINDOW"] and result["ERR_INDEX"] == 1, result
    assert result["ERR_ADDR"] == base + window, result  # its first burst, up to the 4 KB boundary, fits
    assert result["CMD_DONE"] == 1, result
    np.testing.assert_array_equal(tb.read_memory(copies[0][1], 40), copies[0][2])
    check_monitor(tb)

    result = await tb.run_list(cmd_base, 1, base, window, timeout_cycles=TIMEOUT_CYCLES)
    assert result["STATUS"] & (DONE | ERROR) == DONE and result["ERR_CODE"] == 0, result
    check_monitor(tb)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_bus_error(dut):
    """A source outside the memory (the window is wider) answers SLVERR: ERR_CODE BUS."""
    tb = await _start(dut)
    base = tb.memory_base
    cmd_base = base + BURST_BOUNDARY
    beyond = base + MEMORY_SIZE  # inside the window, outside the memory
    tb.write_memory(cmd_base, copy_command(beyond, base, 20))
    result = await tb.run_list(cmd_base, 1, base, 2 * MEMORY_SIZE, timeout_cycles=TIMEOUT_CYCLES)
    assert result["STATUS"] & (DONE | ERROR) == ERROR, result
    assert result["ERR_CODE"] == ERROR_CODE["BUS"] and result["ERR_INDEX"] == 0, result
    check_monitor(tb, reads_outstanding=1)


def host_copy(transport: SimBusTransport, words: int, seed: int) -> dict:
    """Host code, blocking: one copy through the transport, as a driver would run a list."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1 << 64, size=words, dtype=np.uint64, endpoint=False)
    nbytes = 3 * BURST_BOUNDARY
    base = transport.allocate(nbytes)
    src, dst, cmd = 0, BURST_BOUNDARY + 64, 2 * BURST_BOUNDARY
    transport.write_memory(src, data)
    transport.write_memory(cmd, np.array(copy_command(base + src, base + dst, words), dtype=np.uint64))
    status = bus_register("STATUS").offset
    transport.write(status, DONE | ERROR)
    idle_wait = transport.wait_done(50)  # nothing started: the budget runs out
    for name, value in (("CMD_BASE", base + cmd), ("CMD_COUNT", 1), ("WIN_BASE", base), ("WIN_SIZE", nbytes)):
        transport.write(bus_register(name).offset, value)
    transport.write(bus_register("CTRL").offset, field_mask_of("CTRL", "START"))
    done = transport.wait_done(TIMEOUT_CYCLES)
    return {"idle_wait": idle_wait, "done": done, "status": transport.read(status),
            "copied": bool(np.array_equal(transport.read_memory(dst, words), data)),
            "memory_size": transport.memory_size, "accesses": transport.register_accesses}


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_sim_bus_transport(dut):
    """Blocking host code in a bridge thread drives the probe through SimBusTransport."""
    tb = await _start(dut)
    transport = SimBusTransport(tb)
    assert transport.memory_size == 0
    result = await bridge(host_copy)(transport, 100, _seed())
    assert result == {"idle_wait": False, "done": True, "status": DONE, "copied": True,
                      "memory_size": 3 * BURST_BOUNDARY, "accesses": 7}, result
    assert tb.memory_size == 3 * BURST_BOUNDARY
    check_monitor(tb)
