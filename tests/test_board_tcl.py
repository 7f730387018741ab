"""The PYNQ-Z2 overlay flow and the pynq transport, checked without Vivado or a board.

* The engine's generated Verilog has every port the overlay Tcl connects, with the widths and
  directions of the interfaces Vivado has to infer (AXI4-Lite ``s_axi``, AXI4-Stream ``s_axis`` /
  ``m_axis``, ``clk``, ``rst``, ``interrupt``), and nothing left unconnected.
* ``build_overlay.tcl`` runs in a real Tcl interpreter against a mock Vivado that records every
  command: the block design it builds is checked net by net, in both PS7 set-up paths (board
  files or the written-out preset), and its refusals are checked.
* ``bitstream.sh`` fails clearly without Vivado and passes the Tcl its arguments in order.
* ``radix.pynq_transport`` runs the driver over a fake ``pynq`` (the reference engine behind fake
  MMIO and a fake AXI DMA): registers only at engine_spec offsets, bit-exact results, and clear
  errors for short and long streams, timeouts, DMA errors and wrong overlays.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
import subprocess
import sys
import tkinter
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from radix import runner
from radix.driver import Driver, EngineTimeout, StreamLengthError
from radix.engine_spec import DEFAULT_CONFIG, ENGINE_ID, REGISTERS, STREAM_BITS, register
from radix.program import Layer, Program
from radix.transport import ReferenceTransport

REPO = Path(__file__).resolve().parents[1]
BOARD = REPO / "boards" / "pynq_z2"
TCL = BOARD / "build_overlay.tcl"
BITSTREAM_SH = BOARD / "bitstream.sh"

ADDR_BITS = 12  # the engine's AXI4-Lite address width (docs/engine.md)
AXI_LITE_SLAVE = {
    "awaddr": ("input", ADDR_BITS), "awprot": ("input", 3), "awvalid": ("input", 1), "awready": ("output", 1),
    "wdata": ("input", 32), "wstrb": ("input", 4), "wvalid": ("input", 1), "wready": ("output", 1),
    "bresp": ("output", 2), "bvalid": ("output", 1), "bready": ("input", 1),
    "araddr": ("input", ADDR_BITS), "arprot": ("input", 3), "arvalid": ("input", 1), "arready": ("output", 1),
    "rdata": ("output", 32), "rresp": ("output", 2), "rvalid": ("output", 1), "rready": ("input", 1),
}
# bus interfaces Vivado infers from the port prefixes, and the signals each needs
INTERFACES = {
    "s_axi": AXI_LITE_SLAVE,
    "s_axis": {"tdata": ("input", STREAM_BITS), "tvalid": ("input", 1), "tready": ("output", 1), "tlast": ("input", 1)},
    "m_axis": {"tdata": ("output", STREAM_BITS), "tvalid": ("output", 1), "tready": ("input", 1),
               "tlast": ("output", 1), "tkeep": ("output", STREAM_BITS // 8)},
}
PINS = {"clk": ("input", 1), "rst": ("input", 1), "interrupt": ("output", 1)}


# ---- the generated Verilog -------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine_v(tmp_path_factory) -> Path:
    """The default engine's Verilog, as `radix verilog` writes it."""
    from radix_hw.verilog import generate

    path = tmp_path_factory.mktemp("verilog") / "engine.v"
    path.write_text(generate(DEFAULT_CONFIG))
    return path


def verilog_ports(text: str, module: str = "radix_engine") -> dict:
    """``{port: (direction, width)}`` of ``module`` in Verilog-2001 text (as Yosys writes it)."""
    start = re.search(rf"^module {module}\(", text, re.M)
    assert start, f"no module {module}"
    body = text[start.end(): text.index("endmodule", start.end())]
    ports = {}
    for direction, msb, lsb, name in re.findall(
            r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][\w$]*)\s*;",
            body, re.M):
        ports[name] = (direction, int(msb) - int(lsb) + 1 if msb else 1)
    return ports


def expected_ports() -> dict:
    ports = dict(PINS)
    for intf, signals in INTERFACES.items():
        ports.update({f"{intf}_{signal}": spec for signal, spec in signals.items()})
    return ports


def test_engine_ports_are_exactly_the_interfaces_the_overlay_connects(engine_v):
    ports = verilog_ports(engine_v.read_text())
    assert ports == expected_ports()
    assert max(reg.offset for reg in REGISTERS) + 4 <= 1 << ADDR_BITS


# ---- build_overlay.tcl against a mock Vivado -------------------------------------------------

