"""A PYNQ-Z2 with a Radix overlay (engine version 9), in software, under PYNQ 3.0.1's own code.

Nothing of PYNQ is replaced. The model plugs in where PYNQ's own tests plug in (pynq/tests/
mock_devices.py): ``pynq.Device.active_device`` becomes a :class:`ModelDevice`, a ``pynq.Device``
with the ``MEMORY_MAPPED`` capability whose ``mmap`` (what ``pynq.MMIO`` maps over /dev/mem on
the board) returns register windows: numpy arrays whose element reads and writes go to
register-level models instead of memory. So ``pynq.Overlay``, ``pynq.MMIO``,
``pynq.allocate``/``PynqBuffer`` (flush, invalidate, free), ``pynq.Clocks`` and
``pynq.Interrupt`` (its AXI interrupt controller driver and its UIO controller) all run as on
the board, and the register offsets, bits and call order the models see are PYNQ's and radix's.

* The overlay's metadata: a ``.hwh`` of the block design boards/pynq_z2/build_overlay.tcl builds
  (:func:`overlay_hwh`: the PS7 module of a Vivado-written PYNQ-Z2 ``.hwh``, ``resizer.hwh`` from
  pynqmetadata's tests, with the engine ``radix_bus_engine`` (its ports are the gateware's,
  passed in), the AXI interrupt controller, both interconnects and the reset, their nets and the
  address maps), written beside the ``.bit`` and read by the parser PYNQ 3.0.1 uses on the board
  for a full bitstream: ``RuntimeMetadataParser(Metadata(input=hwh))`` (pynqmetadata), as
  ``pynq.pl_server.embedded_device.BitstreamHandler.get_parser`` does (less the XRT xclbin it
  merges in, which needs XRT's ``xclbinutil``).
* :class:`EngineModel`: the bus-master engine's registers (``engine_spec.BUS_REGISTERS``); a
  START runs the command list with :func:`radix.command_exec.execute` over the DDR of the buffer
  that holds the window (what ``pynq.allocate`` gave, at its physical address), and the list
  finishes (STATUS, CYCLES, ERR_* and the counters) ``latency_s`` of wall-clock time later, or
  never (``mode="hang"``); CTRL.RESET returns to idle (never, ``mode="reset_stuck"``).
* :class:`AxiIntcModel`: the AXI interrupt controller's registers as PG099 describes them (ISR,
  IPR, IER, IAR, SIE, CIE, IVR, MER; a level-sensitive input re-asserts ISR while it is high),
  its input the engine's ``interrupt`` (STATUS.DONE|ERROR while CTRL.IRQ_EN), its output the
  PS's IRQ_F2P[0], GIC interrupt 61.
* :class:`UioModel`: the kernel's UIO device for that interrupt (the PYNQ image's ``fabric``
  node): a pseudo-terminal in raw mode that PYNQ's own ``pynq.UioController`` opens as it opens
  /dev/uioN; writing a nonzero word unmasks the interrupt, which then fires (the device becomes
  readable, with a count) once while the line is high, and is masked again. It is registered in
  PYNQ's own table of UIO controllers by raw IRQ (``_InterruptController._uio_devices``), where
  PYNQ looks before reading /proc/interrupts.
* DDR and the CPU cache: each buffer from ``pynq.allocate`` is a ``PynqBuffer`` (the CPU's view)
  with a separate DDR copy; ``flush`` copies CPU to DDR, ``invalidate`` DDR to CPU, and the
  engine reads and writes DDR only: a missing flush or invalidate shows as wrong data.
* The SLCR clock registers that ``pynq.Clocks`` reads and ``Overlay.download`` writes (the IO
  PLL at 1000 MHz as on the PYNQ-Z2). ``pynq.ps`` checks the CPU architecture before touching
  them: :func:`install` declares it a Zynq-7000 (``pynq.ps.CPU_ARCH = "armv7l"``) and drops
  ``pynq.Clocks``' cached instance, so it binds to this board.

The engine's and interrupt controller's registers and the UIO device are shared with timer and
reader threads (the engine finishing, the UIO unmask): one lock orders them.
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import os
import struct
import threading
import time
import tty
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pynq
import pynq.ps
import pynqmetadata
from pynq.buffer import PynqBuffer
from pynq.interrupt import _InterruptController
from pynq.metadata.runtime_metadata_parser import RuntimeMetadataParser
from pynq.pl_server.device import Device
from pynq.uio import UioController
from pynqmetadata.frontends import Metadata

from radix import overlay
from radix.command_exec import execute
from radix.engine_spec import (BUS_ENGINE_VERSION, BUS_REGISTERS, DEFAULT_CONFIG, ENGINE_ID, build_value,
                               bus_register, field_mask_of)

SLCR_BASE, SLCR_RANGE = 0xF8000000, 0x200
DDR_BASE = 0x16900000  # where the model's contiguous buffers start
PAGE = 4096
RESIZER_HWH = os.path.join(os.path.dirname(pynqmetadata.__file__), "tests", "hwhs", "resizer.hwh")
# FCLK_CLK0 divisors Vivado picks for a frequency (IO PLL 1000 MHz); 100 MHz as in PYNQ's base design
FCLK_DIVISORS = {100.0: (5, 2), 125.0: (8, 1), 142.857: (7, 1), 50.0: (10, 2)}
MODES = ("ok", "hang", "reset_stuck")
INTERRUPTS = ("intc", "direct", "none")  # through an AXI interrupt controller, straight to IRQ_F2P, unconnected
LATENCY_S = 0.02  # wall-clock time from START to the end of a command list, at the least
ENGINE_PORTS: list = []  # the engine's (name, "input"/"output", width), set by the test from the gateware

CTRL, STATUS = bus_register("CTRL").offset, bus_register("STATUS").offset
START, IRQ_EN, RESET = (field_mask_of("CTRL", name) for name in ("START", "IRQ_EN", "RESET"))
BUSY, DONE, ERROR = (field_mask_of("STATUS", name) for name in ("BUSY", "DONE", "ERROR"))
# the AXI interrupt controller's registers (PG099) and MER's bits
INTC_REGISTERS = {"ISR": 0x00, "IPR": 0x04, "IER": 0x08, "IAR": 0x0C, "SIE": 0x10, "CIE": 0x14, "IVR": 0x18,
                  "MER": 0x1C}
MER_ME, MER_HIE = 0x1, 0x2


# ---- the overlay's hardware description ---------------------------------------------------------

class _Design:
    """Modules, their ports and the nets between them, written out as Vivado writes a .hwh."""

    def __init__(self):
        self.modules: dict[str, dict] = {}
        self.nets: dict[str, list[tuple[str, str]]] = {}

    def module(self, instance: str, vlnv: str, *, attributes=None, parameters=None) -> dict:
        vendor, library, name, version = vlnv.split(":")
        attrs = {"COREREVISION": "1", "FULLNAME": f"/{instance}", "HWVERSION": version, "INSTANCE": instance,
                 "IPTYPE": "PERIPHERAL", "IS_ENABLE": "1", "MODCLASS": "PERIPHERAL", "MODTYPE": name, "VLNV": vlnv}
        attrs.update(attributes or {})
        entry = {"attributes": attrs, "parameters": list((parameters or {}).items()), "ports": {}, "buses": [],
                 "memory": [], "raw_parameters": None, "peripherals": []}
        self.modules[instance] = entry
        return entry

    @staticmethod
    def port(module: dict, name: str, direction: str, width: int = 1, sigis: str = "undef", **extra) -> None:
        module["ports"][name] = {"DIR": direction, "width": width, "SIGIS": sigis, **extra}

    def bus(self, module: dict, name: str, kind: str, portmap: dict, parameters=None) -> None:
        module["buses"].append({"NAME": name, "TYPE": kind, "VLNV": "xilinx.com:interface:aximm:1.0",
                                "portmap": portmap, "parameters": parameters or {}})

    def connect(self, net: str, *pins: tuple[str, str]) -> None:
        self.nets.setdefault(net, []).extend(pins)

    def mirror(self, net_prefix: str, a: tuple[str, dict], b: tuple[str, dict]) -> None:
        """Connect each signal of ``a`` (``(instance, {signal: port})``) to the same signal of ``b``."""
        (inst_a, ports_a), (inst_b, ports_b) = a, b
        for signal, port_a in ports_a.items():
            self.connect(f"{net_prefix}_{signal.lower()}", (inst_a, port_a), (inst_b, ports_b[signal]))

    def xml(self, name: str) -> str:
        net_of = {pin: net for net, pins in self.nets.items() for pin in pins}
        root = ET.Element("EDKSYSTEM", {"EDWVERSION": "1.2", "TIMESTAMP": "Thu Jan  1 00:00:00 2026",
                                        "VIVADOVERSION": "2022.1"})
        ET.SubElement(root, "SYSTEMINFO", {"ARCH": "zynq", "BOARD": "tul.com.tw:pynq-z2:part0:1.0", "DEVICE": "7z020",
                                           "NAME": name, "PACKAGE": "clg400", "SPEEDGRADE": "-1"})
        ET.SubElement(root, "EXTERNALPORTS")
        ET.SubElement(root, "EXTERNALINTERFACES")
        modules = ET.SubElement(root, "MODULES")
        for instance, entry in self.modules.items():
            mod = ET.SubElement(modules, "MODULE", entry["attributes"])
            params = ET.SubElement(mod, "PARAMETERS")
            for key, value in entry["parameters"]:
                ET.SubElement(params, "PARAMETER", {"NAME": key, "VALUE": str(value)})
            ports = ET.SubElement(mod, "PORTS")
            for port_name, spec in entry["ports"].items():
                attrs = {"DIR": spec["DIR"], "NAME": port_name, "SIGIS": spec["SIGIS"]}
                if spec["width"] > 1:
                    attrs.update(LEFT=str(spec["width"] - 1), RIGHT="0")
                attrs.update({k: v for k, v in spec.items() if k not in ("DIR", "width", "SIGIS")})
                net = net_of.get((instance, port_name))
                if net:
                    attrs["SIGNAME"] = net
                port = ET.SubElement(ports, "PORT", attrs)
                if net:
                    # as Vivado writes them: a sink lists the net's driver, the driver every sink
                    connections = ET.SubElement(port, "CONNECTIONS")
                    for other in self.nets[net]:
                        if self.modules[other[0]]["ports"][other[1]]["DIR"] != spec["DIR"]:
                            ET.SubElement(connections, "CONNECTION", {"INSTANCE": other[0], "PORT": other[1]})
            buses = ET.SubElement(mod, "BUSINTERFACES")
            for bus in entry["buses"]:
                if "element" in bus:
                    buses.append(bus["element"])
                    continue
                element = ET.SubElement(buses, "BUSINTERFACE", {
                    "BUSNAME": f"{instance}_{bus['NAME']}", "NAME": bus["NAME"], "TYPE": bus["TYPE"],
                    "VLNV": bus["VLNV"]})
                bus_params = ET.SubElement(element, "PARAMETERS")
                for key, value in bus["parameters"].items():
                    ET.SubElement(bus_params, "PARAMETER", {"NAME": key, "VALUE": str(value)})
                portmaps = ET.SubElement(element, "PORTMAPS")
                for logical, physical in bus["portmap"].items():
                    ET.SubElement(portmaps, "PORTMAP", {"LOGICAL": logical, "PHYSICAL": physical})
            if entry["memory"]:
                memory = ET.SubElement(mod, "MEMORYMAP")
                for memrange in entry["memory"]:
                    ET.SubElement(memory, "MEMRANGE", memrange)
            if entry["peripherals"]:
                peripherals = ET.SubElement(mod, "PERIPHERALS")
                for peripheral in entry["peripherals"]:
                    ET.SubElement(peripherals, "PERIPHERAL", {"INSTANCE": peripheral})
        return '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(root, encoding="unicode")


def _memrange(instance: str, master: str, slave: str, block: str, base: int, size: int, memtype: str) -> dict:
    return {"ADDRESSBLOCK": block, "BASENAME": "C_BASEADDR", "BASEVALUE": f"0x{base:08X}", "HIGHNAME": "C_HIGHADDR",
            "HIGHVALUE": f"0x{base + size - 1:08X}", "INSTANCE": instance, "IS_DATA": "TRUE", "IS_INSTRUCTION": "TRUE",
            "MASTERBUSINTERFACE": master, "MEMTYPE": memtype, "SLAVEBUSINTERFACE": slave}


AXI_LITE_SIGNALS = (("awaddr", "m", 9), ("awprot", "m", 3), ("awvalid", "m", 1), ("awready", "s", 1),
                    ("wdata", "m", 32), ("wstrb", "m", 4), ("wvalid", "m", 1), ("wready", "s", 1), ("bresp", "s", 2),
                    ("bvalid", "s", 1), ("bready", "m", 1), ("araddr", "m", 9), ("arprot", "m", 3),
                    ("arvalid", "m", 1), ("arready", "s", 1), ("rdata", "s", 32), ("rresp", "s", 2),
                    ("rvalid", "s", 1), ("rready", "m", 1))


def overlay_hwh(engine_ports, *, divisors=(5, 2), fclk_mhz: float = 100.0, interrupt: str = "intc",
                cells=("engine",), span: int = overlay.ENGINE_RANGE, engine_vlnv: str = overlay.ENGINE_VLNV) -> str:
    """The ``.hwh`` of the overlay build_overlay.tcl makes, as Vivado 2022.1 writes one.

    ``engine_ports`` are the engine's ``(name, "input"/"output", width)``; ``interrupt`` says how its
    interrupt reaches IRQ_F2P (:data:`INTERRUPTS`); ``cells`` the cells present besides the PS7,
    interconnects and reset ("engine"); ``span`` the engine's address range; ``engine_vlnv`` its type.
    """
    if interrupt not in INTERRUPTS:
        raise ValueError(f"interrupt {interrupt!r}: one of {INTERRUPTS}")
    design = _Design()
    clock_hz = int(round(fclk_mhz * 1e6))
    clock_pins = [("ps7", "FCLK_CLK0")]

    # the PS7: a Vivado-written PYNQ-Z2 PS7's parameters, ports and bus interfaces
    source = next(m for m in ET.parse(RESIZER_HWH).getroot().iter("MODULE") if m.get("MODTYPE") == "processing_system7")
    ps_attrs = dict(source.attrib, FULLNAME="/ps7", INSTANCE="ps7")
    ps = design.module("ps7", ps_attrs["VLNV"], attributes=ps_attrs)
    patch = {"PCW_FCLK0_PERIPHERAL_DIVISOR0": divisors[0], "PCW_FCLK0_PERIPHERAL_DIVISOR1": divisors[1],
             "PCW_FPGA0_PERIPHERAL_FREQMHZ": overlay.format_mhz(fclk_mhz),
             "PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ": f"{fclk_mhz:.6f}", "PCW_USE_S_AXI_HP0": 1,
             "C_S_AXI_HP0_DATA_WIDTH": overlay.HP_DATA_BITS, "PCW_USE_M_AXI_GP0": 1,
             "PCW_USE_FABRIC_INTERRUPT": int(interrupt != "none"), "PCW_IRQ_F2P_INTR": int(interrupt != "none")}
    ps["parameters"] = [(p.get("NAME"), patch.get(p.get("NAME"), p.get("VALUE"))) for p in source.find("PARAMETERS")]
    gp0, hp0 = {}, {}
    for port in source.find("PORTS"):
        name = port.get("NAME")
        width = int(port.get("LEFT")) - int(port.get("RIGHT")) + 1 if port.get("LEFT") is not None else 1
        extra = {"CLKFREQUENCY": str(clock_hz)} if port.get("SIGIS") == "clk" else {}
        design.port(ps, name, port.get("DIR"), width, port.get("SIGIS", "undef"), **extra)
        if name.endswith("_ACLK"):
            clock_pins.append(("ps7", name))
        elif name.startswith("M_AXI_GP0_"):
            gp0[name[len("M_AXI_GP0_"):]] = name
        elif name.startswith("S_AXI_HP0_"):
            hp0[name[len("S_AXI_HP0_"):]] = name
    if interrupt != "none":
        design.port(ps, "IRQ_F2P", "I", 1, "INTERRUPT", SENSITIVITY="LEVEL_HIGH")
    for bus in source.find("BUSINTERFACES"):
        element = copy.deepcopy(bus)
        element.set("BUSNAME", {"M_AXI_GP0": "ps7_M_AXI_GP0", "S_AXI_HP0": "mem_ic_M00_AXI"}.get(bus.get("NAME"),
                                                                                             "__NOC__"))
        ps["buses"].append({"element": element})

    # the reset
    rst = design.module("rst_fclk0", "xilinx.com:ip:proc_sys_reset:5.0")
    for name, direction, sigis in (("slowest_sync_clk", "I", "clk"), ("ext_reset_in", "I", "rst"),
                                   ("aux_reset_in", "I", "rst"), ("mb_debug_sys_rst", "I", "rst"),
                                   ("dcm_locked", "I", "undef"), ("mb_reset", "O", "rst"),
                                   ("bus_struct_reset", "O", "rst"), ("peripheral_reset", "O", "rst"),
                                   ("interconnect_aresetn", "O", "rst"), ("peripheral_aresetn", "O", "rst")):
        design.port(rst, name, direction, 1, sigis, **({"CLKFREQUENCY": str(clock_hz)} if sigis == "clk" else {}))
    clock_pins.append(("rst_fclk0", "slowest_sync_clk"))
    design.connect("ps7_FCLK_RESET0_N", ("ps7", "FCLK_RESET0_N"), ("rst_fclk0", "ext_reset_in"))

    def interconnect(instance: str, slaves: dict, masters: dict) -> None:
        """An axi_interconnect whose SIxx/MIxx mirror the given ``{prefix: {signal: (dir, width)}}``."""
        ic = design.module(instance, "xilinx.com:ip:axi_interconnect:2.1",
                           attributes={"IPTYPE": "BUS", "MODCLASS": "BUS", "COREREVISION": "27"},
                           parameters={"NUM_SI": len(slaves), "NUM_MI": len(masters)})
        for pin, sigis in (("ACLK", "clk"), ("ARESETN", "rst")):
            design.port(ic, pin, "I", 1, sigis, **({"CLKFREQUENCY": str(clock_hz)} if sigis == "clk" else {}))
        clock_pins.append((instance, "ACLK"))
        for kind, group in (("SLAVE", slaves), ("MASTER", masters)):
            for prefix, signals in group.items():
                design.port(ic, f"{prefix}_ACLK", "I", 1, "clk", CLKFREQUENCY=str(clock_hz))
                design.port(ic, f"{prefix}_ARESETN", "I", 1, "rst")
                clock_pins.append((instance, f"{prefix}_ACLK"))
                portmap = {}
                for signal, (direction, width) in signals.items():
                    design.port(ic, f"{prefix}_AXI_{signal.lower()}", direction, width)
                    portmap[signal.upper()] = f"{prefix}_AXI_{signal.lower()}"
                design.bus(ic, f"{prefix}_AXI", kind, portmap)

    def flipped(ports: dict, module: dict) -> dict:
        return {signal: ("O" if module["ports"][port]["DIR"] == "I" else "I", module["ports"][port]["width"])
                for signal, port in ports.items()}

    # the engine: its ports as the gateware has them, s_axi on M_AXI_GP0, m_axi to S_AXI_HP0
    engine_s, engine_m = {}, {}
    if "engine" in cells:
        engine = design.module("engine", engine_vlnv)
        for name, direction, width in engine_ports:
            sigis = {"clk": "clk", "rst": "rst", "interrupt": "INTERRUPT"}.get(name, "undef")
            extra = {"clk": {"CLKFREQUENCY": str(clock_hz)}, "rst": {"POLARITY": "ACTIVE_HIGH"},
                     "interrupt": {"SENSITIVITY": "LEVEL_HIGH"}}.get(name, {})
            design.port(engine, name, "I" if direction == "input" else "O", width, sigis, **extra)
            if name.startswith("s_axi_"):
                engine_s[name[len("s_axi_"):].upper()] = name
            elif name.startswith("m_axi_"):
                engine_m[name[len("m_axi_"):].upper()] = name
        design.bus(engine, "s_axi", "SLAVE", engine_s, {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": 32,
                                                        "ADDR_WIDTH": 12, "FREQ_HZ": clock_hz})
        design.bus(engine, "m_axi", "MASTER", engine_m, {"PROTOCOL": "AXI4", "DATA_WIDTH": overlay.HP_DATA_BITS,
                                                         "ADDR_WIDTH": 32, "ID_WIDTH": 1, "MAX_BURST_LENGTH": 16,
                                                         "FREQ_HZ": clock_hz})
        engine["memory"].append(_memrange("ps7", "m_axi", overlay.HP_PORT, overlay.HP_SEGMENT, overlay.DDR_BASE,
                                          overlay.DDR_RANGE, "MEMORY"))
        clock_pins.append(("engine", "clk"))
        design.connect("rst_fclk0_peripheral_reset", ("rst_fclk0", "peripheral_reset"), ("engine", "rst"))
        ps["memory"].append(_memrange("engine", "M_AXI_GP0", "s_axi", "reg0", overlay.ENGINE_BASE, span, "REGISTER"))
        ps["peripherals"].append("engine")

    # the interrupt controller between the engine and IRQ_F2P
    intc_s = {}
    if interrupt == "intc":
        intc = design.module(overlay.INTC_CELL, overlay.INTC_VLNV, parameters={
            "C_NUM_INTR_INPUTS": 1, "C_KIND_OF_INTR": "0xFFFFFFFE", "C_IRQ_IS_LEVEL": 1, "C_HAS_IPR": 1,
            "C_HAS_SIE": 1, "C_HAS_CIE": 1, "C_HAS_IVR": 1})
        for name, direction, sigis in (("s_axi_aclk", "I", "clk"), ("s_axi_aresetn", "I", "rst"),
                                       ("intr", "I", "INTERRUPT"), ("irq", "O", "INTERRUPT")):
            extra = {"CLKFREQUENCY": str(clock_hz)} if sigis == "clk" else (
                {"SENSITIVITY": "LEVEL_HIGH"} if sigis == "INTERRUPT" else {})
            design.port(intc, name, direction, 1, sigis, **extra)
        for signal, side, width in AXI_LITE_SIGNALS:
            design.port(intc, f"s_axi_{signal}", "I" if side == "m" else "O", width)
            intc_s[signal.upper()] = f"s_axi_{signal}"
        design.bus(intc, "s_axi", "SLAVE", intc_s, {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": 32, "ADDR_WIDTH": 9})
        clock_pins.append((overlay.INTC_CELL, "s_axi_aclk"))
        ps["memory"].append(_memrange(overlay.INTC_CELL, "M_AXI_GP0", "s_axi", "Reg", overlay.INTC_BASE,
                                      overlay.INTC_RANGE, "REGISTER"))
        ps["peripherals"].append(overlay.INTC_CELL)
        design.connect("axi_intc_irq", (overlay.INTC_CELL, "irq"), ("ps7", "IRQ_F2P"))
        if "engine" in cells:
            design.connect("engine_interrupt", ("engine", "interrupt"), (overlay.INTC_CELL, "intr"))
    elif interrupt == "direct" and "engine" in cells:
        design.connect("engine_interrupt", ("engine", "interrupt"), ("ps7", "IRQ_F2P"))

    # the interconnects: GP0 to the register slaves, the engine's master to HP0
    masters = {}
    if engine_s:
        masters["M00"] = flipped(engine_s, design.modules["engine"])
    if intc_s:
        masters[f"M{len(masters):02d}"] = flipped(intc_s, design.modules[overlay.INTC_CELL])
    interconnect("periph_ic", {"S00": flipped(gp0, ps)}, masters)
    design.mirror("ps7_M_AXI_GP0", ("ps7", gp0), ("periph_ic", {s: f"S00_AXI_{s.lower()}" for s in gp0}))
    for prefix, instance, ports in (("M00", "engine", engine_s), ("M01" if engine_s else "M00", overlay.INTC_CELL,
                                                                   intc_s)):
        if ports:
            design.mirror(f"periph_ic_{prefix}_AXI", ("periph_ic", {s: f"{prefix}_AXI_{s.lower()}" for s in ports}),
                          (instance, ports))
    if engine_m:
        interconnect("mem_ic", {"S00": flipped(engine_m, design.modules["engine"])}, {"M00": flipped(hp0, ps)})
        design.mirror("engine_m_axi", ("engine", engine_m), ("mem_ic", {s: f"S00_AXI_{s.lower()}" for s in engine_m}))
        design.mirror("mem_ic_M00_AXI", ("mem_ic", {s: f"M00_AXI_{s.lower()}" for s in hp0}), ("ps7", hp0))
    resets = [(inst, port) for inst, entry in design.modules.items() for port in entry["ports"]
              if inst != "rst_fclk0" and (port.endswith("_ARESETN") or port == "s_axi_aresetn")]
    design.connect("rst_fclk0_peripheral_aresetn", ("rst_fclk0", "peripheral_aresetn"), *resets)
    design.connect("rst_fclk0_interconnect_aresetn", ("rst_fclk0", "interconnect_aresetn"),
                   *[(inst, "ARESETN") for inst in ("periph_ic", "mem_ic") if inst in design.modules])
    design.connect("ps7_FCLK_CLK0", *[pin for pin in clock_pins if pin[0] in design.modules])
    return design.xml("radix")


# ---- register-level models ----------------------------------------------------------------------

class RegisterWindow(np.ndarray):
    """What ``pynq.MMIO`` gets from ``Device.mmap``: a uint32 array whose single-element reads and
    writes are register accesses of ``model`` (``read(offset)``, ``write(offset, value)``)."""

    def __new__(cls, model, length: int):
        window = np.zeros(length // 4, dtype=np.uint32).view(cls)
        window.model = model
        return window

    def __array_finalize__(self, obj):
        self.model = getattr(obj, "model", None)

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"register window: only one 32-bit register at a time, not {index!r}")
        return np.uint32(self.model.read(int(index) * 4))

    def __setitem__(self, index, value):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"register window: only one 32-bit register at a time, not {index!r}")
        self.model.write(int(index) * 4, int(value))


class EngineModel:
    """The bus-master engine's AXI4-Lite registers in front of :func:`radix.command_exec.execute`."""

    def __init__(self, board: Board):
        self.board = board
        self.by_offset = {reg.offset: reg for reg in BUS_REGISTERS}
        self.regs = {reg.offset: build_value(reg, board.config) or 0 for reg in BUS_REGISTERS}
        self.regs[bus_register("ID").offset] = board.ident
        self.regs[bus_register("VERSION").offset] = board.version
        self.pending = None  # (finish time, ExecResult) of the running list; ("hang", None) never ends
        self.timer: threading.Timer | None = None
        self.starts = 0
        self.results: list = []

    def _set(self, name: str, value: int) -> None:
        self.regs[bus_register(name).offset] = int(value) & 0xFFFFFFFF

    def read(self, offset: int) -> int:
        with self.board.lock:
            self.board.access("engine", "read", offset)
            self._advance()
            if offset not in self.by_offset:
                self.board.unexpected.append(f"engine read at 0x{offset:03X}")
                return 0
            return self.regs[offset]

    def write(self, offset: int, value: int) -> None:
        with self.board.lock:
            self.board.access("engine", "write", offset, value)
            self._advance()
            reg = self.by_offset.get(offset)
            if reg is None:
                self.board.unexpected.append(f"engine write at 0x{offset:03X}")
                return
            if reg.access == "ro":
                return
            if offset == CTRL:
                self.regs[CTRL] = value & IRQ_EN
                if value & RESET:
                    self._reset()
                elif value & START and not self.regs[STATUS] & BUSY:
                    self._start()
            elif offset == STATUS:
                self.regs[STATUS] &= ~(value & (DONE | ERROR))
            else:
                self.regs[offset] = value & 0xFFFFFFFF
            self.board.update_irq()

    def line(self) -> bool:
        """The ``interrupt`` output: STATUS.DONE or STATUS.ERROR while CTRL.IRQ_EN."""
        return bool(self.regs[STATUS] & (DONE | ERROR)) and bool(self.regs[CTRL] & IRQ_EN)

    def _reg(self, name: str) -> int:
        return self.regs[bus_register(name).offset]

    def _start(self) -> None:
        self.starts += 1
        for name in ("CYCLES", "SATURATED", "CMD_DONE", "ERR_CODE", "ERR_INDEX", "ERR_ADDR", "BEATS_READ",
                     "BEATS_WRITTEN"):
            self._set(name, 0)
        self.regs[STATUS] = (self.regs[STATUS] & ~(DONE | ERROR)) | BUSY
        if self.board.mode in ("hang", "reset_stuck"):
            self.pending = ("hang", None)
            return
        memory, base = self.board.device.engine_memory(self._reg("WIN_BASE"))
        result = execute(memory, cmd_base=self._reg("CMD_BASE"), cmd_count=self._reg("CMD_COUNT"),
                         win_base=self._reg("WIN_BASE"), win_size=self._reg("WIN_SIZE"), config=self.board.config,
                         base=base)
        self.results.append(result)
        delay = max(self.board.latency_s, result.cycles / (self.board.fclk_mhz * 1e6))
        self.pending = (time.monotonic() + delay, result)
        self.timer = threading.Timer(delay, self._timer)
        self.timer.daemon = True
        self.timer.start()

    def _timer(self) -> None:
        with self.board.lock:
            self._advance()
            self.board.update_irq()

    def _advance(self) -> None:
        """Finish the running list once its time has come."""
        if self.pending is None or self.pending[0] == "hang" or time.monotonic() < self.pending[0]:
            return
        result = self.pending[1]
        self.pending = None
        self.regs[STATUS] = DONE if result.done else ERROR
        for name, value in (("CYCLES", result.cycles), ("SATURATED", result.saturated),
                            ("CMD_DONE", result.commands_done), ("ERR_CODE", result.error),
                            ("ERR_INDEX", result.error_index), ("ERR_ADDR", result.error_addr),
                            ("BEATS_READ", result.beats_read), ("BEATS_WRITTEN", result.beats_written)):
            self._set(name, value)

    def _reset(self) -> None:
        if self.board.mode == "reset_stuck":
            return  # BUSY never falls
        if self.timer is not None:
            self.timer.cancel()
        self.pending = None
        for name in ("STATUS", "CYCLES", "SATURATED", "CMD_DONE", "ERR_CODE", "ERR_INDEX", "ERR_ADDR", "BEATS_READ",
                     "BEATS_WRITTEN"):
            self._set(name, 0)


