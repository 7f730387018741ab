"""Static timing *estimate* of the engine from the Yosys ``synth_xilinx`` netlist.

Yosys places and routes nothing, so this is a structural estimate for planning, never a timing
sign-off: Vivado's implemented timing must confirm it. It walks every register-to-register
path of the flattened xc7 netlist (start points: flip-flop, SRL, LUT-RAM, block-RAM and DSP48E1
outputs, and the top-level inputs; end points: their data and control inputs) and reports the
slowest one under the per-cell delay model below, with its LUT levels, CARRY4 chain length and
largest fan-out, and separately the deepest LUT chain, the longest carry chain and the largest
fan-out in the design.

Delay model (ns, roughly a 7-series -1 part, datasheet-level figures, no placement):

* clock to output: flip-flop 0.45; SRL16E/SRLC32E 1.45; LUT-RAM 1.30; RAMB18E1/RAMB36E1 2.45
  (no output register); DSP48E1 0.35 with PREG=1, 1.70 with MREG=1 only, else 4.00;
* a LUT level 0.12 (LUT1..LUT6, INV, LUT-RAM read) and a MUXF7/MUXF8 0.30;
* a CARRY4 0.40 when entered on S/DI/CYINIT, 0.12 when entered on CI (the chain);
* every net ``0.30 + 0.15 * log2(fan-out)``, a rule of thumb, not a datasheet figure (routing
  grows with the loads; Vivado may replicate a high fan-out driver, which this model does not);
* setup: flip-flop 0.05 (clock enable, reset and data alike); block RAM 0.60; DSP48E1 0.30
  into a registered input, 2.40 into an unregistered multiplier; SRL and LUT-RAM 0.10.

``report(config)`` synthesises the engine (the bus-master engine of engine version 6, module
``radix_bus_engine`` of :func:`radix_hw.verilog.generate`) and returns the analysis as a dict;
``format_report`` renders it. Command line: ``radix timing [--rows R ...] [--json]``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from radix.engine_spec import EngineConfig

from .resources import SYNTH_TIMEOUT_S, SynthesisError, run_yosys
from .verilog import MODULE_NAME, generate

CLOCKS_MHZ = (100.0, 125.0, 1000.0 / 7)  # PS7 FCLK0 choices on the PYNQ-Z2 (1000 MHz / 10, 8, 7)
TARGET_MHZ = 1000.0 / 7  # 142.86 MHz

LUT_DELAY = 0.12
MUXF_DELAY = 0.30
CARRY_ENTRY_DELAY = 0.40
CARRY_CHAIN_DELAY = 0.12
NET_BASE_DELAY = 0.30
NET_FANOUT_DELAY = 0.15
FF_CLK_TO_Q = 0.45
FF_SETUP = 0.05

LUT_CELLS = {f"LUT{n}" for n in range(1, 7)} | {"INV"}
MUXF_CELLS = {"MUXF7", "MUXF8"}
LUTRAM_CELLS = {"RAM32M", "RAM64M", "RAM32X1S", "RAM64X1S", "RAM32X1D", "RAM64X1D", "RAM128X1S",
                "RAM128X1D", "RAM256X1S"}
SRL_CELLS = {"SRL16E", "SRLC16E", "SRLC32E"}
BRAM_CELLS = {"RAMB18E1", "RAMB36E1"}
CLOCK_PINS = {"C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK"}
IO_CELLS = {"IBUF", "OBUF", "BUFG"}


def _net_delay(fanout: int) -> float:
    return NET_BASE_DELAY + NET_FANOUT_DELAY * math.log2(max(1, fanout))


def _param(cell: dict, name: str) -> int:
    value = cell.get("parameters", {}).get(name, "0")
    try:
        return int(str(value), 2) if set(str(value)) <= {"0", "1"} else int(value)
    except ValueError:
        return 0


def _clock_to_out(cell: dict) -> float:
    kind = cell["type"]
    if kind in SRL_CELLS:
        return 1.45
    if kind in LUTRAM_CELLS:
        return 1.30
    if kind in BRAM_CELLS:
        return 2.45
    if kind == "DSP48E1":
        return 0.35 if _param(cell, "PREG") else 1.70 if _param(cell, "MREG") else 4.00
    return FF_CLK_TO_Q


def _setup(cell: dict, pin: str) -> float:
    kind = cell["type"]
    if kind in BRAM_CELLS:
        return 0.60
    if kind in SRL_CELLS or kind in LUTRAM_CELLS:
        return 0.10
    if kind == "DSP48E1":
        registered = {"A": "AREG", "B": "BREG", "C": "CREG", "D": "DREG"}.get(pin)
        if registered is None or _param(cell, registered):
            return 0.30
        return 0.30 if _param(cell, "MREG") == 0 and _param(cell, "PREG") else 2.40
    return FF_SETUP


def _is_sequential(kind: str) -> bool:
    return kind.startswith("FD") or kind in SRL_CELLS | BRAM_CELLS | {"DSP48E1"}


def analyse(netlist: dict, *, top: str | None = None, paths: int = 10) -> dict:
    """Analyse a Yosys JSON netlist (``write_json`` after ``synth_xilinx -flatten``) of module
    ``top`` (by default the netlist's top module: the one Yosys marks ``top``, or its only one).

    Returns ``critical_path`` (``delay_ns``, ``lut_levels``, ``carry4``, ``max_fanout``,
    ``start``, ``end``, ``cells``: the cell names along it), ``max_lut_levels``,
    ``max_carry4_chain``, ``max_fanout`` (``fanout`` and the driving ``cell``),
    ``slowest_paths`` (up to ``paths`` of them, one per pair of start and end signal) and
    ``fmax_mhz_estimate``.
    """
    if not isinstance(paths, int) or paths < 1:
        raise ValueError(f"paths must be a positive integer, not {paths!r}")
    modules = netlist.get("modules", {})
    if top is None:
        top = _netlist_top(modules)
    module = modules.get(top) or modules.get(f"\\{top}")
    if module is None:
        raise SynthesisError(f"no module {top!r} in the netlist")
    cells = module.get("cells", {})
    # A readable name per bit: the shortest net name without Yosys' "$" (the RTL signal).
    bit_name: dict[int, str] = {}
    for net, info in module.get("netnames", {}).items():
        if "$" in net:
            continue
        for index, bit in enumerate(info.get("bits", [])):
            label = f"{net}[{index}]" if len(info["bits"]) > 1 else net
            if isinstance(bit, int) and (bit not in bit_name or len(label) < len(bit_name[bit])):
                bit_name[bit] = label
    driver: dict[int, tuple[str, str]] = {}
    fanout: dict[int, int] = {}
    for name, cell in cells.items():
        directions = cell.get("port_directions", {})
        for pin, bits in cell.get("connections", {}).items():
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if directions.get(pin) == "output":
                    driver[bit] = (name, pin)
                elif pin not in CLOCK_PINS:
                    fanout[bit] = fanout.get(bit, 0) + 1

    # Per combinational cell: (arrival ns, lut levels, carry4 count, max fanout, predecessor)
    timing: dict[str, tuple[float, int, int, int, str | None]] = {}
    lut_depth: dict[str, int] = {}
    carry_run: dict[str, int] = {}

    def source(bit) -> tuple[float, int, int, int, str | None]:
        if not isinstance(bit, int) or bit not in driver:
            return 0.0, 0, 0, 0, None
        name, _ = driver[bit]
        cell = cells[name]
        if _is_sequential(cell["type"]) or cell["type"] in IO_CELLS:
            return _clock_to_out(cell), 0, 0, 0, name
        return timing[name]

    def inputs(cell: dict):
        directions = cell.get("port_directions", {})
        for pin, bits in cell.get("connections", {}).items():
            if directions.get(pin) == "input" and pin not in CLOCK_PINS:
                for bit in bits:
                    yield pin, bit

    def comb_preds(cell: dict):
        for _, bit in inputs(cell):
            if isinstance(bit, int) and bit in driver:
                name = driver[bit][0]
                kind = cells[name]["type"]
                if not (_is_sequential(kind) or kind in IO_CELLS):
                    yield name

    combinational = [n for n, c in cells.items()
                     if not (_is_sequential(c["type"]) or c["type"] in IO_CELLS) and c["type"] != "$scopeinfo"]
    # Iterative depth-first topological evaluation (netlists are too deep for recursion).
    state: dict[str, int] = {}
    for root in combinational:
        if root in state:
            continue
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                cell = cells[name]
                kind = cell["type"]
                best = (0.0, 0, 0, 0, None)
                depth, run = 0, 0
                for pin, bit in inputs(cell):
                    arrival, luts, carries, fan, _ = source(bit)
                    net = fanout.get(bit, 1) if isinstance(bit, int) else 1
                    pin_delay = 0.0
                    if kind == "CARRY4":
                        pin_delay = CARRY_CHAIN_DELAY if pin == "CI" else CARRY_ENTRY_DELAY
                    total = arrival + (_net_delay(net) if isinstance(bit, int) and bit in driver else 0.0) + pin_delay
                    if total > best[0]:
                        best = (total, luts, carries, max(fan, net), driver.get(bit, (None,))[0])
                    if isinstance(bit, int) and bit in driver and driver[bit][0] in lut_depth:
                        depth = max(depth, lut_depth[driver[bit][0]])
                        if kind == "CARRY4" and pin == "CI":
                            run = max(run, carry_run.get(driver[bit][0], 0))
                arrival, luts, carries, fan, pred = best
                if kind in LUT_CELLS or kind in LUTRAM_CELLS:
                    arrival, luts = arrival + LUT_DELAY, luts + 1
                    depth += 1
                elif kind in MUXF_CELLS:
                    arrival += MUXF_DELAY
                elif kind == "CARRY4":
                    carries += 1
                    run += 1
                timing[name] = (arrival, luts, carries, fan, pred)
                lut_depth[name] = depth
                carry_run[name] = run
                state[name] = 2
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise SynthesisError(f"combinational loop through {name}")
            state[name] = 1
            stack.append((name, True))
            stack.extend((p, False) for p in comb_preds(cells[name]) if state.get(p) != 2)

    ends = []
    for name, cell in cells.items():
        if not _is_sequential(cell["type"]):
            continue
        for pin, bit in inputs(cell):
            if not (isinstance(bit, int) and bit in driver):
                continue
            arrival, luts, carries, fan, _ = source(bit)
            net = fanout.get(bit, 1)
            ends.append((arrival + _net_delay(net) + _setup(cell, pin), luts, carries, max(fan, net),
                         f"{cell['type']} {name}.{pin}", _output_name(cell, bit_name), driver[bit][0]))
    ends.sort(key=lambda end: -end[0])

    def describe(end) -> dict:
        total, luts, carries, fan, end_cell, end_net, name = end
        path = []
        while name is not None and name in timing:
            path.append(name)
            name = timing[name][4]
        if name is not None:
            path.append(name)
        return {"delay_ns": round(total, 3), "lut_levels": luts, "carry4": carries, "max_fanout": fan,
                "start": path[-1], "start_net": _output_name(cells[path[-1]], bit_name),
                "end": end_cell, "end_net": end_net,
                "cells": [f"{cells[n]['type']} {_output_name(cells[n], bit_name) or n}" for n in reversed(path)]}

    # The slowest paths, one per distinct (start net, end net) pair of RTL names.
    slowest, seen = [], set()
    for end in ends:
        if len(slowest) >= paths:
            break
        path = describe(end)
        key = (_base(path["start_net"]), _base(path["end_net"]))
        if key not in seen:
            seen.add(key)
            slowest.append(path)
    empty = {"delay_ns": 0.0, "lut_levels": 0, "carry4": 0, "max_fanout": 0, "start": None,
             "start_net": None, "end": None, "end_net": None, "cells": []}
    worst = slowest[0] if slowest else empty
    fan_bit = max(fanout, key=fanout.get, default=None)
    return {
        "critical_path": worst,
        "slowest_paths": slowest,
        "max_lut_levels": max(lut_depth.values(), default=0),
        "max_carry4_chain": max(carry_run.values(), default=0),
        "max_fanout": {"fanout": fanout.get(fan_bit, 0), "cell": driver.get(fan_bit, (None,))[0],
                       "net": bit_name.get(fan_bit)},
        "fmax_mhz_estimate": round(1000.0 / worst["delay_ns"], 1) if worst["delay_ns"] else None,
    }


def _netlist_top(modules: dict) -> str:
    """The top module's name in a Yosys JSON netlist's ``modules``."""
    marked = [name for name, module in modules.items()
              if str(module.get("attributes", {}).get("top", "0")).strip("0") != ""]
    if len(marked) == 1:
        return marked[0]
    if len(modules) == 1:
        return next(iter(modules))
    raise SynthesisError(f"no single top module in the netlist ({len(modules)} modules): name the top")


def _base(name: str | None) -> str | None:
    """A net name without its bit index."""
    return name.split("[")[0] if name else name


def _output_name(cell: dict | None, bit_name: dict[int, str]) -> str | None:
    """The RTL name of a cell's first named output bit, if any."""
    if cell is None:
        return None
    directions = cell.get("port_directions", {})
    for pin, bits in cell.get("connections", {}).items():
        if directions.get(pin) == "output":
            for bit in bits:
                if bit in bit_name:
                    return bit_name[bit]
    return None


def synthesize_netlist(verilog: str, *, top: str = MODULE_NAME, timeout_s: float = SYNTH_TIMEOUT_S) -> dict:
    """``synth_xilinx -flatten -family xc7`` of ``verilog`` with ``top`` as the top module; the
    Yosys JSON netlist."""
    with tempfile.TemporaryDirectory(prefix="radix-timing-") as tmp:
        tmp_path = Path(tmp)
        run_yosys(verilog, f"read_verilog engine.v; synth_xilinx -flatten -family xc7 -top {top}; write_json netlist.json",
                  tmp_path, timeout_s=timeout_s)
        return json.loads((tmp_path / "netlist.json").read_text())


def report(config: EngineConfig, *, timeout_s: float = SYNTH_TIMEOUT_S) -> dict:
    """Synthesise the engine for ``config`` and estimate its timing (see the module docstring).

    The dict of :func:`analyse` plus ``target_mhz`` (142.86), ``meets_target_estimate``,
    ``clocks`` (for each PS7 clock offered: its period and the estimated slack), ``model``
    (the delay figures), ``estimate`` (a note: Vivado must confirm), ``top`` (the module
    synthesised) and ``config``.
    """
    if not isinstance(config, EngineConfig):
        raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
    netlist = synthesize_netlist(generate(config), top=MODULE_NAME, timeout_s=timeout_s)
    result = analyse(netlist, top=MODULE_NAME)
    delay = result["critical_path"]["delay_ns"]
    result["target_mhz"] = round(TARGET_MHZ, 2)
    result["meets_target_estimate"] = delay <= 1000.0 / TARGET_MHZ
    result["clocks"] = [{"mhz": round(f, 2), "period_ns": round(1000.0 / f, 3),
                         "slack_ns_estimate": round(1000.0 / f - delay, 3)} for f in CLOCKS_MHZ]
    result["model"] = {"lut": LUT_DELAY, "muxf": MUXF_DELAY, "carry4_entry": CARRY_ENTRY_DELAY,
                       "carry4_chain": CARRY_CHAIN_DELAY, "net": f"{NET_BASE_DELAY} + {NET_FANOUT_DELAY}*log2(fanout)",
                       "ff_clk_to_q": FF_CLK_TO_Q, "ff_setup": FF_SETUP}
    result["estimate"] = "Yosys netlist and a per-cell delay model, no place and route: Vivado must confirm"
    result["top"] = MODULE_NAME
    result["config"] = config.as_dict()
    return result


def format_report(result: dict) -> str:
    """The timing estimate as text."""
    path = result["critical_path"]
    lines = [
        "timing ESTIMATE (Yosys netlist, per-cell delay model, no place and route; Vivado must confirm)",
        f"slowest register-to-register path: {path['delay_ns']:.2f} ns, {path['lut_levels']} LUT levels, "
        f"{path['carry4']} CARRY4, largest fan-out {path['max_fanout']}",
        f"  from {path.get('start_net') or path['start']}",
        f"  to   {path.get('end_net') or path['end']}",
        f"deepest LUT chain: {result['max_lut_levels']} levels; longest carry chain: "
        f"{result['max_carry4_chain']} CARRY4; largest fan-out: {result['max_fanout']['fanout']} "
        f"({result['max_fanout'].get('net') or result['max_fanout']['cell']})",
        f"estimated Fmax: {result['fmax_mhz_estimate']} MHz",
    ]
    for clock in result.get("clocks", []):
        lines.append(f"  {clock['mhz']:>7.2f} MHz ({clock['period_ns']:.2f} ns): slack {clock['slack_ns_estimate']:+.2f} ns (estimate)")
    return "\n".join(lines)
