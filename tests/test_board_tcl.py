"""The PYNQ-Z2 overlay flow (engine version 9, the bus master), checked without Vivado.

* The generated Verilog: the top level ``radix_bus_engine`` has every port the overlay Tcl
  connects, with the widths and directions of its interfaces (AXI4-Lite slave ``s_axi``, AXI4
  master ``m_axi``, ``clk``, ``rst``, ``interrupt``), each carrying Vivado's ``X_INTERFACE_INFO`` /
  ``X_INTERFACE_PARAMETER`` attributes, and passes all of them to ``radix_bus_engine_core``.
* ``build_overlay.tcl`` runs in a real Tcl interpreter against a mock Vivado that records every
  command and answers like Vivado does for a module reference: pin properties come from the
  Verilog's attributes, and only once the pin is connected (unconnected pins report an empty
  POLARITY and an incomplete association). The block design is checked net by net, in both PS7
  set-up paths (board files, or PYNQ's base-design preset), with IP versions pinned to the
  table in ``boards/pynq_z2/ip_versions.json`` and the cells, addresses and ports that
  ``radix.overlay`` gives the board's software; its refusals (Vivado version, IP catalogue,
  clock, Verilog without attributes, ...) are checked, and the clock's FREQ_HZ adapted to the
  PS's.
* ``bitstream.sh`` refuses a clock the PS cannot make and a missing Vivado before anything else,
  passes the Tcl its arguments in order, and fails naming both versions on the wrong Vivado.

The pynq transport and the notebook run against PYNQ's own code in tests/test_board_runtime.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tkinter
from dataclasses import dataclass
from pathlib import Path

import pytest
from amaranth.back import verilog as amaranth_verilog

from radix import overlay
from radix.engine_spec import BUS_ADDR_BITS, BUS_REGISTERS, DEFAULT_CONFIG, STREAM_BITS

REPO = Path(__file__).resolve().parents[1]
BOARD = REPO / "boards" / "pynq_z2"
TCL = BOARD / "build_overlay.tcl"
BITSTREAM_SH = BOARD / "bitstream.sh"
IP_VERSIONS = json.loads((BOARD / "ip_versions.json").read_text())

ADDR_BITS = 12  # the engine's AXI4-Lite address width (docs/engine.md)
AXI_LITE_SLAVE = {
    "awaddr": ("input", ADDR_BITS), "awprot": ("input", 3), "awvalid": ("input", 1), "awready": ("output", 1),
    "wdata": ("input", 32), "wstrb": ("input", 4), "wvalid": ("input", 1), "wready": ("output", 1),
    "bresp": ("output", 2), "bvalid": ("output", 1), "bready": ("input", 1),
    "araddr": ("input", ADDR_BITS), "arprot": ("input", 3), "arvalid": ("input", 1), "arready": ("output", 1),
    "rdata": ("output", 32), "rresp": ("output", 2), "rvalid": ("output", 1), "rready": ("input", 1),
}
# the AXI4 master (docs/engine.md: 32-bit addresses, 64-bit data, one ID bit, INCR bursts)
AXI4_MASTER = {
    "arid": ("output", 1), "araddr": ("output", BUS_ADDR_BITS), "arlen": ("output", 8), "arsize": ("output", 3),
    "arburst": ("output", 2), "arlock": ("output", 1), "arcache": ("output", 4), "arprot": ("output", 3),
    "arqos": ("output", 4), "arvalid": ("output", 1), "arready": ("input", 1),
    "awid": ("output", 1), "awaddr": ("output", BUS_ADDR_BITS), "awlen": ("output", 8), "awsize": ("output", 3),
    "awburst": ("output", 2), "awlock": ("output", 1), "awcache": ("output", 4), "awprot": ("output", 3),
    "awqos": ("output", 4), "awvalid": ("output", 1), "awready": ("input", 1),
    "rid": ("input", 1), "rdata": ("input", STREAM_BITS), "rresp": ("input", 2), "rlast": ("input", 1),
    "rvalid": ("input", 1), "rready": ("output", 1),
    "wdata": ("output", STREAM_BITS), "wstrb": ("output", STREAM_BITS // 8), "wlast": ("output", 1),
    "wvalid": ("output", 1), "wready": ("input", 1),
    "bid": ("input", 1), "bresp": ("input", 2), "bvalid": ("input", 1), "bready": ("output", 1),
}
# bus interfaces, the bus definition each port's X_INTERFACE_INFO names, and their signals
INTERFACES = {
    "s_axi": ("xilinx.com:interface:aximm:1.0", AXI_LITE_SLAVE),
    "m_axi": ("xilinx.com:interface:aximm:1.0", AXI4_MASTER),
}
PINS = {"clk": ("input", 1), "rst": ("input", 1), "interrupt": ("output", 1)}
CLOCK_HZ = 100_000_000  # what `radix verilog` declares by default (radix_hw.verilog.DEFAULT_CLOCK_HZ)
M_AXI_PARAMETERS = ("PROTOCOL AXI4, MAX_BURST_LENGTH 16, SUPPORTS_NARROW_BURST 0, NUM_READ_OUTSTANDING 32, "
                    "NUM_WRITE_OUTSTANDING 16, HAS_BURST 1, ID_WIDTH 1")
# what Vivado needs to know about the single-signal pins, as UG994 spells the attributes
PIN_ATTRIBUTES = {
    "clk": {"X_INTERFACE_INFO": "xilinx.com:signal:clock:1.0 clk CLK",
            "X_INTERFACE_PARAMETER": f"ASSOCIATED_BUSIF s_axi:m_axi, ASSOCIATED_RESET rst, FREQ_HZ {CLOCK_HZ}"},
    "rst": {"X_INTERFACE_INFO": "xilinx.com:signal:reset:1.0 rst RST", "X_INTERFACE_PARAMETER": "POLARITY ACTIVE_HIGH"},
    "interrupt": {"X_INTERFACE_INFO": "xilinx.com:signal:interrupt:1.0 interrupt INTERRUPT",
                  "X_INTERFACE_PARAMETER": "SENSITIVITY LEVEL_HIGH"},
}
# PYNQ v3.0.1 boards/Pynq-Z2/base/base.tcl, ps7_0: a sample of the DDR3 and MIO settings
BASE_DESIGN_PS7 = {
    "CONFIG.PCW_UIPARAM_DDR_PARTNO": "Custom", "CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
    "CONFIG.PCW_UIPARAM_DDR_FREQ_MHZ": "525", "CONFIG.PCW_UIPARAM_DDR_SPEED_BIN": "DDR3_1066F",
    "CONFIG.PCW_UIPARAM_DDR_DEVICE_CAPACITY": "4096 MBits", "CONFIG.PCW_UIPARAM_DDR_CL": "7",
    "CONFIG.PCW_UIPARAM_DDR_T_RC": "50.625", "CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY0": "0.223",
    "CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2": "0.000", "CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3": "0.000",
    "CONFIG.PCW_UIPARAM_DDR_DQS_0_LENGTH_MM": "15.6", "CONFIG.PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL": "1",
    "CONFIG.PCW_ENET0_RESET_ENABLE": "0", "CONFIG.PCW_USB0_RESET_ENABLE": "0", "CONFIG.PCW_GPIO_MIO_GPIO_ENABLE": "0",
    "CONFIG.PCW_UART0_UART0_IO": "MIO 14 .. 15", "CONFIG.PCW_IOPLL_CTRL_FBDIV": "20",
    "CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC": "IO PLL",
}


# ---- the generated Verilog -------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine_v(tmp_path_factory) -> Path:
    """The default bus-master engine's Verilog, as `radix verilog` writes it."""
    from radix_hw.verilog import generate

    path = tmp_path_factory.mktemp("verilog") / "engine.v"
    path.write_text(generate(DEFAULT_CONFIG))
    return path


