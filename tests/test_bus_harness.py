"""The bus-master testbench (``radix_sim.bus_tb``): its protocol checker and memory in Python, then
the whole harness on Verilator with the copy probe as the master.

The simulation top is ``LatencyTop(AxiCopyProbe(), latency=32, depth=48)`` (module
``radix_bus_probe``, built once and cached like the other builds); its cocotb tests are
``radix_sim.test_bus_harness_cocotb``, run with the memory pausing every channel 30% of the
cycles.
"""

from __future__ import annotations

import pytest
from radix.engine_spec import BURST_BOUNDARY, MAX_BURST_BEATS
from radix_hw.axi4 import BURST_INCR, SIZE_8_BYTES

from radix_sim.axi_latency import LatencyTop
from radix_sim.axi_probe import AxiCopyProbe
from radix_sim.build import compile_verilog, run_tests
from radix_sim.bus_tb import AxiProtocolChecker, BusProtocolError, RegionMemory
from radix_sim.units import unit_verilog

TOPLEVEL = "radix_bus_probe"
LATENCY = 32  # the floor is 30 cycles
DEPTH = 48  # > LATENCY: one request per cycle
PAUSE = 0.3
SEED = 7
BASE = 0x1000_0000

# ------------------------------------------------------------------------------------------------
# The protocol checker on hand-made cycles


def idle() -> dict:
    sample = {f"{ch}{hs}": 0 for ch in ("ar", "aw", "w", "r", "b") for hs in ("valid", "ready")}
    sample.update({"arid": 0, "araddr": 0, "arlen": 0, "arsize": 0, "arburst": 0, "awid": 0, "awaddr": 0,
                   "awlen": 0, "awsize": 0, "awburst": 0, "wdata": 0, "wstrb": 0, "wlast": 0, "rlast": 0})
    return sample


def address(ch: str, addr: int, beats: int, *, ready: int = 1, size: int = SIZE_8_BYTES, burst: int = BURST_INCR,
            id_: int = 0) -> dict:
    return {f"{ch}valid": 1, f"{ch}ready": ready, f"{ch}addr": addr, f"{ch}len": beats - 1, f"{ch}size": size,
            f"{ch}burst": burst, f"{ch}id": id_}


def run(checker: AxiProtocolChecker, *cycles: dict) -> AxiProtocolChecker:
    for changes in cycles:
        checker.step({**idle(), **changes})
    return checker


def write_burst(addr: int, beats: int, *, last_on: int | None = None) -> list[dict]:
    last_on = beats if last_on is None else last_on
    return [address("aw", addr, beats)] + [
        {"wvalid": 1, "wready": 1, "wdata": n, "wlast": int(n + 1 == last_on)} for n in range(beats)
    ] + [{"bvalid": 1, "bready": 1}]


def test_clean_traffic_facts():
    checker = run(
        AxiProtocolChecker(window=(BASE, 0x10000)),
        address("ar", BASE, 16), address("ar", BASE + 128, 4), {}, {},
        *[{"rvalid": 1, "rready": 1, "rlast": int(n == 15)} for n in range(16)],
        *[{"rvalid": 1, "rready": 1, "rlast": int(n == 3)} for n in range(4)],
        *write_burst(BASE + 0x1000 - 64, 8),
    )
    checker.check()
    assert checker.summary() == {
        "cycles": 34, "read_bursts": 2, "read_beats": 20, "write_bursts": 1, "write_beats": 8,
        "max_burst_beats": 16, "max_outstanding_reads": 2, "max_outstanding_writes": 1, "min_read_latency": 4,
        "violations": 0,
    }


def test_write_data_before_its_address_is_allowed():
    checker = run(AxiProtocolChecker(),
                  *[{"wvalid": 1, "wready": 1, "wlast": int(n == 3)} for n in range(4)],
                  address("aw", BASE, 4), {"bvalid": 1, "bready": 1})
    checker.check()
    assert checker.write_bursts == 1 and checker.write_beats == 4


