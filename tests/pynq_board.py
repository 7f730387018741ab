"""A PYNQ-Z2 with a Radix overlay, in software, under PYNQ 3.0.1's own code: the tests' only pynq stand-in.

Nothing of PYNQ is replaced. The model plugs in where PYNQ's own tests plug in (pynq/tests/
mock_devices.py): ``pynq.Device.active_device`` becomes a :class:`ModelDevice`, a ``pynq.Device``
with the ``MEMORY_MAPPED`` capability whose ``mmap`` (what ``pynq.MMIO`` maps over /dev/mem on
the board) returns register windows: numpy arrays whose element reads and writes go to
register-level models instead of memory. So ``pynq.Overlay``, its driver binding by VLNV,
``pynq.lib.dma.DMA`` with its ``_SDMAChannel`` (start, transfer, the status bits it tests),
``pynq.MMIO``, ``pynq.allocate``/``PynqBuffer`` (flush, invalidate, free) and ``pynq.Clocks``
all run as on the board, and the register offsets, bits and call order the models see are PYNQ's
and radix's.

* :class:`AxiDmaModel`: the AXI DMA in simple (direct register) mode as PG021 describes it:
  DMACR (RS, Reset), DMASR (Halted, Idle, the error bits, IOC_Irq), SA/DA (+MSB), LENGTH; writing
  LENGTH starts a transfer; a soft reset (DMACR.Reset on either channel) takes a few register
  accesses, resets both channels and drops their transfers; S2MM_LENGTH reads the bytes actually
  written. Register offsets and bit positions are those of the axi_dma:7.1 register map in a
  Vivado-written .hwh (below). Transfers move data between the engine model and "DDR".
* :class:`EngineModel`: the engine's registers in front of the reference backend
  (:class:`radix.transport.ReferenceTransport`), which runs each job with the golden model once
  its input stream is complete and drops everything on CTRL.RESET.
* DDR and the CPU cache: each buffer from ``pynq.allocate`` is a ``PynqBuffer`` (the CPU's view)
  with a separate DDR copy; ``flush`` copies CPU to DDR, ``invalidate`` DDR to CPU, and the DMA
  model reads and writes DDR only: a missing flush or invalidate shows as wrong data.
* The SLCR clock registers that ``pynq.Clocks`` reads and ``Overlay.download`` writes (the IO
  PLL at 1000 MHz as on the PYNQ-Z2). ``pynq.ps`` checks the CPU architecture before touching
  them: :func:`install` declares it a Zynq-7000 (``pynq.ps.CPU_ARCH = "armv7l"``, the one module
  global it sets) and drops ``pynq.Clocks``' cached instance, so it binds to this board.
* The overlay's metadata: PYNQ's own .hwh parser (``pynq.pl_server.hwh_parser._HWHZynq``) run on
  a Vivado-written PYNQ-Z2 .hwh with an ``axi_dma:7.1`` in simple mode (``resizer.hwh``, shipped
  with pynqmetadata's tests), its DMA renamed ``axi_dma`` and configured as
  boards/pynq_z2/build_overlay.tcl configures it, the HLS core replaced by the engine's entry.

Every register access is one step of model time, and transfers complete a few steps after they
start, so every polling loop of the transport and of PYNQ actually polls.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import os

import numpy as np
import pynq
import pynq.ps
import pynqmetadata
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device
from pynq.pl_server.hwh_parser import _HWHZynq

from radix.engine_spec import DEFAULT_CONFIG, ENGINE_ID, field_mask, register
from radix.transport import ReferenceTransport

ENGINE_BASE, ENGINE_RANGE = 0x43C00000, 0x1000
DMA_BASE, DMA_RANGE = 0x40400000, 0x10000
SLCR_BASE, SLCR_RANGE = 0xF8000000, 0x200
DDR_BASE = 0x16900000  # where the model's contiguous buffers start
PAGE = 4096
TRANSFER_STEPS = 3  # register accesses between starting a transfer and its completion
RESET_STEPS = 2  # register accesses a DMA soft reset takes
RESIZER_HWH = os.path.join(os.path.dirname(pynqmetadata.__file__), "tests", "hwhs", "resizer.hwh")
# what build_overlay.tcl sets on axi_dma (CONFIG.c_* -> the .hwh's parameters)
DMA_PARAMETERS = {"c_include_sg": "0", "c_sg_length_width": "23", "c_include_mm2s": "1", "c_include_s2mm": "1",
                  "c_m_axi_mm2s_data_width": "64", "c_m_axis_mm2s_tdata_width": "64",
                  "c_m_axi_s2mm_data_width": "64", "c_s_axis_s2mm_tdata_width": "64",
                  "c_mm2s_burst_size": "16", "c_s2mm_burst_size": "16", "c_addr_width": "32"}
# FCLK_CLK0 divisors Vivado picks for a frequency (IO PLL 1000 MHz); 100 MHz as in PYNQ's base design
FCLK_DIVISORS = {100.0: (5, 2), 125.0: (8, 1), 142.857: (7, 1), 50.0: (10, 2)}
MODES = ("ok", "short", "long", "hang", "slave_error", "stuck_input", "reset_stuck")
DMASR_HALTED, DMASR_IDLE, DMASR_INTERR, DMASR_SLVERR, DMASR_IOC, DMASR_ERR_IRQ = 0x1, 0x2, 0x10, 0x20, 0x1000, 0x4000
DMACR_RS, DMACR_RESET = 0x1, 0x4
DMACR_RESET_VALUE = 0x00010000  # IRQThreshold = 1 (PG021)


@functools.lru_cache(maxsize=None)
def dma_register_map() -> dict:
    """``{name: offset}`` of the AXI DMA's registers as the Vivado-written .hwh lists them."""
    parser = _HWHZynq(RESIZER_HWH)
    (entry,) = [v for v in parser.ip_dict.values() if v["type"] == "xilinx.com:ip:axi_dma:7.1"]
    return {name: reg["address_offset"] for name, reg in entry["registers"].items()}


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
    """The engine's AXI4-Lite registers in front of the reference backend."""

    def __init__(self, board: Board):
        self.board = board
        self.reference = ReferenceTransport(DEFAULT_CONFIG)

    def read(self, offset: int) -> int:
        self.board.access("engine", "read", offset)
        if offset == register("ID").offset:
            return self.board.ident
        return self.reference.read(offset)

    def write(self, offset: int, value: int) -> None:
        self.board.access("engine", "write", offset, value)
        self.reference.write(offset, value)
        if offset == register("CTRL").offset and value & field_mask("CTRL", "RESET"):
            self.board.output.clear()  # the engine drops what it had not sent

    @property
    def busy(self) -> bool:
        return bool(self.reference.read(register("STATUS").offset) & field_mask("STATUS", "BUSY"))