def module_text(text: str, module: str) -> str:
    start = re.search(rf"^module {module} ?\(", text, re.M)
    assert start, f"no module {module}"
    return text[start.start(): text.index("endmodule", start.end())]


def verilog_ports(text: str, module: str) -> dict:
    """``{port: (direction, width)}`` of a module in Verilog-2001 text, as Yosys writes it
    (port list, then declarations) or as the wrapper does (ANSI declarations)."""
    ports = {}
    for direction, msb, lsb, name in re.findall(
            r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][\w$]*)\s*[;,)]?\s*$",
            module_text(text, module), re.M):
        ports[name] = (direction, int(msb) - int(lsb) + 1 if msb else 1)
    return ports


def port_attributes(text: str, module: str = overlay.ENGINE_MODULE) -> dict:
    """``{port: {attribute: value}}`` of the ``(* KEY = "VALUE" *)`` lines before each ANSI port."""
    attributes, pending = {}, {}
    for line in module_text(text, module).splitlines():
        found = re.fullmatch(r'\s*\(\* (\w+) = "([^"]*)" \*\)', line)
        if found:
            pending[found[1]] = found[2]
            continue
        port = re.fullmatch(r"\s*(?:input|output) wire (?:\[\d+:\d+\] )?(\w+),?", line)
        if port:
            attributes[port[1]] = pending
            pending = {}
    return attributes