@pytest.mark.parametrize("cycles,text", [
    ([address("ar", BASE, MAX_BURST_BEATS + 1)], "more than 16 beats"),
    ([address("ar", BASE + BURST_BOUNDARY - 8, 2)], "crosses a 4096-byte boundary"),
    ([address("aw", BASE, 2, size=2)], "AWSIZE 2"),
    ([address("ar", BASE, 2, burst=0)], "ARBURST 0, not INCR"),
    ([address("ar", BASE, 2, id_=1)], "ARID 1"),
    ([address("ar", BASE + 4, 1)], "not 8-byte aligned"),
    ([address("ar", BASE - 8, 2)], "outside the window"),
    ([address("ar", BASE + 0xF000 - 16, 2)], None),  # the last words of the window: fine
    (write_burst(BASE, 4, last_on=3), "had WLAST on beat 3"),
    (write_burst(BASE, 4, last_on=5), "had no WLAST on its last beat"),
    ([address("ar", BASE, 2, ready=0), {"arvalid": 0}], "ARVALID dropped before READY"),
    ([address("aw", BASE, 2, ready=0), address("aw", BASE + 8, 2)], "AWADDR changed while AWVALID waited"),
    ([{"wvalid": 1, "wdata": 1}, {"wvalid": 1, "wready": 1, "wdata": 2}], "WDATA changed"),
    ([{"rvalid": 1, "rready": 1, "rlast": 1}], "read data without an outstanding read burst"),
    ([{"bvalid": 1, "bready": 1}], "write response without an outstanding write burst"),
])
def test_violations_are_caught(cycles, text):
    checker = run(AxiProtocolChecker(window=(BASE, 0xF000)), *cycles)
    if text is None:
        checker.check()
        return
    with pytest.raises(BusProtocolError, match=text):
        checker.check()


def test_violation_texts_are_capped_but_all_counted():
    checker = run(AxiProtocolChecker(), *[address("ar", 4, 1)] * 30)
    assert checker.violation_count == 30 and len(checker.violations) == 20


def test_region_memory_bounds():
    memory = RegionMemory(BASE, 0x2000)
    memory.write(BASE + 0x1FF8, b"\x01" * 8)
    assert memory.read(BASE + 0x1FF8, 8) == b"\x01" * 8
    assert memory.read(BASE, 8) == bytes(8)  # zeroed
    for addr in (BASE - 8, BASE + 0x1FFC, 0):
        with pytest.raises(ValueError, match="outside memory"):
            memory.read(addr, 8)
        with pytest.raises(ValueError, match="outside memory"):
            memory[addr:addr + 8] = bytes(8)
    memory.place(BASE + 0x1000, 16)
    assert memory.read(BASE + 0x1000, 16) == bytes(16)
    with pytest.raises(ValueError, match="address space"):
        memory.place(0xFFFF_F000, 0x2000)


# ------------------------------------------------------------------------------------------------
# The harness on Verilator


@pytest.fixture(scope="module")
def probe_build():
    top = LatencyTop(AxiCopyProbe(), latency=LATENCY, depth=DEPTH)
    return compile_verilog(unit_verilog(top, TOPLEVEL), toplevel=TOPLEVEL,
                           identity={"top": "LatencyTop(AxiCopyProbe)", "latency": LATENCY, "depth": DEPTH})


@pytest.mark.parametrize("testcase", ["test_copy_list", "test_window_error", "test_bus_error",
                                      "test_sim_bus_transport"])
def test_harness_with_copy_probe(probe_build, testcase):
    run_tests(probe_build, test_module="radix_sim.test_bus_harness_cocotb", testcase=testcase,
              extra_env={"RADIX_LATENCY": LATENCY, "RADIX_PAUSE": PAUSE, "RADIX_SEED": SEED})
