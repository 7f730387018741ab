"""The pynq transport's scenarios, run inside the board runtime (tests/test_board_runtime.py).

``python board_scenarios.py PLAN.json RESULTS.json``: runs every scenario below against
:mod:`pynq_board` (the model board under PYNQ 3.0.1's own code) and writes one JSON object,
``{scenario: facts}``, where the facts are what happened (results, error types and messages,
the register traffic the models saw). tests/test_board_runtime.py asserts on them: the
scenarios only act and record, so one Python 3.10 process serves every test. A scenario that
raises unexpectedly records ``{"crash": traceback}``.

PLAN.json: ``overlay`` (a .bit with its .hwh), ``notebook`` and ``workdir`` (where the
notebook's program, images and overlay lie), ``program`` and ``data`` for ``radix run``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pynq_board  # noqa: E402  (the model needs PYNQ imported first, from this directory)
from pynq_board import Board, install  # noqa: E402

from radix import runner  # noqa: E402
from radix.engine_spec import REGISTERS  # noqa: E402

SCENARIOS = {}
MIN_WAIT_S = 0.05  # short waits: the model answers in a few register accesses or never


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


def transport(plan: dict, board: Board, **kwargs):
    from radix.pynq_transport import PynqTransport

    install(board)
    return PynqTransport(plan["overlay"], **{"min_wait_s": MIN_WAIT_S, **kwargs})


def dma_name(board: Board, offset: int) -> str:
    return board.dma.names.get(offset, f"0x{offset:02X}")


@scenario
def selftest(plan):
    """Random layers through the driver, PYNQ's DMA driver and the models; the register traffic."""
    board = Board()
    t = transport(plan, board)
    result = runner.selftest(t, seed=5, count=12)
    t.close()
    spec = {reg.offset: reg for reg in REGISTERS}
    lengths = [dma_name(board, e[2]) for e in board.log if e[0] == "dma" and e[1] == "write"
               and dma_name(board, e[2]).endswith("_LENGTH")]
    first_length = next(i for i, e in enumerate(board.log) if e[0] == "dma" and e[1] == "write"
                        and dma_name(board, e[2]).endswith("_LENGTH"))
    startup = [(e[0], dma_name(board, e[2]) if e[0] == "dma" else spec[e[2]].name, e[3])
               for e in board.log[:first_length] if e[1] == "write"]
    return {
        "mismatches": result["mismatches"], "layers": result["layers"], "backend": result["backend"],
        "clock_mhz": t.clock_mhz, "downloads": board.downloads, "fclk0_divisors": [
            int(board.slcr[0x170 // 4] >> 8 & 0x3F), int(board.slcr[0x170 // 4] >> 20 & 0x3F)],
        "engine_offsets": sorted(board.offsets("engine")),
        "engine_written": sorted({spec[o].access for o in board.offsets("engine", "write") if o in spec}),
        "dma_registers": sorted({dma_name(board, o) for o in board.offsets("dma")}),
        "unexpected": board.unexpected, "lengths": lengths, "startup": startup,
        "allocated": len(board.device.ddr), "freed": len(board.device.freed),
        "flushes": board.device.flushes, "invalidates": board.device.invalidates,
    }


def _fault(plan, mode: str) -> dict:
    """A layer under a fault, then (mode ok again) two more on the same transport."""
    board = Board(mode=mode)
    t = transport(plan, board)
    resets_before = len(board.dma_writes("MM2S_DMACR"))
    facts = error(lambda: runner.selftest(t, seed=3, count=1))
    facts["fault_after"] = t.fault
    facts["dma_resets"] = sum(1 for _, v in board.dma_writes("MM2S_DMACR")[resets_before:] if v & 0x4)
    board.mode = "ok"
    again = runner.selftest(t, seed=4, count=2)
    facts["recovered"] = again["mismatches"] == 0 and again["layers"] == 2
    facts["dma_resets_total"] = sum(1 for _, v in board.dma_writes("MM2S_DMACR")[resets_before:] if v & 0x4)
    t.close()
    return facts


for _mode in ("short", "long", "hang", "slave_error", "stuck_input"):
    SCENARIOS[f"fault_{_mode}"] = (lambda mode: lambda plan: _fault(plan, mode))(_mode)


@scenario
def receive_timeout(plan):
    board = Board(mode="hang")
    t = transport(plan, board)
    t.write(0x040, 1)  # CTRL.START with whatever the layer registers hold: nothing will come out
    got = t.receive(4, 1000)
    facts = {"words": int(got.words.size), "last": got.last, "fault": t.fault}
    facts["refused"] = error(lambda: t.send(np.zeros(3, dtype=np.uint64)))
    t.reset()
    facts["fault_after_reset"] = t.fault
    return facts


@scenario
def reset_stuck(plan):
    return error(lambda: transport(plan, Board(mode="reset_stuck")))


@scenario
def clocks(plan):
    facts = {}
    t = transport(plan, Board(), clock_mhz=50.0, min_wait_s=1.0)
    facts["budget_short"] = t.budget_seconds(1000)
    facts["budget_long"] = t.budget_seconds(200_000_000)
    facts["refused"] = error(lambda: transport(plan, Board(), clock_mhz=130.0))
    facts["fclk_142"] = transport(plan, Board(fclk_mhz=142.857)).clock_mhz
    return facts


@scenario
def too_long(plan):
    t = transport(plan, Board())
    return error(lambda: t.send(np.zeros(1 << 20, dtype=np.uint64)))


@scenario
def closed(plan):
    t = transport(plan, Board())
    t.close()
    return error(lambda: t.receive(1, 10))


@scenario
def wrong_overlays(plan):
    facts = {}
    for name, board in (("no_engine", Board(cells=("axi_dma",))), ("no_dma", Board(cells=("engine",))),
                        ("small_span", Board(span=0x80)), ("wrong_id", Board(ident=0xDEADBEEF)),
                        ("dma_7_2", Board(dma_vlnv="xilinx.com:ip:axi_dma:7.2"))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            facts[name] = error(lambda board=board: transport(plan, board))
        facts[name]["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    with tempfile.TemporaryDirectory() as tmp:
        for missing in ("radix.hwh", "radix.bit"):
            for suffix in (".bit", ".hwh"):
                shutil.copy(os.path.splitext(plan["overlay"])[0] + suffix, os.path.join(tmp, "radix" + suffix))
            os.remove(os.path.join(tmp, missing))
            facts[f"missing_{missing}"] = error(lambda: transport({"overlay": os.path.join(tmp, "radix.bit")}, Board()))
    return facts


@scenario
def register_guards(plan):
    from radix.pynq_transport import EngineRegisters, describe_dmacr, describe_dmasr

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
    facts["bad_offset"] = error(lambda: regs.read(0x50))
    facts["bad_value"] = error(lambda: regs.write(0x090, -1))
    facts["log"] = log
    facts["dmasr"] = describe_dmasr(0x1002)
    facts["dmacr"] = describe_dmacr(0x10005)
    return facts


@scenario
def dma_register_map(plan):
    """The AXI DMA's registers and bits as Vivado's .hwh (axi_dma:7.1) lists them, and as radix uses them."""
    from radix import pynq_transport

    parser = pynq_board._HWHZynq(pynq_board.RESIZER_HWH)
    (dma,) = [v for v in parser.ip_dict.values() if v["type"] == "xilinx.com:ip:axi_dma:7.1"]
    fields = {reg: {name: f["bit_offset"] for name, f in dma["registers"][reg]["fields"].items() if f["bit_width"] == 1}
              for reg in ("MM2S_DMACR", "MM2S_DMASR", "S2MM_DMACR", "S2MM_DMASR")}
    return {"hwh_offsets": {name: reg["address_offset"] for name, reg in dma["registers"].items()},
            "hwh_fields": fields, "radix_offsets": pynq_transport.DMA_REGISTERS,
            "radix_dmasr": {name: bit for bit, name in pynq_transport.DMASR_BITS},
            "radix_dmacr": {name: bit for bit, name in pynq_transport.DMACR_BITS}}


@scenario
def cli(plan):
    """``radix run`` and ``radix selftest`` with ``--backend pynq``, as on the board."""
    from radix.cli import main

    facts = {}
    for name, argv in (("run", ["run", plan["program"], "--backend", "pynq", "--overlay", plan["overlay"],
                                "--data", plan["data"], "--images", "10", "--json"]),
                       ("selftest", ["selftest", "--backend", "pynq", "--overlay", plan["overlay"], "--count", "10",
                                     "--json"])):
        install(Board())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(argv)
        facts[name] = {"status": status, "result": json.loads(out.getvalue())}
    return facts


@scenario
def bringup(plan):
    """``python3 -m radix.bringup`` on the board: the record of a session, for the host to replay."""
    from radix.bringup import main

    install(Board())
    record = os.path.join(plan["workdir"], "bring-up.json")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["--overlay", plan["overlay"], "--program", plan["program"], "--data", plan["data"],
                       "--images", "20", "-o", record])
    return {"status": status, "output": out.getvalue(), "record": json.load(open(record))}


@scenario
def notebook(plan):
    """Every code cell of the board notebook, in order, in its directory."""
    board = install(Board())
    cells = json.load(open(plan["notebook"]))["cells"]
    namespace: dict = {}
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(plan["workdir"])
    try:
        with contextlib.redirect_stdout(out):
            for cell in cells:
                if cell["cell_type"] == "code":
                    exec(compile("".join(cell["source"]), plan["notebook"], "exec"), namespace)
    finally:
        os.chdir(cwd)
    result = namespace["result"]
    return {"output": out.getvalue(), "images": result["images"], "bit_exact": result["bit_exact"],
            "accuracy": result["accuracy"], "reference_accuracy": result["reference_accuracy"],
            "cycles_source": result["cycles"]["source"], "freed": len(board.device.freed),
            "allocated": len(board.device.ddr)}


def main(argv: list[str]) -> int:
    plan_path, results_path = argv
    plan = json.load(open(plan_path))
    warnings.simplefilter("ignore", DeprecationWarning)
    results = {}
    for name, function in SCENARIOS.items():
        try:
            results[name] = function(plan)
        except Exception:  # recorded for the test that asserts on this scenario
            results[name] = {"crash": traceback.format_exc()}
    with open(results_path, "w") as handle:
        json.dump(results, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