def expected_ports() -> dict:
    ports = dict(PINS)
    for intf, (_, signals) in INTERFACES.items():
        ports.update({f"{intf}_{signal}": spec for signal, spec in signals.items()})
    return ports


def test_top_level_ports_are_exactly_the_interfaces_the_overlay_connects(engine_v):
    from radix_hw.verilog import CORE_MODULE_NAME, MODULE_NAME

    assert MODULE_NAME == overlay.ENGINE_MODULE and overlay.ENGINE_VLNV.split(":")[2] == MODULE_NAME
    text = engine_v.read_text()
    assert verilog_ports(text, MODULE_NAME) == expected_ports()
    # the wrapper passes every port to the Amaranth engine, by name
    assert verilog_ports(text, CORE_MODULE_NAME) == expected_ports()
    instance = re.search(rf"{CORE_MODULE_NAME} core \((.*?)\);", module_text(text, MODULE_NAME), re.S)
    assert instance and set(re.findall(r"\.(\w+)\((\w+)\)", instance[1])) == {(p, p) for p in expected_ports()}
    assert max(reg.offset for reg in BUS_REGISTERS) + 4 <= 1 << ADDR_BITS <= overlay.ENGINE_RANGE


def test_top_level_ports_carry_vivado_interface_attributes(engine_v):
    attributes = port_attributes(engine_v.read_text())
    assert set(attributes) == set(expected_ports())
    for pin, wanted in PIN_ATTRIBUTES.items():
        assert attributes[pin] == wanted, pin
    for intf, (vlnv, signals) in INTERFACES.items():
        for signal in signals:
            wanted = {"X_INTERFACE_INFO": f"{vlnv} {intf} {signal.upper()}"}
            if f"{intf}_{signal}" == "m_axi_awaddr":  # the master's parameters ride on one of its ports
                wanted["X_INTERFACE_PARAMETER"] = M_AXI_PARAMETERS
            assert attributes[f"{intf}_{signal}"] == wanted


# ---- build_overlay.tcl against a mock Vivado -------------------------------------------------