MOCK_VIVADO = r"""
# A mock Vivado: every Vivado command falls through to `unknown`, which records it and answers
# what the flow needs. exit and puts are captured so the interpreter survives the script.
proc exit {{code 0}} { return -code error "__exit__ $code" }
rename puts _tcl_puts
proc puts {args} {
    lappend ::out [lindex $args end]
    if {[lindex $args 0] eq "stderr"} { lappend ::err [lindex $args end] }
}
set ::calls {}
set ::out {}
set ::err {}

proc mock_property {name object} {
    switch -- $name {
        CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ { return $::mock(act_mhz) }
        CONFIG.ASSOCIATED_BUSIF { return $::mock(busif) }
        CONFIG.POLARITY { return $::mock(polarity) }
        PROGRESS { return $::mock(progress) }
        STATUS { return "mock status" }
        DIRECTORY { return [file join $::mock(project_dir) $::mock(project).runs $object] }
        TOP { return radix_wrapper }
        SLACK { return $::mock(slack) }
    }
    error "mock Vivado: get_property $name is not mocked"
}

proc unknown {args} {
    lappend ::calls $args
    set command [lindex $args 0]
    set last [lindex $args end]
    switch -- $command {
        version { return $::mock(version) }
        get_parts { return [expr {$::mock(has_part) ? $last : ""}] }
        get_board_parts { return $::mock(board_part) }
        get_ipdefs {
            regexp {NAME == ([A-Za-z0-9_]+)} $last -> name
            return "xilinx.com:ip:$name:9.9"
        }
        create_project {
            set positional {}
            for {set i 1} {$i < [llength $args]} {incr i} {
                set a [lindex $args $i]
                if {$a eq "-part"} { incr i; continue }
                if {[string match -* $a]} continue
                lappend positional $a
            }
            set ::mock(project) [lindex $positional 0]
            set ::mock(project_dir) [lindex $positional 1]
            file mkdir $::mock(project_dir)
            return $::mock(project)
        }
        get_bd_intf_pins {
            if {[lsearch -exact $::mock(no_intf) $last] >= 0} { return "" }
            return $last
        }
        get_bd_addr_segs { return [string map {* reg0} $last] }
        get_property { return [mock_property [lindex $args 1] $last] }
        set_property {
            if {$::mock(refuse) ne "" && [lindex $args 1] eq $::mock(refuse)} {
                error "\[BD 41-xxx\] parameter [lindex $args 1] is read-only (mock)"
            }
            return ""
        }
        make_wrapper { return [file join $::mock(project_dir) radix_wrapper.v] }
        generate_target {
            set dir [file join $::mock(project_dir) $::mock(project).gen sources_1 bd radix hw_handoff]
            file mkdir $dir
            set f [open [file join $dir radix.hwh] w]; _tcl_puts $f "<hwh/>"; close $f
            return ""
        }
        launch_runs {
            set dir [mock_property DIRECTORY [lindex $args 1]]
            file mkdir $dir
            set f [open [file join $dir radix_wrapper.bit] w]; _tcl_puts $f "bit"; close $f
            return ""
        }
        create_bd_cell - get_bd_cells - get_bd_pins - get_bd_ports - get_bd_intf_ports -
        get_bd_addr_spaces - get_files - get_runs { return $last }
    }
    return ""
}
"""

MOCK_DEFAULTS = {
    "version": "2022.1", "has_part": "1", "board_part": "tul.com.tw:pynq-z2:part0:1.0", "act_mhz": "100.000000",
    "busif": "s_axi:s_axis:m_axis", "polarity": "ACTIVE_HIGH", "progress": "100%", "slack": "0.250",
    "refuse": "", "no_intf": "",
}


@dataclass
class TclRun:
    """What build_overlay.tcl did under the mock: exit code, Vivado commands, messages."""

    code: int
    calls: list
    out: list
    err: list
    out_dir: Path

    def commands(self, name: str) -> list:
        return [call for call in self.calls if call[0] == name]

    def nets(self) -> list[set]:
        return [set(call[1:]) for call in self.commands("connect_bd_net")]

    def net_of(self, pin: str) -> set:
        found = [net for net in self.nets() if pin in net]
        assert len(found) == 1, f"{pin} is on {len(found)} nets"
        return found[0]

    def intf_nets(self) -> list[set]:
        return [set(call[1:]) for call in self.commands("connect_bd_intf_net")]

    def properties(self, target: str) -> dict:
        """Every ``set_property -dict`` / ``set_property NAME VALUE`` applied to ``target``."""
        props = {}
        for call in self.commands("set_property"):
            if call[-1] != target:
                continue
            if call[1] == "-dict":
                items = tkinter.Tcl().splitlist(call[2])
                props.update(zip(items[::2], items[1::2]))
            else:
                props[call[1]] = call[2]
        return props

    def cells(self) -> dict:
        """``{cell name: "module:<name>" or the IP name}`` of every create_bd_cell."""
        cells = {}
        for call in self.commands("create_bd_cell"):
            args = list(call[1:])
            kind = args[args.index("-type") + 1]
            if kind == "module":
                cells[call[-1]] = "module:" + args[args.index("-reference") + 1]
            else:
                cells[call[-1]] = args[args.index("-vlnv") + 1].split(":")[2]
        return cells