class Channel:
    """One DMA channel's registers and its transfer in flight."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.dmacr, self.dmasr, self.address, self.address_msb, self.length = DMACR_RESET_VALUE, DMASR_HALTED, 0, 0, 0
        self.transfer = None  # {"address", "bytes", "steps"} while a transfer runs


class AxiDmaModel:
    """The AXI DMA, simple mode (PG021), with ``board.mode`` faults."""

    def __init__(self, board: Board):
        self.board = board
        self.offsets = dma_register_map()
        self.names = {offset: name for name, offset in self.offsets.items()}
        self.channels = {"MM2S": Channel("MM2S"), "S2MM": Channel("S2MM")}
        self.resetting = 0  # register accesses left in a soft reset

    def _register(self, offset: int) -> tuple[Channel, str]:
        name = self.names.get(offset)
        channel, _, field = (name or "").partition("_")
        if channel not in self.channels or field not in ("DMACR", "DMASR", "SA", "SA_MSB", "DA", "DA_MSB", "LENGTH"):
            self.board.unexpected.append(f"AXI DMA offset 0x{offset:02X} ({name or 'unmapped'})")
            return None, ""
        return self.channels[channel], field

    def read(self, offset: int) -> int:
        self.board.access("dma", "read", offset)
        channel, field = self._register(offset)
        if channel is None:
            return 0
        if field == "DMACR":
            return channel.dmacr | (DMACR_RESET if self.resetting else 0)
        if field == "DMASR":
            return channel.dmasr
        if field == "LENGTH":
            return channel.length
        return channel.address_msb if field.endswith("MSB") else channel.address

    def write(self, offset: int, value: int) -> None:
        self.board.access("dma", "write", offset, value)
        channel, field = self._register(offset)
        if channel is None or self.resetting:
            return  # registers ignore writes while the soft reset runs
        if field == "DMACR":
            if value & DMACR_RESET:
                self.resetting = -1 if self.board.mode == "reset_stuck" else RESET_STEPS
                return
            channel.dmacr = value & ~DMACR_RESET
            if value & DMACR_RS:
                channel.dmasr &= ~DMASR_HALTED
            else:
                channel.transfer = None
                channel.dmasr = (channel.dmasr | DMASR_HALTED) & ~DMASR_IDLE
        elif field == "DMASR":
            channel.dmasr &= ~(value & (DMASR_IOC | 0x2000 | DMASR_ERR_IRQ))  # write 1 to clear
        elif field == "LENGTH":
            self._start(channel, value)
        elif field.endswith("MSB"):
            channel.address_msb = value
        else:
            channel.address = value

    def _start(self, channel: Channel, nbytes: int) -> None:
        channel.length = nbytes
        if channel.dmasr & DMASR_HALTED:
            return  # a halted channel ignores LENGTH
        if nbytes == 0 or channel.address % 8:
            channel.dmasr |= DMASR_INTERR | DMASR_HALTED | DMASR_ERR_IRQ
            return
        channel.dmasr &= ~DMASR_IDLE
        channel.transfer = {"address": channel.address_msb << 32 | channel.address, "bytes": nbytes,
                            "steps": TRANSFER_STEPS, "written": 0}
        if channel.name == "S2MM" and self.board.mode == "slave_error":
            channel.transfer = None
            channel.dmasr |= DMASR_SLVERR | DMASR_HALTED | DMASR_ERR_IRQ

    def step(self) -> None:
        """One register access worth of time: finish a reset, move stream data, complete transfers."""
        if self.resetting > 0:
            self.resetting -= 1
            if self.resetting == 0:
                for channel in self.channels.values():
                    channel.reset()
        mm2s, s2mm = self.channels["MM2S"], self.channels["S2MM"]
        if mm2s.transfer and not mm2s.transfer.get("sent") and self.board.engine.busy:
            mm2s.transfer["steps"] -= 1
            if mm2s.transfer["steps"] <= 0:
                data = self.board.device.ddr_read(mm2s.transfer["address"], mm2s.transfer["bytes"])
                self.board.engine.reference.send(np.frombuffer(data, dtype="<u8").astype(np.uint64))
                mm2s.transfer["sent"] = True
                if self.board.mode != "stuck_input":  # else the last beats never leave the DMA
                    self._complete(mm2s)
        if s2mm.transfer and self.board.mode != "hang":
            self.board.collect_output()
            s2mm.transfer["steps"] -= 1
            if s2mm.transfer["steps"] <= 0 and self.board.output:
                room = (s2mm.transfer["bytes"] - s2mm.transfer["written"]) // 8
                words = self.board.output[:room]
                del self.board.output[:room]
                address = s2mm.transfer["address"] + s2mm.transfer["written"]
                self.board.device.ddr_write(address, np.array(words, dtype="<u8").tobytes())
                s2mm.transfer["written"] += 8 * len(words)
                ended = not self.board.output and self.board.output_last
                if ended or s2mm.transfer["written"] >= s2mm.transfer["bytes"]:
                    s2mm.length = s2mm.transfer["written"]  # the bytes actually written (PG021)
                    self.board.output_last = self.board.output_last and not ended
                    self._complete(s2mm)

    @staticmethod
    def _complete(channel: Channel) -> None:
        channel.transfer = None
        channel.dmasr |= DMASR_IDLE | DMASR_IOC


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

    # -- what pynq.MMIO maps ------------------------------------------------------------------
    def mmap(self, base_addr, length):
        for base, size, target in ((ENGINE_BASE, ENGINE_RANGE, self.board.engine), (DMA_BASE, DMA_RANGE, self.board.dma),
                                   (SLCR_BASE, SLCR_RANGE, None)):
            if base == base_addr and length <= size:
                return self.board.slcr if target is None else RegisterWindow(target, length)
        raise RuntimeError(f"model board: nothing mapped at 0x{base_addr:08X} (+{length} bytes)")

    # -- pynq.allocate and PynqBuffer's cache maintenance --------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        buffer = PynqBuffer(shape, dtype, device=self, device_address=self._next_address, bo=len(self.ddr) + 1,
                            coherent=False)
        self.ddr[buffer.bo] = (self._next_address, np.zeros(buffer.nbytes, dtype=np.uint8))
        # freebuffer() hands the pointer back to return_to, as PYNQ's pooled allocations do;
        # freed=True keeps its munmap/xclFreeBO branch (for XRT's own mappings) off numpy's memory
        buffer.memory, buffer.pointer, buffer.return_to, buffer.freed = self, self._next_address, self, True
        self._next_address += -(-buffer.nbytes // PAGE) * PAGE
        return buffer

    def return_pointer(self, pointer):
        self.freed.append(pointer)

    def flush(self, bo, offset, vaddr, length):
        self.flushes += 1
        ctypes.memmove(self.ddr[bo][1].ctypes.data + offset, vaddr, length)

    def invalidate(self, bo, offset, vaddr, length):
        self.invalidates += 1
        ctypes.memmove(vaddr, self.ddr[bo][1].ctypes.data + offset, length)

    def _find(self, address: int, nbytes: int) -> tuple[np.ndarray, int]:
        for base, memory in self.ddr.values():
            if base <= address and address + nbytes <= base + memory.size:
                return memory, address - base
        raise RuntimeError(f"model board: DMA access to 0x{address:08X} (+{nbytes} bytes) outside every buffer")

    def ddr_read(self, address: int, nbytes: int) -> bytes:
        memory, start = self._find(address, nbytes)
        return memory[start: start + nbytes].tobytes()

    def ddr_write(self, address: int, data: bytes) -> None:
        memory, start = self._find(address, len(data))
        memory[start: start + len(data)] = np.frombuffer(data, dtype=np.uint8)

    # -- the overlay ---------------------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name):
        return self.board.parser()

    def download(self, bitstream, parser=None):
        self.board.downloads.append(bitstream.bitfile_name)
        self.board.power_on()
        self.post_download(bitstream, parser)


class Board:
    """The model PYNQ-Z2: engine, DMA, DDR, clocks and the overlay's metadata, with faults.

    ``mode`` (:data:`MODES`): ``ok``; ``short`` (the output stream ends one word early, with
    TLAST); ``long`` (two words too many); ``hang`` (S2MM never completes); ``slave_error`` (S2MM
    halts with DMASlvErr); ``stuck_input`` (the engine runs its job but MM2S never completes);
    ``reset_stuck`` (DMACR.Reset never clears). ``ident`` is what the ID register reads,
    ``cells`` the overlay's cells, ``span`` the engine's address range, ``dma_vlnv`` the DMA's type.
    """

    def __init__(self, *, mode: str = "ok", ident: int = ENGINE_ID, cells=("engine", "axi_dma"), span: int = ENGINE_RANGE,
                 dma_vlnv: str = "xilinx.com:ip:axi_dma:7.1", fclk_mhz: float = 100.0):
        if mode not in MODES:
            raise ValueError(f"model board: mode {mode!r}, choose one of {', '.join(MODES)}")
        self.mode, self.ident, self.cells, self.span, self.dma_vlnv = mode, ident, cells, span, dma_vlnv
        self.fclk_divisors = FCLK_DIVISORS[fclk_mhz]
        self.log: list[tuple] = []  # (region, "read"/"write", offset, value)
        self.unexpected: list[str] = []
        self.downloads: list[str] = []
        self.output: list[int] = []  # words the engine has computed and not yet sent
        self.output_last = False  # whether the last of them carries TLAST
        self.slcr = np.zeros(SLCR_RANGE // 4, dtype=np.uint32)
        self.slcr[0x100 // 4] = 26 << 12  # ARM_PLL_CTRL: FDIV 26 (PYNQ base design)
        self.slcr[0x104 // 4] = 21 << 12  # DDR_PLL_CTRL: FDIV 21
        self.slcr[0x108 // 4] = 20 << 12  # IO_PLL_CTRL: FDIV 20, 50 MHz x 20 = 1000 MHz
        self.slcr[0x170 // 4] = 2 << 20 | 5 << 8  # FPGA0_CLK_CTRL at boot: IO PLL / 5 / 2
        self.power_on()
        self.device = ModelDevice(self)

    def power_on(self) -> None:
        """A freshly configured PL: engine and DMA in their reset state."""
        self.engine = EngineModel(self)
        self.dma = AxiDmaModel(self)
        self.output.clear()

    def access(self, region: str, op: str, offset: int, value: int | None = None) -> None:
        self.log.append((region, op, offset, value))
        self.dma.step()

    def collect_output(self) -> None:
        """Move the engine's finished output into its output stream, applying the fault mode."""
        got = self.engine.reference.receive(1 << 30, 0)
        if not got.words.size:
            return
        words = [int(w) for w in got.words]
        if self.mode == "short":
            words = words[:-1]
        elif self.mode == "long":
            words += [0xDEAD, 0xBEEF]
        self.output.extend(words)
        self.output_last = True

    def parser(self):
        """The overlay's metadata as PYNQ's .hwh parser produces it (see the module docstring)."""
        parser = _HWHZynq(RESIZER_HWH)
        (dma_name,) = [k for k, v in parser.ip_dict.items() if v["type"] == "xilinx.com:ip:axi_dma:7.1"]
        dma = copy.deepcopy(parser.ip_dict[dma_name])
        dma.update(fullpath="axi_dma", type=self.dma_vlnv, phys_addr=DMA_BASE, addr_range=DMA_RANGE)
        dma["parameters"].update(DMA_PARAMETERS)
        engine = {"fullpath": "engine", "type": "xilinx.com:module_ref:radix_engine:1.0", "bdtype": None,
                  "state": None, "addr_range": self.span, "phys_addr": ENGINE_BASE, "mem_id": "s_axi",
                  "memtype": "REGISTER", "gpio": {}, "interrupts": {}, "parameters": {}, "registers": {}}
        (ps,) = [v for v in parser.ip_dict.values() if v["type"] == "xilinx.com:ip:processing_system7:5.5"]
        parser.ip_dict = {"ps7": {**ps, "fullpath": "ps7"}}
        parser.ip_dict.update({name: entry for name, entry in (("engine", engine), ("axi_dma", dma)) if name in self.cells})
        parser.gpio_dict, parser.interrupt_pins, parser.interrupt_controllers = {}, {}, {}
        parser.hierarchy_dict = {}
        parser.clock_dict = {i: {"enable": 0, "divisor0": 1, "divisor1": 1} for i in range(4)}
        d0, d1 = self.fclk_divisors
        parser.clock_dict[0] = {"enable": 1, "divisor0": d0, "divisor1": d1}
        parser.systemgraph = None
        return parser

    # -- what the tests read back ----------------------------------------------------------------
    def offsets(self, region: str, op: str | None = None) -> set[int]:
        return {entry[2] for entry in self.log if entry[0] == region and (op is None or entry[1] == op)}

    def dma_writes(self, name: str) -> list[tuple[int, int]]:
        """``[(log index, value)]`` of every write to DMA register ``name``."""
        offset = self.dma.offsets[name]
        return [(i, e[3]) for i, e in enumerate(self.log) if e[:3] == ("dma", "write", offset)]


def install(board: Board) -> Board:
    """Make ``board`` the device every PYNQ call without an explicit device uses."""
    pynq.ps.CPU_ARCH = "armv7l"  # pynq.Clocks serves Zynq-7000 clocks only on a Zynq-7000
    if hasattr(pynq.ps.Clocks, "_real_instance"):
        del pynq.ps.Clocks._real_instance  # bind pynq.Clocks to this board's SLCR
    Device.active_device = board.device
    return board