MOCK_VIVADO = r"""
# A mock Vivado: every Vivado command falls through to `unknown`, which records it and answers
# what the flow needs. exit and puts are captured so the interpreter survives the script.
proc exit {{code 0}} { return -code error "__exit__ $code" }
rename puts _tcl_puts
proc puts {args} {
    # writes to a file go to the file; the console's lines are recorded
    set channel [expr {[llength $args] >= 2 ? [lindex $args end-1] : "stdout"}]
    if {$channel ni {stdout stderr -nonewline}} { return [_tcl_puts {*}$args] }
    lappend ::out [lindex $args end]
    if {[lindex $args 0] eq "stderr"} { lappend ::err [lindex $args end] }
}
set ::calls {}
set ::out {}
set ::err {}
set ::connected {}

# The X_INTERFACE_PARAMETER of a top-level port in the Verilog added to the project, or "".
proc mock_attribute {port} {
    if {![info exists ::mock_verilog]} { return "" }
    set f [open $::mock_verilog r]; set text [read $f]; close $f
    set pattern [format {\(\* X_INTERFACE_PARAMETER = "([^"]*)" \*\)\s*(?:input|output) wire (?:\[[^]]*\] )?%s\M} $port]
    if {[regexp $pattern $text -> value]} { return $value }
    return ""
}

# A module-reference pin's CONFIG property as Vivado reports it: nothing reliable before the pin
# is connected (empty POLARITY and SENSITIVITY, the clock associated with s_axi only); once
# connected, the value of the HDL attribute, or without one what Vivado infers or propagates.
proc mock_pin_property {pin name} {
    set key [string range $name [string length CONFIG.] end]
    # without attributes Vivado infers these (a master's longest AXI4 burst; the PS's clock)
    set inferred [dict create POLARITY ACTIVE_HIGH ASSOCIATED_BUSIF s_axi ASSOCIATED_RESET "" SENSITIVITY LEVEL_HIGH \
        PROTOCOL AXI4 MAX_BURST_LENGTH 256 FREQ_HZ [mock_fclk_hz]]
    if {[lsearch -exact $::connected $pin] < 0} {
        return [expr {$key eq "ASSOCIATED_BUSIF" ? "s_axi" : ""}]
    }
    set port [lindex [split $pin /] 1]
    if {$port eq "m_axi"} {
        set port m_axi_awaddr
    }
    foreach item [split [mock_attribute $port] ,] {
        set item [string trim $item]
        if {[lindex $item 0] eq $key} { return [lindex $item 1] }
    }
    return [dict get $inferred $key]
}

# FCLK_CLK0's FREQ_HZ as the PS7 reports it: its actual frequency in Hz
proc mock_fclk_hz {} { return [expr {round($::mock(act_mhz) * 1e6)}] }

proc mock_property {name object} {
    if {[string match engine/* $object]} { return [mock_pin_property $object $name] }
    if {$object eq "ps7/FCLK_CLK0" && $name eq "CONFIG.FREQ_HZ"} { return [mock_fclk_hz] }
    switch -- $name {
        CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ { return $::mock(act_mhz) }
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
        get_ipdefs { return [lsearch -all -inline -glob $::mock(catalogue) $last] }
        add_files { set ::mock_verilog $last; return "" }
        connect_bd_net - connect_bd_intf_net {
            foreach pin [lrange $args 1 end] { lappend ::connected $pin }
            return ""
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
            if {[string match engine/* $last]} {
                error "\[BD 41-1273\] parameter [lindex $args 1] of a module reference pin is read-only (mock)"
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
    "progress": "100%", "slack": "0.250", "no_intf": "", "catalogue": " ".join(IP_VERSIONS["ip"].values()),
}


@dataclass
class TclRun:
    """What build_overlay.tcl did under the mock: exit code, Vivado commands, messages."""

    code: int
    calls: list
    out: list
    err: list
    out_dir: Path
    tcl: tkinter.Tcl

    def commands(self, name: str) -> list:
        return [call for call in self.calls if call[0] == name]

    def index(self, call: tuple) -> int:
        return self.calls.index(call)

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
        """``{cell name: "module:<name>" or the IP's VLNV}`` of every create_bd_cell."""
        cells = {}
        for call in self.commands("create_bd_cell"):
            args = list(call[1:])
            kind = args[args.index("-type") + 1]
            if kind == "module":
                cells[call[-1]] = "module:" + args[args.index("-reference") + 1]
            else:
                cells[call[-1]] = args[args.index("-vlnv") + 1]
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
    return TclRun(code, calls, list(split(tcl.eval("set ::out"))), list(split(tcl.eval("set ::err"))), out_dir, tcl)


def default_argv(tmp_path: Path, engine_v: Path, clock: str = "100") -> list[str]:
    return [str(engine_v), str(tmp_path / "out"), clock, str(tmp_path / "vivado")]


@pytest.fixture(scope="module")
def overlay_run(engine_v, tmp_path_factory) -> TclRun:
    tmp = tmp_path_factory.mktemp("overlay")
    run = run_overlay_tcl(tmp, default_argv(tmp, engine_v))
    assert run.code == 0, run.err
    return run


def test_tcl_wires_every_engine_port_with_its_interface(overlay_run, engine_v):
    run, ports = overlay_run, verilog_ports(engine_v.read_text(), overlay.ENGINE_MODULE)
    assert run.cells()[overlay.ENGINE_CELL] == f"module:{overlay.ENGINE_MODULE}"
    used_pins = {call[-1].split("/", 1)[1] for call in run.commands("get_bd_pins") if call[-1].startswith("engine/")}
    used_intfs = {call[-1].split("/", 1)[1] for call in run.commands("get_bd_intf_pins") if call[-1].startswith("engine/")}
    assert used_pins == set(PINS) and used_intfs == set(INTERFACES)
    covered = set(used_pins) | {f"{intf}_{signal}" for intf in used_intfs for signal in INTERFACES[intf][1]}
    assert covered == set(ports), "every Verilog port is part of a connected pin or interface"
    for pin in used_pins:
        assert ports[pin] == PINS[pin]
    connected = set().union(*run.nets(), *run.intf_nets())
    assert {f"engine/{name}" for name in used_pins | used_intfs} <= connected


def test_tcl_block_design_nets(overlay_run):
    run = overlay_run
    cells = run.cells()
    ip = IP_VERSIONS["ip"]
    assert cells == {"ps7": ip["processing_system7"], "engine": f"module:{overlay.ENGINE_MODULE}",
                     overlay.INTC_CELL: ip["axi_intc"], "periph_ic": ip["axi_interconnect"],
                     "mem_ic": ip["axi_interconnect"], "rst_fclk0": ip["proc_sys_reset"]}
    everything = set().union(*run.nets(), *run.intf_nets())
    assert {pin.split("/")[0] for pin in everything} <= set(cells) | {"DDR", "FIXED_IO"}
    # no DMA: the engine is the bus master
    assert not [call for call in run.calls if any("dma" in str(arg).lower() for arg in call)]
    # one clock domain: every clock pin the design uses is on FCLK_CLK0's net
    clock = run.net_of("ps7/FCLK_CLK0")
    assert {pin for pin in everything if re.search(r"(?i)aclk$|/clk$|slowest_sync_clk", pin)} == clock - {"ps7/FCLK_CLK0"}
    # the engine's reset is active high; the AXI IPs' are active low
    assert run.net_of("engine/rst") == {"rst_fclk0/peripheral_reset", "engine/rst"}
    assert f"{overlay.INTC_CELL}/s_axi_aresetn" in run.net_of("rst_fclk0/peripheral_aresetn")
    assert run.net_of("ps7/FCLK_RESET0_N") == {"ps7/FCLK_RESET0_N", "rst_fclk0/ext_reset_in"}
    # registers: GP0 -> interconnect -> engine, interrupt controller; data: engine -> interconnect -> HP0
    intf = run.intf_nets()
    for pair in ({"ps7/M_AXI_GP0", "periph_ic/S00_AXI"}, {"periph_ic/M00_AXI", "engine/s_axi"},
                 {"periph_ic/M01_AXI", f"{overlay.INTC_CELL}/s_axi"}, {"engine/m_axi", "mem_ic/S00_AXI"},
                 {"mem_ic/M00_AXI", f"ps7/{overlay.HP_PORT}"}):
        assert pair in intf
    assert len(intf) == 5 + (0 if run.commands("apply_bd_automation") else 2)  # + DDR, FIXED_IO by hand
    assert run.properties("periph_ic") == {"CONFIG.NUM_SI": "1", "CONFIG.NUM_MI": "2"}
    assert run.properties("mem_ic") == {"CONFIG.NUM_SI": "1", "CONFIG.NUM_MI": "1"}
    # the interrupt: engine -> the controller's input 0 -> IRQ_F2P, where PYNQ's pynq.Interrupt finds it
    assert run.net_of(overlay.INTERRUPT_PIN) == {overlay.INTERRUPT_PIN, f"{overlay.INTC_CELL}/intr"}
    assert run.net_of(f"{overlay.INTC_CELL}/irq") == {f"{overlay.INTC_CELL}/irq", "ps7/IRQ_F2P"}


def test_tcl_pins_every_ip_to_the_table(overlay_run):
    """Every IP comes by the VLNV of ip_versions.json (Vivado 2022.1's, from PYNQ's base design),
    and the Tcl's own table is that file's."""
    assert IP_VERSIONS["vivado"] == "2022.1"
    assert IP_VERSIONS["ip"]["axi_intc"] == overlay.INTC_VLNV == "xilinx.com:ip:axi_intc:4.1"
    assert IP_VERSIONS["ip"]["processing_system7"] == "xilinx.com:ip:processing_system7:5.5"
    tcl_table = dict(zip(*[iter(overlay_run.tcl.splitlist(overlay_run.tcl.eval("set ip_vlnv")))] * 2))
    assert tcl_table == IP_VERSIONS["ip"]
    assert overlay_run.tcl.eval("set pinned_vivado") == IP_VERSIONS["vivado"]
    used = {vlnv for vlnv in overlay_run.cells().values() if not vlnv.startswith("module:")}
    assert used == set(IP_VERSIONS["ip"].values())
    for vlnv in used:
        name = vlnv.split(":")[2]
        assert IP_VERSIONS["ip"][name] == vlnv
        assert ("get_ipdefs", "-all", "-quiet", vlnv) in overlay_run.calls


ENGINE_CHECKS = {("CONFIG.ASSOCIATED_BUSIF", "engine/clk"), ("CONFIG.ASSOCIATED_RESET", "engine/clk"),
                 ("CONFIG.FREQ_HZ", "engine/clk"), ("CONFIG.POLARITY", "engine/rst"),
                 ("CONFIG.SENSITIVITY", "engine/interrupt"), ("CONFIG.PROTOCOL", "engine/m_axi"),
                 ("CONFIG.MAX_BURST_LENGTH", "engine/m_axi")}


def test_tcl_checks_the_engine_pins_after_connecting_them_and_sets_none(overlay_run):
    run = overlay_run
    assert not [call for call in run.commands("set_property") if call[-1].startswith("engine/")]
    checked = {(call[1], call[2]) for call in run.commands("get_property") if call[-1].startswith("engine/")}
    assert checked == ENGINE_CHECKS
    for pin in ("engine/clk", "engine/rst", "engine/interrupt", "engine/m_axi"):
        kind = "connect_bd_intf_net" if pin == "engine/m_axi" else "connect_bd_net"
        connect = max(i for i, call in enumerate(run.calls) if call[0] == kind and pin in call)
        first_check = min(i for i, call in enumerate(run.calls) if call[0] == "get_property" and call[-1] == pin)
        assert connect < first_check, f"{pin} is checked before it is connected"


def test_tcl_adds_the_engine_with_the_clocks_frequency(overlay_run, engine_v, tmp_path):
    """At 100 MHz the Verilog's FREQ_HZ is FCLK_CLK0's; at 142.857 MHz the project gets a copy
    declaring the PS's 142857132 Hz, and the engine's clock pin reports it."""
    added = overlay_run.commands("add_files")[:-1]  # the last: the block design's wrapper
    assert len(added) == 1 and Path(added[0][-1]).name == f"{overlay.ENGINE_MODULE}.v"
    assert Path(added[0][-1]).read_text() == engine_v.read_text()
    add = overlay_run.index(added[0])
    assert add < overlay_run.index(("create_bd_cell", "-type", "module", "-reference", overlay.ENGINE_MODULE, "engine"))
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, engine_v, "142.857"), act_mhz="142.857132")
    assert run.code == 0, run.err
    copy = Path(run.commands("add_files")[0][-1])
    assert copy.read_text() == engine_v.read_text().replace(f"FREQ_HZ {CLOCK_HZ}", "FREQ_HZ 142857132")
    assert any(f"declares FREQ_HZ {CLOCK_HZ}, FCLK_CLK0 is 142857132 Hz" in line for line in run.out)