def run_overlay_tcl(tmp_path: Path, argv: list[str], **mock) -> TclRun:
    """Source build_overlay.tcl with ``-tclargs argv`` in a Tcl interpreter whose Vivado is mocked."""
    tcl = tkinter.Tcl()
    tcl.eval(MOCK_VIVADO)
    for key, value in {**MOCK_DEFAULTS, **mock}.items():
        tcl.call("set", f"::mock({key})", value)
    tcl.call("set", "::argv", tuple(argv))
    tcl.call("set", "::argc", len(argv))
    try:
        tcl.call("source", str(TCL))
        code = 0
    except tkinter.TclError as error:
        if not str(error).startswith("__exit__"):
            raise
        code = int(str(error).split()[1])
    split = tcl.splitlist
    calls = [split(call) for call in split(tcl.eval("set ::calls"))]
    out_dir = Path(argv[1]) if len(argv) > 1 else tmp_path
    return TclRun(code, calls, list(split(tcl.eval("set ::out"))), list(split(tcl.eval("set ::err"))), out_dir)


def default_argv(tmp_path: Path, engine_v: Path, clock: str = "100") -> list[str]:
    return [str(engine_v), str(tmp_path / "out"), clock, str(tmp_path / "vivado")]


@pytest.fixture(scope="module")
def overlay_run(engine_v, tmp_path_factory) -> TclRun:
    tmp = tmp_path_factory.mktemp("overlay")
    run = run_overlay_tcl(tmp, default_argv(tmp, engine_v))
    assert run.code == 0, run.err
    return run


def test_tcl_wires_every_engine_port_with_its_interface(overlay_run, engine_v):
    run, ports = overlay_run, verilog_ports(engine_v.read_text())
    assert run.cells()["engine"] == "module:radix_engine"
    used_pins = {call[-1].split("/", 1)[1] for call in run.commands("get_bd_pins") if call[-1].startswith("engine/")}
    used_intfs = {call[-1].split("/", 1)[1] for call in run.commands("get_bd_intf_pins") if call[-1].startswith("engine/")}
    assert used_pins == set(PINS) and used_intfs == set(INTERFACES)
    covered = set(used_pins) | {f"{intf}_{signal}" for intf in used_intfs for signal in INTERFACES[intf]}
    assert covered == set(ports), "every Verilog port is part of a connected pin or interface"
    for pin in used_pins:
        assert ports[pin] == PINS[pin]
    connected = set().union(*run.nets(), *run.intf_nets())
    assert {f"engine/{name}" for name in used_pins | used_intfs} <= connected


def test_tcl_block_design_nets(overlay_run):
    run = overlay_run
    cells = run.cells()
    assert cells == {"ps7": "processing_system7", "engine": "module:radix_engine", "axi_dma": "axi_dma",
                     "periph_ic": "axi_interconnect", "mem_ic": "axi_interconnect", "rst_fclk0": "proc_sys_reset",
                     "irq_concat": "xlconcat"}
    everything = set().union(*run.nets(), *run.intf_nets())
    assert {pin.split("/")[0] for pin in everything} <= set(cells) | {"DDR", "FIXED_IO"}
    # one clock domain: every clock pin the design uses is on FCLK_CLK0's net
    clock = run.net_of("ps7/FCLK_CLK0")
    assert {pin for pin in everything if re.search(r"(?i)aclk$|/clk$|slowest_sync_clk", pin)} == clock - {"ps7/FCLK_CLK0"}
    # the engine's reset is active high; the AXI IPs' are active low
    assert run.net_of("engine/rst") == {"rst_fclk0/peripheral_reset", "engine/rst"}
    assert run.properties("engine/rst").get("CONFIG.POLARITY", "ACTIVE_HIGH") == "ACTIVE_HIGH"
    assert "axi_dma/axi_resetn" in run.net_of("rst_fclk0/peripheral_aresetn")
    assert run.net_of("ps7/FCLK_RESET0_N") == {"ps7/FCLK_RESET0_N", "rst_fclk0/ext_reset_in"}
    # streams: MM2S -> engine -> S2MM; registers: GP0 -> interconnect -> engine and DMA
    intf = run.intf_nets()
    for pair in ({"axi_dma/M_AXIS_MM2S", "engine/s_axis"}, {"engine/m_axis", "axi_dma/S_AXIS_S2MM"},
                 {"ps7/M_AXI_GP0", "periph_ic/S00_AXI"}, {"periph_ic/M00_AXI", "engine/s_axi"},
                 {"periph_ic/M01_AXI", "axi_dma/S_AXI_LITE"}, {"axi_dma/M_AXI_MM2S", "mem_ic/S00_AXI"},
                 {"axi_dma/M_AXI_S2MM", "mem_ic/S01_AXI"}, {"mem_ic/M00_AXI", "ps7/S_AXI_HP0"}):
        assert pair in intf
    assert run.properties("periph_ic") == {"CONFIG.NUM_SI": "1", "CONFIG.NUM_MI": "2"}
    assert run.properties("mem_ic") == {"CONFIG.NUM_SI": "2", "CONFIG.NUM_MI": "1"}
    # interrupts: engine on IRQ_F2P[0], then MM2S and S2MM
    assert run.net_of("engine/interrupt") == {"engine/interrupt", "irq_concat/In0"}
    assert run.net_of("axi_dma/mm2s_introut") == {"axi_dma/mm2s_introut", "irq_concat/In1"}
    assert run.net_of("axi_dma/s2mm_introut") == {"axi_dma/s2mm_introut", "irq_concat/In2"}
    assert run.net_of("irq_concat/dout") == {"irq_concat/dout", "ps7/IRQ_F2P"}
    assert run.properties("irq_concat") == {"CONFIG.NUM_PORTS": "3"}