class AxiIntcModel:
    """The AXI interrupt controller (PG099) with one level-sensitive input, the engine's interrupt."""

    def __init__(self, board: Board):
        self.board = board
        self.names = {offset: name for name, offset in INTC_REGISTERS.items()}
        self.isr = self.ier = self.mer = 0

    def sample(self) -> None:
        """A level input sets ISR while it is high, once hardware interrupts are enabled (MER.HIE)."""
        if self.mer & MER_HIE and self.board.engine.line():
            self.isr |= 1

    def output(self) -> bool:
        self.sample()
        return bool(self.mer & MER_ME) and bool(self.isr & self.ier)

    def read(self, offset: int) -> int:
        with self.board.lock:
            self.board.access("intc", "read", offset)
            self.sample()
            name = self.names.get(offset)
            if name in ("ISR", "IER", "MER"):
                return getattr(self, name.lower())
            if name == "IPR":
                return self.isr & self.ier
            if name == "IVR":
                return 0 if self.isr & self.ier & 1 else 0xFFFFFFFF
            self.board.unexpected.append(f"axi_intc read at 0x{offset:02X}")
            return 0

    def write(self, offset: int, value: int) -> None:
        with self.board.lock:
            self.board.access("intc", "write", offset, value)
            name = self.names.get(offset)
            if name == "IER":
                self.ier = value & 1
            elif name == "SIE":
                self.ier |= value & 1
            elif name == "CIE":
                self.ier &= ~value & 1
            elif name == "IAR":
                self.isr &= ~value  # a level input still high sets it again (sample)
            elif name == "MER":
                self.mer = value & (MER_ME | MER_HIE)
            elif name == "ISR" and not self.mer & MER_HIE:
                self.isr = value & 1
            elif name not in ("ISR",):
                self.board.unexpected.append(f"axi_intc write at 0x{offset:02X}")
            self.board.update_irq()