def _edited(tmp_path: Path, engine_v: Path, old: str, new: str) -> Path:
    text = engine_v.read_text()
    assert old in text
    path = tmp_path / "edited.v"
    path.write_text(text.replace(old, new))
    return path


def test_tcl_refuses_verilog_without_the_interface_attributes(tmp_path, engine_v):
    """The Amaranth engine alone (no wrapper): no FREQ_HZ to adapt, and the flow stops saying so."""
    from radix_hw.bus_engine import BusEngine

    bare = tmp_path / "bare.v"
    bare.write_text(amaranth_verilog.convert(BusEngine(config=DEFAULT_CONFIG), name=overlay.ENGINE_MODULE,
                                             emit_src=False))
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, bare))
    assert run.code == 1
    assert any("declares FREQ_HZ 0 times, expected once, on clk" in line for line in run.err), run.err
    assert not (tmp_path / "out" / "radix.bit").exists()


@pytest.mark.parametrize("old, new, message", [
    ("ASSOCIATED_BUSIF s_axi:m_axi,", "ASSOCIATED_BUSIF s_axi,",
     "engine/clk CONFIG.ASSOCIATED_BUSIF is 's_axi', expected 's_axi:m_axi'"),
    (f'    (* X_INTERFACE_PARAMETER = "{M_AXI_PARAMETERS}" *)\n', "",
     "engine/m_axi CONFIG.MAX_BURST_LENGTH is '256', expected '16'"),
    ('"POLARITY ACTIVE_HIGH"', '"POLARITY ACTIVE_LOW"', "engine/rst CONFIG.POLARITY is 'ACTIVE_LOW'"),
])
def test_tcl_refuses_verilog_whose_attributes_differ(tmp_path, engine_v, old, new, message):
    """Vivado's own inference (or another attribute) in place of radix_hw.verilog's: the flow stops
    naming the property and the fix."""
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, _edited(tmp_path, engine_v, old, new)))
    assert run.code == 1
    assert any(message in line and "lacks the X_INTERFACE attributes of `radix verilog`" in line
               for line in run.err), run.err


