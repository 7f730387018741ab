"""The pynq transport's scenarios, run inside the board runtime (tests/test_board_runtime.py).

``python board_scenarios.py PLAN.json RESULTS.json``: runs every scenario below against
:mod:`pynq_board` (the model board under PYNQ 3.0.1's own code) and writes one JSON object,
``{scenario: facts}``, where the facts are what happened (results, error types and messages,
the register traffic the models saw). tests/test_board_runtime.py asserts on them: the
scenarios only act and record, so one Python 3.10 process serves every test. A scenario that
raises unexpectedly records ``{"crash": traceback}``.

PLAN.json: ``engine_ports`` (the gateware's top-level ports, for the overlay's .hwh),
``workdir`` (a directory for overlays and records), ``notebook`` and ``notebook_dir`` (where the
notebook's program, images and overlay go), ``program`` and ``data`` for ``radix run``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pynq_board  # noqa: E402  (the model needs PYNQ imported first, from this directory)
from pynq_board import Board, install  # noqa: E402

from radix import network  # noqa: E402
from radix.engine_spec import BUS_REGISTERS, COMMAND_BYTES, bus_register, encode_command  # noqa: E402
from radix.program import Program  # noqa: E402

SCENARIOS = {}
MIN_WAIT_S = 0.05  # short waits: the model answers within LATENCY_S or never
REGISTER_NAMES = {reg.offset: reg.name for reg in BUS_REGISTERS}


def scenario(function):
    SCENARIOS[function.__name__] = function
    return function


def error(call) -> dict:
    """``{"error": type, "message": str}`` of what ``call()`` raised, or ``{"error": None}``."""
    try:
        call()
    except Exception as exc:  # the facts of any failure are what the tests check
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None}


def overlay_of(plan: dict, board: Board, name: str) -> str:
    """``board``'s overlay (.bit and .hwh) in a directory of its own; the .bit's path."""
    return board.write_overlay(os.path.join(plan["workdir"], name))


def transport(plan: dict, board: Board, name: str = "overlay", **kwargs):
    from radix.pynq_transport import PynqBusTransport

    install(board)
    return PynqBusTransport(overlay_of(plan, board, name), **{"min_wait_s": MIN_WAIT_S, **kwargs})


def images(plan: dict, count: int):
    """The first ``count`` test images of the plan's data, quantized for its program, and the program."""
    program = Program.load(plan["program"])
    data = np.load(plan["data"])
    return program, network.quantize_input(program, data["x"][:count])


def names(board: Board, since: int = 0, region: str = "engine") -> list[str]:
    """``op NAME`` of every access of ``region`` in the log from ``since``."""
    return [f"{e[1]} {REGISTER_NAMES.get(e[2], hex(e[2])) if region == 'engine' else hex(e[2])}"
            for e in board.log[since:] if e[0] == region]