def test_tcl_dma_ps_and_addresses_match_the_engine_and_transport(overlay_run, fake_pynq):
    run = overlay_run
    module = fake_pynq(FakeBoard())
    assert set(run.cells()) >= {module.ENGINE_CELL, module.DMA_CELL}
    dma = run.properties("axi_dma")
    assert dma["CONFIG.c_include_sg"] == "0" and dma["CONFIG.c_include_mm2s"] == dma["CONFIG.c_include_s2mm"] == "1"
    assert int(dma["CONFIG.c_sg_length_width"]) == module.BUFFER_LENGTH_WIDTH
    assert int(dma["CONFIG.c_m_axis_mm2s_tdata_width"]) == int(dma["CONFIG.c_s_axis_s2mm_tdata_width"]) == STREAM_BITS
    ps = run.properties("ps7")
    assert ps["CONFIG.PCW_USE_M_AXI_GP0"] == ps["CONFIG.PCW_USE_S_AXI_HP0"] == "1"
    assert ps["CONFIG.PCW_S_AXI_HP0_DATA_WIDTH"] == dma["CONFIG.c_m_axi_mm2s_data_width"] == \
        dma["CONFIG.c_m_axi_s2mm_data_width"] == "64"
    assert ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "100"
    assert ps["CONFIG.PCW_USE_FABRIC_INTERRUPT"] == ps["CONFIG.PCW_IRQ_F2P_INTR"] == "1"
    segments = {call[-2]: call for call in run.commands("assign_bd_address")}
    engine = segments["engine/s_axi/reg0"]
    assert engine[engine.index("-range") + 1] == f"{(1 << ADDR_BITS) // 1024}K"
    assert engine[engine.index("-target_address_space") + 1] == "ps7/Data"
    assert segments["axi_dma/S_AXI_LITE/Reg"][segments["axi_dma/S_AXI_LITE/Reg"].index("-range") + 1] == "64K"
    spaces = {call[call.index("-target_address_space") + 1] for call in run.commands("assign_bd_address")
              if call[-2] == "ps7/S_AXI_HP0/HP0_DDR_LOWOCM"}
    assert spaces == {"axi_dma/Data_MM2S", "axi_dma/Data_S2MM"}
    assert run.commands("validate_bd_design")
    # the overlay's files, named as PynqTransport expects them (.hwh beside the .bit)
    assert (run.out_dir / "radix.bit").is_file() and (run.out_dir / "radix.hwh").is_file()


def test_tcl_uses_board_preset_when_the_board_files_are_installed(overlay_run):
    automation = overlay_run.commands("apply_bd_automation")
    assert len(automation) == 1 and "apply_board_preset" in automation[0][4]
    assert overlay_run.commands("set_property")[0][1:] == ("board_part", "tul.com.tw:pynq-z2:part0:1.0", "")
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO" not in overlay_run.properties("ps7")


def test_tcl_writes_out_the_ps7_preset_without_board_files(tmp_path, engine_v):
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, engine_v, "142.857"), board_part="", act_mhz="142.857132")
    assert run.code == 0, run.err
    assert not run.commands("apply_bd_automation")
    ps = run.properties("ps7")
    assert ps["CONFIG.PCW_UIPARAM_DDR_PARTNO"] == "MT41J256M16 RE-125"
    assert ps["CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH"] == "16 Bit"
    assert ps["CONFIG.PCW_UART0_UART0_IO"] == "MIO 14 .. 15"
    assert ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "142.857"
    assert {"DDR", "ps7/DDR"} in run.intf_nets() and {"FIXED_IO", "ps7/FIXED_IO"} in run.intf_nets()
    assert any("142.857132 MHz" in line for line in run.out)


def test_tcl_associates_the_clock_and_reset_when_vivado_did_not(tmp_path, engine_v):
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, engine_v), busif="s_axi", polarity="ACTIVE_LOW")
    assert run.code == 0, run.err
    assert run.properties("engine/clk") == {"CONFIG.ASSOCIATED_BUSIF": "s_axi:s_axis:m_axis"}
    assert run.properties("engine/rst") == {"CONFIG.POLARITY": "ACTIVE_HIGH"}