def test_tcl_ps_and_addresses_match_the_engine_and_transport(overlay_run):
    run = overlay_run
    assert {overlay.ENGINE_CELL, overlay.INTC_CELL} <= set(run.cells())
    ps = run.properties("ps7")
    assert ps["CONFIG.PCW_USE_M_AXI_GP0"] == ps["CONFIG.PCW_USE_S_AXI_HP0"] == "1"
    assert int(ps["CONFIG.PCW_S_AXI_HP0_DATA_WIDTH"]) == overlay.HP_DATA_BITS == STREAM_BITS
    assert ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "100"
    assert ps["CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC"] == "IO PLL"
    assert ps["CONFIG.PCW_USE_FABRIC_INTERRUPT"] == ps["CONFIG.PCW_IRQ_F2P_INTR"] == "1"
    segments = {call[-2]: call for call in run.commands("assign_bd_address")}
    assert set(segments) == {"engine/s_axi/reg0", f"{overlay.INTC_CELL}/S_AXI/Reg",
                             f"ps7/{overlay.HP_PORT}/{overlay.HP_SEGMENT}"}

    def placed(call):
        return (int(call[call.index("-offset") + 1], 16), call[call.index("-range") + 1],
                call[call.index("-target_address_space") + 1])

    assert placed(segments["engine/s_axi/reg0"]) == (overlay.ENGINE_BASE, f"{overlay.ENGINE_RANGE // 1024}K", "ps7/Data")
    assert overlay.ENGINE_RANGE == 1 << ADDR_BITS
    assert placed(segments[f"{overlay.INTC_CELL}/S_AXI/Reg"]) == (overlay.INTC_BASE, f"{overlay.INTC_RANGE // 1024}K",
                                                                   "ps7/Data")
    # the engine's master sees the DDR through HP0, all of the transport's buffers included
    assert placed(segments[f"ps7/{overlay.HP_PORT}/{overlay.HP_SEGMENT}"]) == (
        overlay.DDR_BASE, f"{overlay.DDR_RANGE >> 20}M", "engine/m_axi")
    assert run.commands("validate_bd_design")
    # the overlay's files, named as PynqBusTransport expects them (.hwh beside the .bit)
    assert (run.out_dir / "radix.bit").is_file() and (run.out_dir / "radix.hwh").is_file()