class UioModel:
    """The UIO device of IRQ_F2P[0] as PYNQ's ``UioController`` uses /dev/uioN: a raw pseudo-terminal."""

    def __init__(self, board: Board):
        self.board = board
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.unmasked = False
        self.count = 0
        self.unmasks = 0
        self.closed = False
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        """The kernel side of a write to /dev/uioN: a nonzero word unmasks the interrupt."""
        while True:
            try:
                data = os.read(self.master, 4)
            except OSError:
                return
            if not data:
                return
            with self.board.lock:
                if any(data):
                    self.unmasked = True
                    self.unmasks += 1
                self.board.update_irq()

    def fire_if(self, line: bool) -> None:
        """The GIC and the UIO driver: a high line on an unmasked interrupt makes /dev/uioN readable
        (the interrupt count) and masks the interrupt until the next unmask."""
        if line and self.unmasked and not self.closed:
            self.unmasked = False
            self.count += 1
            self.board.fired += 1
            os.write(self.master, struct.pack("<I", self.count))

    def close(self) -> None:
        self.closed = True
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class ModelDevice(Device):
    """A ``pynq.Device`` for the model board: memory-mapped register windows, DDR and the cache."""

    def __init__(self, board: Board):
        super().__init__("radix-model-pynq-z2")
        self.capabilities = {"MEMORY_MAPPED": True}
        self.board = board
        self.ddr: dict[int, tuple[int, np.ndarray]] = {}  # bo -> (physical address, DDR bytes)
        self.freed: list[int] = []
        self._next_address = DDR_BASE
        self.flushes = self.invalidates = 0
        self.flushed_bytes = self.invalidated_bytes = 0

    # -- what pynq.MMIO maps ------------------------------------------------------------------
    def mmap(self, base_addr, length):
        for base, size, target in ((overlay.ENGINE_BASE, overlay.ENGINE_RANGE, "engine"),
                                   (overlay.INTC_BASE, overlay.INTC_RANGE, "intc"), (SLCR_BASE, SLCR_RANGE, "slcr")):
            if base == base_addr and length <= size:
                if target == "slcr":
                    return self.board.slcr
                return RegisterWindow(getattr(self.board, target), length)
        raise RuntimeError(f"model board: nothing mapped at 0x{base_addr:08X} (+{length} bytes)")

    # -- pynq.allocate and PynqBuffer's cache maintenance --------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        buffer = PynqBuffer(shape, dtype, device=self, device_address=self._next_address, bo=len(self.ddr) + 1,
                            coherent=False)
        # the CPU's view starts with what the allocator left (not zeros); DDR with other garbage
        buffer.view(np.uint8)[:] = 0xA5
        self.ddr[buffer.bo] = (self._next_address, np.full(buffer.nbytes, 0x5A, dtype=np.uint8))
        # freebuffer() hands the pointer back to return_to, as PYNQ's pooled allocations do;
        # freed=True keeps its munmap/xclFreeBO branch (for XRT's own mappings) off numpy's memory
        buffer.memory, buffer.pointer, buffer.return_to, buffer.freed = self, self._next_address, self, True
        self._next_address += -(-buffer.nbytes // PAGE) * PAGE
        return buffer

    def return_pointer(self, pointer):
        self.freed.append(pointer)

    def flush(self, bo, offset, vaddr, length):
        self.flushes += 1
        self.flushed_bytes += length
        ctypes.memmove(self.ddr[bo][1].ctypes.data + offset, vaddr, length)

    def invalidate(self, bo, offset, vaddr, length):
        self.invalidates += 1
        self.invalidated_bytes += length
        ctypes.memmove(vaddr, self.ddr[bo][1].ctypes.data + offset, length)

    def engine_memory(self, address: int) -> tuple[np.ndarray, int]:
        """The DDR words of the live buffer holding ``address`` and its physical address (the
        engine's view; empty memory at ``address`` when no buffer holds it: every access faults)."""
        for bo, (base, memory) in self.ddr.items():
            if base <= address < base + memory.size and base not in self.freed:
                return memory.view(np.uint64), base
        return np.zeros(0, dtype=np.uint64), address - address % 8

    # -- the overlay ---------------------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name):
        """What PYNQ 3.0.1's embedded device makes of a full bitstream's .hwh."""
        hwh = os.path.splitext(bitfile_name)[0] + ".hwh"
        parser = RuntimeMetadataParser(Metadata(input=hwh))
        parser.refresh_hierarchy_dict()
        return parser

    def download(self, bitstream, parser=None):
        self.board.downloads.append(bitstream.bitfile_name)
        self.board.power_on()
        self.post_download(bitstream, parser)


class Board:
    """The model PYNQ-Z2: engine, interrupt controller, UIO, DDR, clocks and the overlay's metadata.

    ``mode`` (:data:`MODES`): ``ok``; ``hang`` (a START never finishes); ``reset_stuck`` (the
    engine hangs and CTRL.RESET never clears BUSY). ``interrupt`` (:data:`INTERRUPTS`) is how the
    overlay routes the engine's interrupt; ``uio=False`` leaves the image without the UIO device
    PYNQ needs for it. ``ident``/``version`` are what ID and VERSION read, ``cells`` the overlay's
    cells besides the PS7 and interconnects, ``span`` the engine's address range, ``engine_vlnv``
    its type. ``latency_s`` is the shortest time a command list takes.
    """

    def __init__(self, *, mode: str = "ok", interrupt: str = "intc", uio: bool = True, ident: int = ENGINE_ID,
                 version: int = BUS_ENGINE_VERSION, cells=("engine",), span: int = overlay.ENGINE_RANGE,
                 engine_vlnv: str = overlay.ENGINE_VLNV, fclk_mhz: float = 100.0, latency_s: float = LATENCY_S,
                 config=DEFAULT_CONFIG, engine_ports=None):
        if mode not in MODES:
            raise ValueError(f"model board: mode {mode!r}, choose one of {', '.join(MODES)}")
        self.mode, self.interrupt, self.uio_present = mode, interrupt, uio
        self.ident, self.version, self.cells, self.span, self.engine_vlnv = ident, version, cells, span, engine_vlnv
        self.fclk_mhz, self.latency_s, self.config = fclk_mhz, latency_s, config
        self.engine_ports = list(engine_ports or ENGINE_PORTS)
        self.fclk_divisors = FCLK_DIVISORS[fclk_mhz]
        self.lock = threading.RLock()
        self.log: list[tuple] = []  # (region, "read"/"write", offset, value)
        self.unexpected: list[str] = []
        self.downloads: list[str] = []
        self.fired = 0
        self.slcr = np.zeros(SLCR_RANGE // 4, dtype=np.uint32)
        self.slcr[0x100 // 4] = 26 << 12  # ARM_PLL_CTRL: FDIV 26 (PYNQ base design)
        self.slcr[0x104 // 4] = 21 << 12  # DDR_PLL_CTRL: FDIV 21
        self.slcr[0x108 // 4] = 20 << 12  # IO_PLL_CTRL: FDIV 20, 50 MHz x 20 = 1000 MHz
        self.slcr[0x170 // 4] = 2 << 20 | 5 << 8  # FPGA0_CLK_CTRL at boot: IO PLL / 5 / 2
        self.uio = UioModel(self) if uio and interrupt == "intc" else None
        self.uio_controller = None  # PYNQ's UioController over it, made by install()
        self.power_on()
        self.device = ModelDevice(self)

    def power_on(self) -> None:
        """A freshly configured PL: engine and interrupt controller in their reset state."""
        with self.lock:
            old = getattr(self, "engine", None)
            if old is not None and old.timer is not None:
                old.timer.cancel()
            self.engine = EngineModel(self)
            self.intc = AxiIntcModel(self)

    def access(self, region: str, op: str, offset: int, value: int | None = None) -> None:
        self.log.append((region, op, offset, value))

    def update_irq(self) -> None:
        """Propagate the engine's interrupt through the controller (or straight) to the GIC."""
        with self.lock:
            if self.interrupt == "intc":
                line = self.intc.output()
            else:
                line = self.interrupt == "direct" and self.engine.line()
            if self.uio is not None:
                self.uio.fire_if(line)

    def hwh(self) -> str:
        return overlay_hwh(self.engine_ports, divisors=self.fclk_divisors, fclk_mhz=self.fclk_mhz,
                           interrupt=self.interrupt, cells=self.cells, span=self.span, engine_vlnv=self.engine_vlnv)

    def write_overlay(self, directory, name: str = "radix") -> str:
        """``name.bit`` and ``name.hwh`` of this board's overlay in ``directory``; the .bit's path."""
        os.makedirs(directory, exist_ok=True)
        bit = os.path.join(directory, name + ".bit")
        with open(bit, "wb") as handle:
            handle.write(b"bit")  # the model reads no bitstream
        with open(os.path.join(directory, name + ".hwh"), "w") as handle:
            handle.write(self.hwh())
        return bit

    # -- what the tests read back ----------------------------------------------------------------
    def offsets(self, region: str, op: str | None = None) -> set[int]:
        return {entry[2] for entry in self.log if entry[0] == region and (op is None or entry[1] == op)}

    def count(self, region: str, since: int = 0) -> int:
        """Register accesses of ``region`` in the log from index ``since``."""
        return sum(1 for entry in self.log[since:] if entry[0] == region)

    def close(self) -> None:
        """Stop the engine's timer; take the UIO device out of PYNQ's event loop and table, and close it."""
        if self.engine.timer is not None:
            self.engine.timer.cancel()
        if self.uio_controller is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                asyncio.get_event_loop().remove_reader(self.uio_controller.uio)  # its __del__ closes the file
            if _InterruptController._uio_devices.get(overlay.IRQ_F2P_FIRST) is self.uio_controller:
                del _InterruptController._uio_devices[overlay.IRQ_F2P_FIRST]
        if self.uio is not None:
            self.uio.close()


def install(board: Board) -> Board:
    """Make ``board`` the device every PYNQ call without an explicit device uses, and its UIO
    device the one PYNQ finds for IRQ_F2P[0]."""
    pynq.ps.CPU_ARCH = "armv7l"  # pynq.Clocks serves Zynq-7000 clocks only on a Zynq-7000
    if hasattr(pynq.ps.Clocks, "_real_instance"):
        del pynq.ps.Clocks._real_instance  # bind pynq.Clocks to this board's SLCR
    Device.active_device = board.device
    # PYNQ's table of UIO controllers by raw IRQ: what /dev/uioN PYNQ opened for IRQ 61
    _InterruptController._uio_devices.pop(overlay.IRQ_F2P_FIRST, None)
    _InterruptController._controllers.clear()  # a new board: PYNQ drops them on an overlay change too
    if board.uio is not None:
        if board.uio_controller is None:  # one controller per device, as PYNQ keeps one per raw IRQ
            board.uio_controller = UioController(board.uio.path)
        _InterruptController._uio_devices[overlay.IRQ_F2P_FIRST] = board.uio_controller
    return board