@pytest.mark.parametrize("change, mock, message", [
    (lambda argv: argv[:1], {}, "usage: vivado -mode batch"),
    (lambda argv: [argv[0] + ".missing"] + argv[1:], {}, "not found: generate it with `radix verilog"),
    (lambda argv: argv[:2] + ["fast"] + argv[3:], {}, "CLOCK_MHZ 'fast' must be a number of MHz"),
    (lambda argv: argv[:2] + ["400"] + argv[3:], {}, "CLOCK_MHZ '400' must be a number of MHz in 10..250"),
    (lambda argv: argv, {"version": "2021.2"}, "Vivado 2021.2 is too old"),
    (lambda argv: argv, {"has_part": "0"}, "install Zynq-7000 device support"),
    (lambda argv: argv, {"no_intf": "engine/s_axis"}, "inferred no interface s_axis"),
    (lambda argv: argv, {"busif": "", "refuse": "CONFIG.ASSOCIATED_BUSIF"}, "engine/clk is not associated with s_axi"),
    (lambda argv: argv, {"progress": "0%"}, "synth_1 failed (mock status): see"),
    (lambda argv: argv, {"slack": "-0.731"}, "timing not met at 100.000000 MHz (setup WNS -0.731 ns"),
])
def test_tcl_refuses_with_a_clear_message(tmp_path, engine_v, change, mock, message):
    run = run_overlay_tcl(tmp_path, change(default_argv(tmp_path, engine_v)), **mock)
    assert run.code == 1
    assert any(message in line for line in run.err), run.err
    assert not (tmp_path / "out" / "radix.bit").exists()


def test_tcl_refuses_verilog_without_the_engine_module(tmp_path, engine_v):
    other = tmp_path / "other.v"
    other.write_text("module something_else(input clk);\nendmodule\n")
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, other))
    assert run.code == 1 and "has no module radix_engine" in run.err[0]


def test_tcl_avoids_tcl_86_only_commands():
    # Vivado's Tcl is 8.5; the mock runs 8.6, so 8.6-only commands would pass the tests above
    code = "\n".join(line for line in TCL.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(lmap|try|throw|tailcall|coroutine|yield|zlib)\b|string cat|lsort -stride|file tempfile",
                         code)


# ---- bitstream.sh -----------------------------------------------------------------------------