def test_tcl_uses_board_preset_when_the_board_files_are_installed(overlay_run):
    automation = overlay_run.commands("apply_bd_automation")
    assert len(automation) == 1 and "apply_board_preset" in automation[0][4]
    assert overlay_run.commands("set_property")[0][1:] == ("board_part", "tul.com.tw:pynq-z2:part0:1.0", "")
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO" not in overlay_run.properties("ps7")


def test_tcl_writes_out_pynqs_base_design_ps7_without_board_files(tmp_path, engine_v):
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, engine_v, "142.86"), board_part="", act_mhz="142.857132")
    assert run.code == 0, run.err
    assert not run.commands("apply_bd_automation")
    ps = run.properties("ps7")
    assert {key: ps.get(key) for key in BASE_DESIGN_PS7} == BASE_DESIGN_PS7
    assert sum(key.startswith("CONFIG.PCW_UIPARAM_DDR_") for key in ps) == 72  # all of base.tcl's
    assert ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "142.857"
    assert {"DDR", "ps7/DDR"} in run.intf_nets() and {"FIXED_IO", "ps7/FIXED_IO"} in run.intf_nets()
    assert any("142.857132 MHz" in line for line in run.out)


def test_tcl_fclk_choices_are_the_runtimes(overlay_run):
    tcl = overlay_run.tcl
    choices = [float(f) for f in tcl.splitlist(tcl.eval("fclk_choices"))]
    assert choices == pytest.approx(list(overlay.fclk_frequencies()), rel=1e-12)
    assert [overlay.format_mhz(f) for f in choices[:7]] == ["250", "200", "166.667", "142.857", "125", "111.111", "100"]


def test_other_vivado_builds_when_allowed(tmp_path, engine_v, monkeypatch):
    monkeypatch.setenv("RADIX_ALLOW_OTHER_VIVADO", "1")
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, engine_v), version="2023.2")
    assert run.code == 0, run.err
    assert any("warning: Vivado 2023.2, not the pinned Vivado 2022.1" in line for line in run.out)


def test_vivado_update_release_is_the_pinned_version(tmp_path, engine_v):
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, engine_v), version="2022.1.1")
    assert run.code == 0, run.err