def _batches(plan: dict, *, latency_s: float, interrupt: str = "intc", batch: int = 4, batches: int = 3,
             **transport_kwargs) -> dict:
    """A program loaded once, then ``batches`` batches through the driver: logits against the
    golden model and every batch's register traffic."""
    from radix.driver import Driver

    board = Board(latency_s=latency_s, interrupt=interrupt)
    t = transport(plan, board, f"batches-{interrupt}-{latency_s}", min_wait_s=1.0, **transport_kwargs)
    program, x_q = images(plan, batch * batches)
    expected = network.run(program, x_q)[-1].values.reshape(len(x_q), -1)
    driver = Driver(t)
    before_load = len(board.log)
    loaded = driver.load(program, batch=batch)
    load_accesses = names(board, before_load)
    runs = []
    for first in range(0, len(x_q), batch):
        mark, fired, unmasks = len(board.log), board.fired, board.uio.unmasks if board.uio else 0
        started = time.monotonic()
        result = driver.run(loaded, x_q[first:first + batch])
        runs.append({"bit_exact": bool(np.array_equal(result.logits, expected[first:first + batch])),
                     "register_accesses": result.register_accesses, "engine_cycles": result.engine_cycles,
                     "engine": names(board, mark), "intc": len(names(board, mark, "intc")),
                     "fired": board.fired - fired,
                     "unmasks": (board.uio.unmasks if board.uio else 0) - unmasks,
                     "seconds": time.monotonic() - started})
    window = {name: t.read(bus_register(name).offset) for name in ("WIN_BASE", "WIN_SIZE", "CMD_BASE", "CMD_COUNT")}
    facts = {"runs": runs, "load": load_accesses, "wait_mode": t.wait_mode, "window": window,
             "buffer": [t.buffer_address, t.memory_size], "memory_bytes": loaded.placement.memory_bytes,
             "engine_seconds": t.engine_seconds, "clock_mhz": t.clock_mhz, "downloads": board.downloads,
             "fclk0_divisors": [int(board.slcr[0x170 // 4] >> 8 & 0x3F), int(board.slcr[0x170 // 4] >> 20 & 0x3F)],
             "unexpected": board.unexpected, "engine_offsets": sorted(board.offsets("engine")),
             "engine_written": sorted({REGISTER_NAMES[o] for o in board.offsets("engine", "write")}),
             "flushes": board.device.flushes, "invalidates": board.device.invalidates,
             "starts": board.engine.starts, "engine_done": [r.done for r in board.engine.results]}
    t.close()
    facts["allocated"], facts["freed"] = len(board.device.ddr), len(board.device.freed)
    board.close()
    return facts


@scenario
def batches_interrupt(plan):
    return _batches(plan, latency_s=0.02)


@scenario
def batches_interrupt_slow(plan):
    """The same with a ten times slower engine: the register traffic must not grow."""
    return _batches(plan, latency_s=0.2)


@scenario
def batches_direct_irq(plan):
    """The engine's interrupt straight on IRQ_F2P: PYNQ 3.0.1 lists no interrupt, the transport polls."""
    return _batches(plan, latency_s=0.02, interrupt="direct")


@scenario
def polling(plan):
    """``interrupt=False``: the transport polls STATUS although the overlay connects the interrupt."""
    board = Board(latency_s=0.02)
    t = transport(plan, board, "polling", min_wait_s=1.0, interrupt=False)
    facts = {"wait_mode": t.wait_mode}
    program, x_q = images(plan, 2)
    from radix.driver import Driver

    driver = Driver(t)
    loaded = driver.load(program, batch=2)
    result = driver.run(loaded, x_q)
    facts["bit_exact"] = bool(np.array_equal(result.logits, network.run(program, x_q)[-1].values.reshape(2, -1)))
    facts["register_accesses"] = result.register_accesses
    facts["intc"] = len(names(board, 0, "intc"))
    facts["irq_en"] = bool(board.engine.regs[bus_register("CTRL").offset] & pynq_board.IRQ_EN)
    t.close()
    board.close()
    return facts


@scenario
def inside_an_event_loop(plan):
    """As in Jupyter, whose kernel runs the cells inside its running event loop: PYNQ's UIO
    controller is made in that loop and the transport waits inside it (nest_asyncio)."""
    import asyncio

    from radix.driver import Driver

    async def cell():
        board = Board()
        t = transport(plan, board, "event-loop")
        program, x_q = images(plan, 2)
        driver = Driver(t)
        loaded = driver.load(program, batch=2)
        runs = [driver.run(loaded, x_q) for _ in range(2)]
        expected = network.run(program, x_q)[-1].values.reshape(2, -1)
        facts = {"wait_mode": t.wait_mode, "bit_exact": [bool(np.array_equal(r.logits, expected)) for r in runs],
                 "register_accesses": [r.register_accesses for r in runs], "fired": board.fired,
                 "loop_running": asyncio.get_event_loop().is_running()}
        t.close()
        board.close()
        return facts

    return asyncio.new_event_loop().run_until_complete(cell())


@scenario
def no_uio(plan):
    """An image without the UIO device for IRQ_F2P[0]: pynq.Interrupt fails, the transport polls."""
    board = Board(uio=False)
    t = transport(plan, board, "no-uio")
    facts = {"wait_mode": t.wait_mode}
    t.close()
    board.close()
    return facts


@scenario
def placed_list(plan):
    """The transport alone: a placement written with write_memory, the registers, one START."""
    from radix.placement import place

    board = Board()
    t = transport(plan, board, "placed")
    program, x_q = images(plan, 3)
    from radix.driver import read_config

    config = read_config(t)
    size = place(program, config, batch=3).memory_bytes
    base = t.allocate(size)
    placement = place(program, config, batch=3, base=base)
    t.write_memory(0, placement.memory)
    t.write_memory(*placement.input_words(x_q))
    for name, value in (("CMD_BASE", placement.cmd_base), ("CMD_COUNT", placement.cmd_count), ("WIN_BASE", base),
                        ("WIN_SIZE", placement.memory_bytes), ("STATUS", 6), ("CTRL", 1)):
        t.write(bus_register(name).offset, value)
    done = t.wait_done(10_000_000)
    status = t.read(bus_register("STATUS").offset)
    memory = t.read_memory(0, placement.memory_bytes // 8)
    logits = placement.logits(memory)[:3]
    facts = {"done": done, "status": status, "base": base, "size": size,
             "bit_exact": bool(np.array_equal(logits, network.run(program, x_q)[-1].values.reshape(3, -1))),
             "cmd_done": t.read(bus_register("CMD_DONE").offset), "cmd_count": placement.cmd_count}
    t.close()
    board.close()
    return facts


def _loaded(plan, board: Board, name: str, batch: int = 2):
    from radix.driver import Driver

    t = transport(plan, board, name)
    program, x_q = images(plan, batch)
    driver = Driver(t)
    return t, driver, driver.load(program, batch=batch), x_q, program


@scenario
def fault_opcode(plan):
    """A command with a bad opcode: the list stops with ERR_CODE OPCODE; fixed, the next batch runs."""
    board = Board()
    t, driver, loaded, x_q, program = _loaded(plan, board, "opcode")
    placement = loaded.placement
    index = placement.cmd_count - 1
    good = encode_command(**placement.commands[index].fields)
    bad = encode_command(**dict(placement.commands[index].fields, opcode=7))
    t.write_memory(placement.cmd_base - placement.base + index * COMMAND_BYTES, np.array(bad, dtype=np.uint64))
    facts = error(lambda: driver.run(loaded, x_q))
    facts["layer"] = placement.commands[index].layer
    facts["index"] = index
    facts["status_after"] = t.read(bus_register("STATUS").offset)  # the driver reset the engine
    t.write_memory(placement.cmd_base - placement.base + index * COMMAND_BYTES, np.array(good, dtype=np.uint64))
    again = driver.run(loaded, x_q)
    facts["recovered"] = bool(np.array_equal(again.logits, network.run(program, x_q)[-1].values.reshape(2, -1)))
    t.close()
    board.close()
    return facts


@scenario
def fault_window(plan):
    """A window one page short of the buffer: the list stops with ERR_CODE WINDOW at the first
    burst beyond it; the diagnostics decode the error registers."""
    board = Board()
    t, driver, loaded, x_q, _ = _loaded(plan, board, "window")
    placement = loaded.placement
    t.write(bus_register("WIN_SIZE").offset, placement.memory_bytes - 4096)
    t.write_memory(*placement.input_words(x_q))
    t.write(bus_register("STATUS").offset, 6)
    t.write(bus_register("CTRL").offset, 1)
    facts = {"done": t.wait_done(1_000_000), "diagnostics": t.diagnostics(),
             "window_end": placement.base + placement.memory_bytes - 4096, "base": placement.base,
             "memory_bytes": placement.memory_bytes}
    facts["run"] = error(lambda: driver.run(loaded, x_q))
    t.close()
    board.close()
    return facts


@scenario
def timeout(plan):
    """An engine that never finishes: the wait ends at its bound, with the registers; the driver
    resets the engine and the next batch runs."""
    board = Board(mode="hang")
    t, driver, loaded, x_q, program = _loaded(plan, board, "hang")
    mark = len(board.log)
    started = time.monotonic()
    facts = error(lambda: driver.run(loaded, x_q))
    facts["seconds"] = time.monotonic() - started
    facts["engine"] = names(board, mark)
    board.mode = "ok"
    again = driver.run(loaded, x_q)
    facts["recovered"] = bool(np.array_equal(again.logits, network.run(program, x_q)[-1].values.reshape(2, -1)))
    facts["budget_s"] = t.budget_seconds(loaded.budget_cycles)
    t.close()
    board.close()
    return facts


@scenario
def timeout_polling(plan):
    board = Board(mode="hang", interrupt="direct")
    t, driver, loaded, x_q, _ = _loaded(plan, board, "hang-poll")
    started = time.monotonic()
    facts = error(lambda: driver.run(loaded, x_q))
    facts["seconds"] = time.monotonic() - started
    facts["wait_mode"] = t.wait_mode
    t.close()
    board.close()
    return facts


@scenario
def reset_stuck(plan):
    board = Board(mode="reset_stuck")
    t, driver, loaded, x_q, _ = _loaded(plan, board, "stuck")
    facts = error(lambda: driver.run(loaded, x_q))
    facts["direct"] = error(t.reset)
    board.close()
    return facts


@scenario
def resets(plan):
    """CTRL.RESET on an idle engine, and at start-up (the transport resets before anything else)."""
    board = Board()
    t = transport(plan, board, "reset")
    first = [e for e in board.log if e[0] == "engine"]
    mark = len(board.log)
    t.reset()
    facts = {"startup": [f"{e[1]} {REGISTER_NAMES[e[2]]}" + ("" if e[3] is None else f"={e[3]}") for e in first],
             "reset": names(board, mark)}
    t.close()
    board.close()
    return facts


@scenario
def memory(plan):
    """allocate, write_memory and read_memory over PYNQ's buffers and the model's DDR and cache."""
    board = Board()
    t = transport(plan, board, "memory")
    device = board.device
    facts = {"before": error(lambda: t.read_memory(0, 1))}
    a = t.allocate(1000)
    facts["first"] = {"address": a, "size": t.memory_size, "zero": bool(not t.read_memory(0, 125).any())}
    flushes, flushed = device.flushes, device.flushed_bytes
    t.write_memory(16, np.array([1, 2, 3], dtype=np.uint64))
    facts["write"] = {"flushes": device.flushes - flushes, "bytes": device.flushed_bytes - flushed}
    # what the engine wrote into DDR behind the CPU's cache: a read must invalidate first
    ddr = device.ddr[max(device.ddr)][1].view(np.uint64)
    ddr[5] = 0xABCDEF
    invalidated = device.invalidated_bytes
    facts["read"] = [int(v) for v in t.read_memory(16, 4)]
    facts["invalidated"] = device.invalidated_bytes - invalidated
    b = t.allocate(512)
    facts["smaller"] = {"address": b, "size": t.memory_size, "zero": bool(not t.read_memory(0, 64).any())}
    c = t.allocate(1 << 20)
    facts["larger"] = {"address": c, "size": t.memory_size, "freed": list(device.freed)}
    facts["outside"] = error(lambda: t.write_memory(t.memory_size - 8, np.zeros(2, dtype=np.uint64)))
    facts["unaligned"] = error(lambda: t.read_memory(4, 1))
    facts["empty"] = error(lambda: t.allocate(0))
    t.close()
    facts["closed"] = error(lambda: t.read(0))
    facts["closed_memory"] = error(lambda: t.allocate(8))
    facts["freed_after_close"] = len(device.freed)
    board.close()
    return facts


@scenario
def clocks(plan):
    facts = {}
    board = Board()
    t = transport(plan, board, "clock50", clock_mhz=50.0, min_wait_s=1.0)
    facts["budget_short"] = t.budget_seconds(1000)
    facts["budget_long"] = t.budget_seconds(200_000_000)
    t.close()
    facts["refused"] = error(lambda: transport(plan, Board(), "clock130", clock_mhz=130.0))
    t = transport(plan, Board(fclk_mhz=142.857), "clock142")
    facts["fclk_142"] = t.clock_mhz
    t.close()
    return facts


@scenario
def wrong_overlays(plan):
    facts = {}
    for name, board in (("no_engine", Board(cells=())), ("small_span", Board(span=0x80)),
                        ("wrong_id", Board(ident=0xDEADBEEF)), ("version_4", Board(version=4)),
                        ("stream_engine", Board(engine_vlnv="xilinx.com:module_ref:radix_engine:1.0"))):
        facts[name] = error(lambda board=board, name=name: transport(plan, board, f"wrong-{name}"))
        board.close()
    with tempfile.TemporaryDirectory() as tmp:
        for missing in ("radix.hwh", "radix.bit"):
            board = Board()
            bit = board.write_overlay(tmp)
            os.remove(os.path.join(tmp, missing))
            install(board)
            from radix.pynq_transport import PynqBusTransport

            facts[f"missing_{missing}"] = error(lambda: PynqBusTransport(bit))
            board.close()
    return facts


@scenario
def register_guards(plan):
    from radix.pynq_transport import EngineRegisters, describe_error, describe_status

    log = []

    class Recorder:
        def read(self, offset):
            log.append(offset)
            return 7

        def write(self, offset, value):
            log.append((offset, value))

    regs = EngineRegisters(Recorder(), where="engine at 0x43C00000")
    facts = {"read": regs.read(0x048)}
    regs.write(0x080, 0xFFFFFFFF)
    facts["bad_offset"] = error(lambda: regs.read(0x090))
    facts["bad_value"] = error(lambda: regs.write(0x08C, -1))
    facts["log"] = log
    facts["status"] = describe_status(0x5)
    facts["error"] = describe_error(1)
    facts["no_error"] = describe_error(0)
    return facts


@scenario
def cli(plan):
    """``radix run --batch`` and ``radix selftest`` with ``--backend pynq``, as on the board."""
    from radix.cli import main

    facts = {}
    board = Board(latency_s=0.002)
    bit = overlay_of(plan, board, "cli")
    for name, argv in (("run", ["run", plan["program"], "--backend", "pynq", "--overlay", bit, "--data", plan["data"],
                                "--images", "10", "--batch", "5", "--json"]),
                       ("selftest", ["selftest", "--backend", "pynq", "--overlay", bit, "--count", "5", "--json"])):
        install(board)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(argv)
        # each command loads the overlay anew (a fresh engine): its STARTs
        facts[name] = {"status": status, "result": json.loads(out.getvalue()), "starts": board.engine.starts}
    board.close()
    return facts


@scenario
def bringup(plan):
    """``python3 -m radix.bringup`` on the board: the record of a session, for the host to replay."""
    from radix.bringup import main

    board = Board(latency_s=0.002)
    bit = overlay_of(plan, board, "bringup")
    install(board)
    record = os.path.join(plan["workdir"], "bring-up.json")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["--overlay", bit, "--program", plan["program"], "--data", plan["data"], "--images", "20",
                       "--batch", "10", "-o", record])
    board.close()
    return {"status": status, "output": out.getvalue(), "record": json.load(open(record))}


@scenario
def notebook(plan):
    """Every code cell of the board notebook, in order, in its directory."""
    board = Board(latency_s=0.002)
    board.write_overlay(plan["notebook_dir"])
    install(board)
    cells = json.load(open(plan["notebook"]))["cells"]
    namespace: dict = {}
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(plan["notebook_dir"])
    try:
        with contextlib.redirect_stdout(out):
            for cell in cells:
                if cell["cell_type"] == "code":
                    exec(compile("".join(cell["source"]), plan["notebook"], "exec"), namespace)
    finally:
        os.chdir(cwd)
    result = namespace["result"]
    facts = {"output": out.getvalue(), "images": result["images"], "bit_exact": result["bit_exact"],
             "accuracy": result["accuracy"], "reference_accuracy": result["reference_accuracy"],
             "cycles_source": result["cycles"]["source"], "batch": result["batch"], "starts": board.engine.starts,
             "fired": board.fired, "freed": len(board.device.freed), "allocated": len(board.device.ddr)}
    board.close()
    return facts


def main(argv: list[str]) -> int:
    plan_path, results_path = argv
    plan = json.load(open(plan_path))
    pynq_board.ENGINE_PORTS[:] = [tuple(port) for port in plan["engine_ports"]]
    warnings.simplefilter("ignore", DeprecationWarning)
    results = {}
    only = set(os.environ.get("RADIX_BOARD_SCENARIOS", "").split(",")) - {""}
    for name, function in SCENARIOS.items():
        if only and name not in only:
            continue
        try:
            results[name] = function(plan)
        except Exception:  # recorded for the test that asserts on this scenario
            results[name] = {"crash": traceback.format_exc()}
    with open(results_path, "w") as handle:
        json.dump(results, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