def test_bitstream_sh_without_vivado_says_what_to_install(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin", "BUILD": str(tmp_path / "build")}
    result = subprocess.run(["bash", str(BITSTREAM_SH)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "'vivado' is not on PATH" in result.stderr
    assert "Vivado 2022.1 or later" in result.stderr and "Zynq-7000" in result.stderr
    assert not (tmp_path / "build").exists()


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_bitstream_sh_generates_verilog_and_runs_the_tcl(tmp_path, engine_v):
    """bitstream.sh with a stub `radix` and a stub `vivado` that sources the Tcl under the mock."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "mock_vivado.tcl").write_text(MOCK_VIVADO)
    _executable(stubs / "radix", f"""#!/bin/sh
[ "$1" = verilog ] && [ "$2" = -o ] && cp {engine_v} "$3"
""")
    _executable(stubs / "vivado", f"""#!{sys.executable}
import sys, tkinter
args = sys.argv[1:]
open({str(tmp_path / 'vivado-args')!r}, "w").write("\\n".join(args))
tclargs = args[args.index("-tclargs") + 1:]
tcl = tkinter.Tcl()
tcl.call("source", {str(stubs / 'mock_vivado.tcl')!r})
for key, value in {MOCK_DEFAULTS!r}.items():
    tcl.call("set", "::mock(" + key + ")", value)
tcl.call("set", "::mock(act_mhz)", tclargs[2])
tcl.call("set", "::argv", tuple(tclargs))
tcl.call("set", "::argc", len(tclargs))
try:
    tcl.call("source", args[args.index("-source") + 1])
except tkinter.TclError as error:
    sys.stderr.write(tcl.eval("join $::err \\n"))
    sys.exit(int(str(error).split()[1]) if str(error).startswith("__exit__") else 3)
""")
    build = tmp_path / "build"
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "BUILD": str(build), "CLOCK_MHZ": "125",
           "JOBS": "2", "RADIX": str(stubs / "radix")}
    result = subprocess.run(["bash", str(BITSTREAM_SH)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "vivado-args").read_text().splitlines()
    assert args[args.index("-source") + 1] == str(TCL)
    assert args[args.index("-tclargs") + 1:] == [str(build / "engine.v"), str(build / "overlay"), "125",
                                                   str(build / "vivado"), "2"]
    assert (build / "engine.v").read_text() == engine_v.read_text()
    assert (build / "overlay" / "radix.bit").is_file() and (build / "overlay" / "radix.hwh").is_file()


# ---- the pynq transport over a fake pynq ------------------------------------------------------

DMASR_IDLE, DMASR_HALTED, DMASR_SLVERR = 0x2, 0x1, 0x20
ENGINE_BASE = 0x43C00000


class FakeBuffer(np.ndarray):
    """What ``pynq.allocate`` returns: an ndarray with cache maintenance and an explicit free."""

    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        self.freed = True


class FakeBoard:
    """A PYNQ-Z2 with a Radix overlay in software: the reference engine behind fake MMIO and a
    fake AXI DMA, with faults to inject.

    ``mode``: ``ok``; ``short`` (S2MM ends one word early with TLAST); ``long`` (one word too
    many); ``hang`` (S2MM never completes); ``slave_error`` (S2MM halts with DMASlvErr);
    ``stuck_input`` (MM2S never completes).
    """

    def __init__(self, *, mode: str = "ok", ident: int = ENGINE_ID, cells=("engine", "axi_dma"), span: int = 0x1000,
                 dma_driver: bool = True):
        self.engine = ReferenceTransport(DEFAULT_CONFIG)
        self.mode, self.ident, self.dma_driver = mode, ident, dma_driver
        self.ip_dict = {}
        if "engine" in cells:
            self.ip_dict["engine"] = {"phys_addr": ENGINE_BASE, "addr_range": span,
                                      "type": "xilinx.com:module_ref:radix_engine:1.0"}
        if "axi_dma" in cells:
            self.ip_dict["axi_dma"] = {"phys_addr": 0x40400000, "addr_range": 0x10000, "type": "xilinx.com:ip:axi_dma:7.1"}
        self.register_log: list[tuple[str, int]] = []
        self.dmasr = {"MM2S": DMASR_HALTED, "S2MM": DMASR_HALTED}
        self.s2mm_length = 0
        self.buffers: list[FakeBuffer] = []
        self.loaded: list[tuple[str, bool]] = []

    # engine registers, as pynq.MMIO
    def read(self, offset, length=4):
        self.register_log.append(("read", offset))
        return self.ident if offset == register("ID").offset else self.engine.read(offset)

    def write(self, offset, value):
        self.register_log.append(("write", offset))
        self.engine.write(offset, value)

    # the AXI DMA
    def dma_read(self, offset, length=4):
        registers = {0x04: self.dmasr["MM2S"], 0x34: self.dmasr["S2MM"], 0x58: self.s2mm_length}
        return registers.get(offset, 0)

    def transfer(self, channel, array, start=0, nbytes=0):
        words = nbytes // 8
        if channel == "MM2S":
            self.engine.send(np.array(array[start // 8: start // 8 + words], dtype=np.uint64))
            self.dmasr["MM2S"] = 0 if self.mode == "stuck_input" else DMASR_IDLE
            return
        if self.mode in ("hang", "slave_error"):
            self.dmasr["S2MM"] = DMASR_HALTED | DMASR_SLVERR if self.mode == "slave_error" else 0
            return
        got = self.engine.receive(words, 0).words
        if self.mode == "short":
            got = got[:-1]
        elif self.mode == "long":
            got = np.concatenate([got, np.full(2, 0xDEAD, dtype=np.uint64)])[:words]
        array[: got.size] = got
        self.s2mm_length = got.size * 8
        self.dmasr["S2MM"] = DMASR_IDLE

    def module(self) -> types.ModuleType:
        """This board as the ``pynq`` package."""
        board = self
        pynq = types.ModuleType("pynq")

        class Channel:
            def __init__(self, name):
                self.name = name

            def transfer(self, array, start=0, nbytes=0):
                board.transfer(self.name, array, start, nbytes)

        class DMA:
            buffer_max_size = (1 << 23) - 1
            mmio = types.SimpleNamespace(read=board.dma_read)
            sendchannel, recvchannel = Channel("MM2S"), Channel("S2MM")

        class Overlay:
            def __init__(self, bitfile, download=True):
                board.loaded.append((bitfile, download))
                self.ip_dict = board.ip_dict
                if "axi_dma" in board.ip_dict:
                    # PYNQ binds its DMA driver by VLNV; anything else gets a DefaultIP
                    self.axi_dma = DMA() if board.dma_driver else types.SimpleNamespace(mmio=DMA.mmio)

        def mmio(base, length):
            assert (base, length) == (ENGINE_BASE, board.ip_dict["engine"]["addr_range"])
            return board

        def allocate(shape, dtype):
            buffer = np.zeros(shape, dtype=dtype).view(FakeBuffer)
            board.buffers.append(buffer)
            return buffer

        pynq.Overlay, pynq.MMIO, pynq.allocate = Overlay, mmio, allocate
        pynq.Clocks = types.SimpleNamespace(fclk0_mhz=100.0)
        return pynq


@pytest.fixture
def fake_pynq(monkeypatch):
    """``install(board)``: make ``board`` the ``pynq`` package and import radix.pynq_transport over it."""

    def install(board: FakeBoard):
        monkeypatch.setitem(sys.modules, "pynq", board.module())
        sys.modules.pop("radix.pynq_transport", None)
        return importlib.import_module("radix.pynq_transport")

    yield install
    sys.modules.pop("radix.pynq_transport", None)


@pytest.fixture
def overlay_files(tmp_path) -> Path:
    bit = tmp_path / "radix.bit"
    bit.write_bytes(b"bit")
    (tmp_path / "radix.hwh").write_text("<hwh/>")
    return bit


def small_fc_layer(seed: int = 0) -> tuple[Layer, np.ndarray]:
    rng = np.random.default_rng(seed)
    layer = Layer(name="fc", kind="fc", modules=["fc"], in_shape=(20,), out_shape=(7,), kernel=1, stride=1, pad=0,
                  relu=False, pool=False, fl_in=4, fl_w=[6], fl_out=5, weight_bits=8,
                  weights=rng.integers(-128, 128, (7, 20)), bias=rng.integers(-500, 500, 7))
    return layer, rng.integers(-128, 128, 20)


def test_import_without_pynq_names_pynq(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    sys.modules.pop("radix.pynq_transport", None)
    with pytest.raises(ImportError, match="needs the 'pynq' package of a PYNQ-Z2 board image") as error:
        importlib.import_module("radix.pynq_transport")
    assert error.value.name == "pynq"
    assert "radix.pynq_transport" not in sys.modules


def test_engine_registers_refuse_offsets_outside_engine_spec(fake_pynq):
    module = fake_pynq(FakeBoard())
    log = []
    mmio = types.SimpleNamespace(read=lambda offset: log.append(offset) or 7,
                                 write=lambda offset, value: log.append((offset, value)))
    regs = module.EngineRegisters(mmio, where="engine at 0x43C00000")
    assert regs.read(register("CYCLES").offset) == 7
    regs.write(register("IN_CH").offset, 0xFFFFFFFF)
    with pytest.raises(ValueError, match=r"engine at 0x43C00000: offset 0x50 is not an engine register"):
        regs.read(0x50)
    with pytest.raises(ValueError, match=r"value -1 for register OUT_H \(0x090\) does not fit 32 bits"):
        regs.write(register("OUT_H").offset, -1)
    assert log == [register("CYCLES").offset, (register("IN_CH").offset, 0xFFFFFFFF)]


def test_driver_over_pynq_transport_is_bit_exact_and_uses_engine_spec_offsets(fake_pynq, overlay_files):
    board = FakeBoard()
    module = fake_pynq(board)
    with module.PynqTransport(overlay_files) as transport:
        assert board.loaded == [(str(overlay_files), True)] and transport.clock_mhz == 100.0
        result = runner.selftest(transport, seed=5, count=12)
    assert result["backend"] == "pynq" and result["mismatches"] == 0, result["details"]
    spec = {reg.offset: reg for reg in REGISTERS}
    assert {offset for _, offset in board.register_log} <= set(spec)
    assert {spec[offset].access for op, offset in board.register_log if op == "write"} <= {"rw", "ctrl", "status"}
    assert board.buffers and all(getattr(buffer, "freed", False) for buffer in board.buffers)


@pytest.mark.parametrize("mode, error, message", [
    # 7 outputs of 8 bits in 11 lanes: one pixel of two 64-bit words
    ("short", StreamLengthError, "layer fc job 1/1: output stream ended (TLAST) after 1 words, expected 2"),
    ("long", StreamLengthError, "layer fc job 1/1: output stream longer than the expected 2 words"),
    ("hang", EngineTimeout, "layer fc job 1/1: 0 of 2 output words after 100000 cycles\nregisters: ID=0x52445831"),
])
def test_stream_faults_reach_the_driver(fake_pynq, overlay_files, mode, error, message):
    module = fake_pynq(FakeBoard(mode=mode))
    transport = module.PynqTransport(overlay_files, min_wait_s=0.05)
    layer, x = small_fc_layer()
    with pytest.raises(error, match=re.escape(message)):
        Driver(transport).run_layer(layer, x)
    if mode == "short":
        return  # the stream ended cleanly: the transport stays usable
    with pytest.raises(module.BoardError, match=r"create a new PynqTransport\('.*radix.bit'\)"):
        transport.send(np.zeros(3, dtype=np.uint64))


def test_timeout_message_carries_the_dma_status(fake_pynq, overlay_files):
    module = fake_pynq(FakeBoard(mode="hang"))
    transport = module.PynqTransport(overlay_files, min_wait_s=0.05)
    assert transport.receive(4, 1000).words.size == 0
    assert transport.fault.startswith("S2MM: the output stream did not end within 0.05 s (1000 cycles at 100 MHz)")
    assert "S2MM_DMASR=0x00000000 (running)" in transport.fault


def test_dma_error_is_named(fake_pynq, overlay_files):
    module = fake_pynq(FakeBoard(mode="slave_error"))
    transport = module.PynqTransport(overlay_files, min_wait_s=0.05)
    with pytest.raises(module.BoardError, match=r"S2MM: the DMA reports an error: S2MM_DMASR=0x00000021 \(Halted, DMASlvErr\)"):
        transport.receive(4, 1000)


def test_input_not_all_accepted_is_named(fake_pynq, overlay_files):
    module = fake_pynq(FakeBoard(mode="stuck_input"))
    transport = module.PynqTransport(overlay_files, min_wait_s=0.05)
    layer, x = small_fc_layer()
    with pytest.raises(module.BoardError, match=r"MM2S: the engine has not accepted all \d+ words of the input stream"):
        Driver(transport).run_layer(layer, x)


def test_budget_becomes_time_at_the_overlay_clock(fake_pynq, overlay_files):
    module = fake_pynq(FakeBoard())
    transport = module.PynqTransport(overlay_files, clock_mhz=50.0, min_wait_s=1.0)
    assert transport.budget_seconds(1000) == 1.0
    assert transport.budget_seconds(200_000_000) == pytest.approx(4.0)


def test_stream_longer_than_the_dma_length_register_is_refused(fake_pynq, overlay_files):
    module = fake_pynq(FakeBoard())
    transport = module.PynqTransport(overlay_files)
    with pytest.raises(module.BoardError, match=r"MM2S: an input stream of 1048576 words is 8388608 bytes, more than "
                                                r"the DMA's buffer length register allows \(8388607 bytes"):
        transport.send(np.zeros(1 << 20, dtype=np.uint64))


@pytest.mark.parametrize("board, remove, error, message", [
    (FakeBoard(), "radix.hwh", FileNotFoundError, "its hardware description .*radix.hwh is missing"),
    (FakeBoard(), "radix.bit", FileNotFoundError, "overlay bitstream .*radix.bit not found"),
    (FakeBoard(cells=("axi_dma",)), None, "BoardError", r"has no IP 'engine' \(its IPs: axi_dma\): is it a Radix overlay"),
    (FakeBoard(cells=("engine",)), None, "BoardError", r"has no IP 'axi_dma' \(its IPs: engine\)"),
    (FakeBoard(span=0x80), None, "BoardError", "engine maps 128 bytes, the registers need 172"),
    (FakeBoard(ident=0xDEADBEEF), None, "BoardError", "register ID of engine at 0x43C00000 reads 0xDEADBEEF"),
    (FakeBoard(dma_driver=False), None, "BoardError", "axi_dma is a SimpleNamespace, not PYNQ's AXI DMA driver"),
])
def test_wrong_overlay_is_named(fake_pynq, overlay_files, board, remove, error, message):
    module = fake_pynq(board)
    if remove:
        (overlay_files.parent / remove).unlink()
    with pytest.raises(getattr(module, error) if isinstance(error, str) else error, match=message):
        module.PynqTransport(overlay_files)


def test_closed_transport_refuses_streams(fake_pynq, overlay_files):
    module = fake_pynq(FakeBoard())
    transport = module.PynqTransport(overlay_files)
    transport.close()
    with pytest.raises(module.BoardError, match="is closed"):
        transport.receive(1, 10)
    assert module.describe_dmasr(0x1002) == "0x00001002 (Idle, IOC_Irq)"


# ---- the board notebook -----------------------------------------------------------------------

NOTEBOOK = BOARD / "radix_lenet5.ipynb"


def test_notebook_is_clean_nbformat_4():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4 and notebook["cells"]
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cell["id"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_runs_over_a_fake_board(fake_pynq, overlay_files, monkeypatch, capsys):
    """Every code cell, in order, against the reference engine behind a fake pynq."""
    rng = np.random.default_rng(2)
    conv = Layer(name="conv", kind="conv", modules=["conv"], in_shape=(1, 8, 8), out_shape=(4, 4, 4), kernel=3,
                 stride=1, pad=1, relu=True, pool=True, fl_in=6, fl_w=[7], fl_out=5, weight_bits=8,
                 weights=rng.integers(-128, 128, (4, 1, 3, 3)), bias=rng.integers(-2000, 2000, 4))
    fc = Layer(name="fc", kind="fc", modules=["fc"], in_shape=(4, 4, 4), out_shape=(10,), kernel=1, stride=1, pad=0,
               relu=False, pool=False, fl_in=5, fl_w=[7], fl_out=3, weight_bits=8,
               weights=rng.integers(-128, 128, (10, 64)), bias=rng.integers(-2000, 2000, 10))
    directory = overlay_files.parent
    Program(width=8, input_shape=(1, 8, 8), input_fl=6, layers=[conv, fc]).save(directory / "lenet5.radix")
    np.savez(directory / "lenet5-test.npz", x=rng.random((6, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 6))
    fake_pynq(FakeBoard())
    monkeypatch.chdir(directory)
    namespace: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)
    out = capsys.readouterr().out
    assert namespace["mismatches"] == [] and len(namespace["runs"]) == 6
    assert namespace["engine_accuracy"] == namespace["reference_accuracy"]
    assert "bit-exact with the reference on every image and layer" in out
    assert re.search(r"^conv\s+conv\s+1\s+\d+\s+\d+\s+\d+\s+[\d.]+ / 176$", out, re.M)