@pytest.mark.parametrize("change, mock, message", [
    (lambda argv: argv[:1], {}, "usage: vivado -mode batch"),
    (lambda argv: [argv[0] + ".missing"] + argv[1:], {}, "not found: generate it with `radix verilog"),
    (lambda argv: argv[:2] + ["fast"] + argv[3:], {}, "CLOCK_MHZ 'fast' must be a number of MHz"),
    (lambda argv: argv[:2] + ["130"] + argv[3:], {},
     "CLOCK_MHZ 130 is not a frequency the PS can make (1000 MHz IO PLL / an integer divisor, 10..250 MHz): "
     "the nearest are 125 and 142.857 MHz"),
    (lambda argv: argv[:2] + ["400"] + argv[3:], {}, "CLOCK_MHZ 400 is not a frequency the PS can make"),
    (lambda argv: argv, {"version": "2023.2"},
     "Vivado 2023.2 is not Vivado 2022.1, the version this flow and its IP versions are pinned to"),
    (lambda argv: argv, {"version": "2021.2"}, "or set RADIX_ALLOW_OTHER_VIVADO=1 to build with 2021.2 anyway"),
    (lambda argv: argv, {"has_part": "0"}, "install Zynq-7000 device support"),
    (lambda argv: argv, {"catalogue": " ".join(IP_VERSIONS["ip"].values()).replace("axi_intc:4.1", "axi_intc:4.0")},
     "IP xilinx.com:ip:axi_intc:4.1 (pinned, boards/pynq_z2/ip_versions.json) is not in this Vivado's IP catalogue "
     "(it has: xilinx.com:ip:axi_intc:4.0)"),
    (lambda argv: argv, {"act_mhz": "99.000000"}, "FCLK_CLK0 is '99.000000' MHz, not the 100 MHz asked"),
    (lambda argv: argv, {"no_intf": "engine/m_axi"}, "inferred no interface m_axi"),
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
    other.write_text("module radix_engine(input clk);\nendmodule\n")
    run = run_overlay_tcl(tmp_path, default_argv(tmp_path, other))
    assert run.code == 1 and "has no module radix_bus_engine" in run.err[0] and "`radix verilog`" in run.err[0]


def test_tcl_avoids_tcl_86_only_commands():
    # Vivado's Tcl is 8.5; the mock runs 8.6, so 8.6-only commands would pass the tests above
    code = "\n".join(line for line in TCL.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(lmap|try|throw|tailcall|coroutine|yield|zlib)\b|string cat|lsort -stride|file tempfile",
                         code)


# ---- bitstream.sh -----------------------------------------------------------------------------

def _bitstream(tmp_path: Path, path: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": path, "BUILD": str(tmp_path / "build"), **env}
    return subprocess.run(["bash", str(BITSTREAM_SH)], env=environment, capture_output=True, text=True, timeout=120)


def test_bitstream_sh_without_vivado_says_what_to_install(tmp_path):
    result = _bitstream(tmp_path, "/usr/bin:/bin")
    assert result.returncode != 0
    assert "'vivado' is not on PATH" in result.stderr
    assert "Vivado 2022.1" in result.stderr and "Zynq-7000" in result.stderr
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("clock", ["130", "99", "300", "fast"])
def test_bitstream_sh_refuses_a_clock_the_ps_cannot_make_before_anything_else(tmp_path, clock):
    result = _bitstream(tmp_path, "/usr/bin:/bin", CLOCK_MHZ=clock)
    assert result.returncode == 2 and "'vivado' is not on PATH" not in result.stderr
    if clock == "fast":
        assert "CLOCK_MHZ 'fast' must be a number of MHz" in result.stderr
        return
    with pytest.raises(overlay.ClockError) as python:
        overlay.check_fclk_mhz(float(clock))
    # the shell names the same nearest frequencies as radix.overlay
    assert str(python.value).split("MHz is not")[1] in result.stderr.replace(f"CLOCK_MHZ {clock}", "")


def test_bitstream_sh_accepts_every_frequency_the_ps_makes(tmp_path):
    """The shell's rule is radix.overlay's: each PS frequency, written with three decimals, passes
    the clock check (and reaches the Vivado check)."""
    for mhz in overlay.fclk_frequencies():
        result = _bitstream(tmp_path, "/usr/bin:/bin", CLOCK_MHZ=overlay.format_mhz(mhz))
        assert "'vivado' is not on PATH" in result.stderr, (mhz, result.stderr)


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _stub_tools(tmp_path: Path, engine_v: Path, version: str) -> Path:
    """A stub `radix` that copies engine_v, and a stub `vivado` that sources the Tcl under the mock."""
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
tcl.call("set", "::mock(version)", {version!r})
tcl.call("set", "::argv", tuple(tclargs))
tcl.call("set", "::argc", len(tclargs))
try:
    tcl.call("source", args[args.index("-source") + 1])
except tkinter.TclError as error:
    sys.stderr.write(tcl.eval("join $::err \\n"))
    sys.exit(int(str(error).split()[1]) if str(error).startswith("__exit__") else 3)
""")
    return stubs


def test_bitstream_sh_generates_verilog_and_runs_the_tcl(tmp_path, engine_v):
    stubs = _stub_tools(tmp_path, engine_v, "2022.1")
    build = tmp_path / "build"
    result = _bitstream(tmp_path, f"{stubs}:{os.environ['PATH']}", CLOCK_MHZ="125.0", JOBS="2",
                        RADIX=str(stubs / "radix"))
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "vivado-args").read_text().splitlines()
    assert args[args.index("-source") + 1] == str(TCL)
    assert args[args.index("-tclargs") + 1:] == [str(build / "engine.v"), str(build / "overlay"), "125",
                                                   str(build / "vivado"), "2"]
    assert (build / "engine.v").read_text() == engine_v.read_text()
    assert (build / "overlay" / "radix.bit").is_file() and (build / "overlay" / "radix.hwh").is_file()


def test_bitstream_sh_with_the_wrong_vivado_names_both_versions(tmp_path, engine_v):
    stubs = _stub_tools(tmp_path, engine_v, "2024.2")
    result = _bitstream(tmp_path, f"{stubs}:{os.environ['PATH']}", RADIX=str(stubs / "radix"))
    assert result.returncode != 0
    assert "Vivado 2024.2 is not Vivado 2022.1" in result.stderr
    assert not (tmp_path / "build" / "overlay" / "radix.bit").exists()
