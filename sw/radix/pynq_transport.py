"""The ``pynq`` transport: the engine on a PYNQ-Z2, through its overlay's registers and AXI DMA.

Only this module imports pynq, and nothing else in ``radix`` imports this module at import time:
``import radix.pynq_transport`` without PYNQ raises an :class:`ImportError` that says so. It runs
on the board's PYNQ v3 image (Python 3.10, numpy 1.21).

The overlay (``boards/pynq_z2/build_overlay.tcl``, described by :mod:`radix.overlay`) has the
engine's AXI4-Lite slave as the cell ``engine`` and an AXI DMA in simple mode as ``axi_dma``,
driven by PYNQ's own ``pynq.lib.dma.DMA``: MM2S feeds the engine's input stream, its output
stream feeds S2MM, both 64-bit. Engine registers are addressed by the offsets of
:mod:`radix.engine_spec` only (:class:`EngineRegisters`), DMA registers by those of PG021
(:data:`DMA_REGISTERS`).

A job arms S2MM before MM2S starts (:meth:`PynqTransport.expect`, then :meth:`~PynqTransport.send`).
Every wait polls with a deadline: a budget of engine cycles becomes wall-clock time at the
overlay's clock (``pynq.Clocks.fclk0_mhz`` unless given), never less than ``min_wait_s``.
:meth:`PynqTransport.reset` (at start-up, after a timeout, and before the next job after any
stream fault) writes CTRL.RESET and soft-resets the DMA, so one transport outlives its faults.
"""

from __future__ import annotations

import os
import time

import numpy as np

try:
    import pynq
except ImportError as exc:
    raise ImportError(
        "radix.pynq_transport needs the 'pynq' package of a PYNQ-Z2 board image (PYNQ v3.0.1 or v3.1): "
        "run the pynq backend on the board, see boards/pynq_z2/README.md "
        f"(import pynq failed: {exc})",
        name="pynq",
    ) from exc

from .driver import DriverError
from .engine_spec import ENGINE_ID, REGISTERS, STREAM_BITS, field_mask, register
from .overlay import DMA_CELL, DMA_VLNV, ENGINE_CELL, check_fclk_mhz
from .transport import Received, Transport

MIN_WAIT_SECONDS = 1.0  # floor of every wait
WORD_BYTES = STREAM_BITS // 8
REGISTER_MASK = 0xFFFFFFFF

# The AXI DMA's registers in simple (direct register) mode: PG021 "Register Space". PYNQ's
# channel transfer() writes the address and length registers; this module reads them all and
# writes the control registers for resets.
DMA_REGISTERS = {
    "MM2S_DMACR": 0x00, "MM2S_DMASR": 0x04, "MM2S_SA": 0x18, "MM2S_SA_MSB": 0x1C, "MM2S_LENGTH": 0x28,
    "S2MM_DMACR": 0x30, "S2MM_DMASR": 0x34, "S2MM_DA": 0x48, "S2MM_DA_MSB": 0x4C, "S2MM_LENGTH": 0x58,
}
DMA_ADDRESS = {"MM2S": "SA", "S2MM": "DA"}
# DMACR bits, PG021 "MM2S_DMACR" / "S2MM_DMACR"
DMACR_BITS = ((0, "RS"), (2, "Reset"), (3, "Keyhole"), (12, "IOC_IrqEn"), (13, "Dly_IrqEn"), (14, "Err_IrqEn"))
DMACR_RS = 1 << 0
DMACR_RESET = 1 << 2
# DMASR bits, PG021 "MM2S_DMASR" / "S2MM_DMASR"
DMASR_BITS = ((0, "Halted"), (1, "Idle"), (4, "DMAIntErr"), (5, "DMASlvErr"), (6, "DMADecErr"),
              (12, "IOC_Irq"), (14, "Err_Irq"))
DMASR_HALTED = 1 << 0
DMASR_IDLE = 1 << 1
DMASR_ERRORS = (1 << 4) | (1 << 5) | (1 << 6)

_REGISTER_BY_OFFSET = {reg.offset: reg for reg in REGISTERS}


class BoardError(DriverError):
    """The overlay, its DMA or a transfer cannot go on; the message names the file, channel or register."""


def _describe(value: int, bits, idle: str) -> str:
    names = [name for bit, name in bits if value >> bit & 1]
    return f"0x{value:08X} ({', '.join(names) or idle})"


def describe_dmasr(value: int) -> str:
    """``0x00001002 (Idle, IOC_Irq)``: a DMASR value with the names of its set bits."""
    return _describe(value, DMASR_BITS, "running")


def describe_dmacr(value: int) -> str:
    """``0x00010001 (RS)``: a DMACR value with the names of its set bits."""
    return _describe(value, DMACR_BITS, "stopped")


class EngineRegisters:
    """The engine's 32-bit registers over an MMIO-like object, by :mod:`radix.engine_spec` offset.

    ``mmio`` needs ``read(offset) -> int`` and ``write(offset, value)``: a ``pynq.MMIO`` on the
    board. An offset that is not in ``engine_spec.REGISTERS`` is refused (named in a
    :class:`ValueError`), so nothing reaches the bus at a hard-coded address.
    """

    def __init__(self, mmio, *, where: str = ENGINE_CELL):
        self.mmio = mmio
        self.where = where

    def _register(self, offset: int):
        reg = _REGISTER_BY_OFFSET.get(offset)
        if reg is None:
            raise ValueError(f"{self.where}: offset 0x{offset:X} is not an engine register (radix.engine_spec.REGISTERS)")
        return reg

    def read(self, offset: int) -> int:
        self._register(offset)
        return int(self.mmio.read(offset)) & REGISTER_MASK

    def write(self, offset: int, value: int) -> None:
        reg = self._register(offset)
        value = int(value)
        if not 0 <= value <= REGISTER_MASK:
            raise ValueError(f"{self.where}: value {value} for register {reg.name} (0x{offset:03X}) does not fit 32 bits")
        self.mmio.write(offset, value)


class PynqTransport(Transport):
    """The engine of a Radix overlay on the board.

    Parameters
    ----------
    bitfile:
        The overlay's ``.bit``; PYNQ reads the ``.hwh`` of the same name beside it.
    engine, dma:
        Names of the engine and the AXI DMA in the overlay's ``ip_dict``.
    clock_mhz:
        The engine's clock, to turn cycle budgets into time; default ``pynq.Clocks.fclk0_mhz``
        (which PYNQ sets from the ``.hwh`` when it loads the overlay). It must be a frequency the
        PS makes (:func:`radix.overlay.check_fclk_mhz`).
    download:
        Load the bitstream into the PL (PYNQ's ``Overlay(download=...)``).
    min_wait_s:
        The shortest wait, in seconds, whatever the cycle budget; also the bound on the DMA's
        soft reset and on the input stream's last words after DONE.

    Construction resets the engine and the DMA (:meth:`reset`) before PYNQ's DMA driver starts
    the channels.
    """

    name = "pynq"

    def __init__(self, bitfile, *, engine: str = ENGINE_CELL, dma: str = DMA_CELL, clock_mhz: float | None = None,
                 download: bool = True, min_wait_s: float = MIN_WAIT_SECONDS):
        path = os.fspath(bitfile)
        hwh = os.path.splitext(path)[0] + ".hwh"
        if not os.path.isfile(path):
            raise FileNotFoundError(f"overlay bitstream {path} not found")
        if not os.path.isfile(hwh):
            raise FileNotFoundError(f"overlay {path}: its hardware description {hwh} is missing (PYNQ reads the .hwh beside the .bit)")
        self.bitfile = path
        self.min_wait_s = float(min_wait_s)
        if self.min_wait_s < 0:
            raise ValueError(f"min_wait_s {self.min_wait_s}: must not be negative")
        self.overlay = pynq.Overlay(path, download=download)
        ip_dict = self.overlay.ip_dict
        for cell in (engine, dma):
            if cell not in ip_dict:
                raise BoardError(f"overlay {path} has no IP {cell!r} (its IPs: {', '.join(sorted(ip_dict))}): "
                                 "is it a Radix overlay from boards/pynq_z2/build_overlay.tcl?")
        entry = ip_dict[engine]
        span = int(entry["addr_range"])
        needed = max(reg.offset for reg in REGISTERS) + 4
        if span < needed:
            raise BoardError(f"overlay {path}: {engine} maps {span} bytes, the registers need {needed}")
        base = int(entry["phys_addr"])
        self.registers = EngineRegisters(pynq.MMIO(base, span), where=f"{engine} at 0x{base:08X}")
        ident = self.registers.read(register("ID").offset)
        if ident != ENGINE_ID:
            raise BoardError(f"overlay {path}: register ID of {engine} at 0x{base:08X} reads 0x{ident:08X}, "
                             f"a Radix engine reads 0x{ENGINE_ID:08X}")
        self.clock_mhz = check_fclk_mhz(pynq.Clocks.fclk0_mhz if clock_mhz is None else clock_mhz,
                                        what="the engine clock")
        # radix's own view of the DMA's registers: the reset below runs before PYNQ's driver
        # exists, whose constructor starts both channels and waits, unbounded, until they run
        self.dma_mmio = pynq.MMIO(int(ip_dict[dma]["phys_addr"]), int(ip_dict[dma]["addr_range"]))
        self.fault: str | None = None
        self._reset_hardware()
        self.dma = getattr(self.overlay, dma)  # PYNQ binds its driver by the IP's VLNV
        if getattr(self.dma, "sendchannel", None) is None or getattr(self.dma, "recvchannel", None) is None:
            raise BoardError(f"overlay {path}: {dma} ({ip_dict[dma].get('type')}) is a {type(self.dma).__name__}, not "
                             f"PYNQ's AXI DMA driver with MM2S and S2MM channels (pynq.lib.dma.DMA, for {DMA_VLNV})")
        self.channels = {"MM2S": self.dma.sendchannel, "S2MM": self.dma.recvchannel}
        self.max_bytes = int(self.dma.buffer_max_size)
        self._buffers: dict = {}
        self._send_pending = 0  # words of the last MM2S transfer not yet seen complete
        self._armed = 0  # output words the armed S2MM transfer expects (0: not armed)
        self._closed = False

    # -- registers --------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        return self.registers.read(offset)

    def write(self, offset: int, value: int) -> None:
        if self.fault and offset == register("CTRL").offset and value & field_mask("CTRL", "START"):
            self.reset()  # a job after a stream fault starts from a clean engine and DMA
        self.registers.write(offset, value)

    # -- streams ----------------------------------------------------------------------------
    def expect(self, count: int) -> None:
        """Arm S2MM for a job of ``count`` output words (before :meth:`send` starts MM2S).

        The transfer asks for ``count + 1`` words, so a stream longer than ``count`` shows as
        ``last=False``; S2MM_LENGTH gives the words that actually arrived before TLAST.
        """
        self._usable()
        if count < 1:
            raise ValueError(f"expect: count {count} must be at least 1")
        nbytes = (count + 1) * WORD_BYTES
        self._check_length("S2MM", nbytes, f"an output stream of {count} words (+1 to see its end)")
        buffer = self._buffer("S2MM", count + 1)
        self.channels["S2MM"].transfer(buffer, 0, nbytes)
        self._armed = count

    def send(self, words: np.ndarray) -> None:
        """Start an MM2S transfer of ``words`` (returns before the engine has accepted them)."""
        self._usable()
        words = np.asarray(words, dtype=np.uint64).reshape(-1)
        if words.size == 0:
            return
        nbytes = words.size * WORD_BYTES
        self._check_length("MM2S", nbytes, f"an input stream of {words.size} words")
        self._finish_send()
        buffer = self._buffer("MM2S", words.size)
        buffer[: words.size] = words
        self.channels["MM2S"].transfer(buffer, 0, nbytes)  # PYNQ flushes the buffer first
        self._send_pending = words.size

    def receive(self, count: int, cycles: int) -> Received:
        """Collect up to ``count`` words from S2MM, stopping at TLAST; empty when the budget runs out.

        Arms S2MM itself unless :meth:`expect` armed it for ``count`` words.
        """
        self._usable()
        if self._armed != count:
            self.expect(count)
        self._armed = 0
        seconds = self.budget_seconds(cycles)
        if not self._poll("S2MM", time.monotonic() + seconds):
            self.fault = (f"S2MM: the output stream did not end within {seconds:.3g} s "
                          f"({cycles} cycles at {self.clock_mhz:g} MHz); {self.diagnostics()}")
            return Received(np.zeros(0, dtype=np.uint64), last=False)
        arrived = self._dma_read("S2MM_LENGTH") // WORD_BYTES
        buffer = self._buffers["S2MM"]
        buffer.invalidate()  # the DMA wrote DDR behind the CPU's cache
        if arrived > count:
            # the rest of the stream may still be waiting in the engine: the next job resets first
            self.fault = f"S2MM: the output stream went on past the {count} words expected; {self.diagnostics()}"
        return Received(np.array(buffer[: min(arrived, count)], dtype=np.uint64), last=arrived <= count)

    def wait_done(self, cycles: int) -> bool:
        """Wait for STATUS.DONE, then for MM2S to have sent the whole input stream."""
        status, done = register("STATUS").offset, field_mask("STATUS", "DONE")
        deadline = time.monotonic() + self.budget_seconds(cycles)
        while not self.registers.read(status) & done:
            if time.monotonic() > deadline:
                return False
        self._finish_send()
        return True

    def reset(self) -> None:
        """Abort everything: CTRL.RESET, then the AXI DMA's soft reset, then restart its channels.

        The channels are handed back to PYNQ's ``start()``, which finds them running and clears
        its first-transfer state (a reset channel is not Idle until its first transfer ends).
        Pending faults are cleared; the DMA buffers are kept.
        """
        self._reset_hardware()
        for driver in self.channels.values():
            driver.start()
        self.fault = None
        self._send_pending = 0
        self._armed = 0

    def _reset_hardware(self) -> None:
        """CTRL.RESET, then DMACR.Reset and DMACR.RS on both channels, each waited for within ``min_wait_s``.

        DMACR.Reset on either channel resets the whole DMA (PG021); it is written on both and
        waited for on both. A reset DMA is halted: RS runs each channel again.
        """
        self.registers.write(register("CTRL").offset, field_mask("CTRL", "RESET"))
        for channel in DMA_ADDRESS:
            self._dma_write(f"{channel}_DMACR", DMACR_RESET)
        self._wait_dma("the AXI DMA's soft reset to complete",
                       lambda: not any(self._dma_read(f"{c}_DMACR") & DMACR_RESET for c in DMA_ADDRESS))
        for channel in DMA_ADDRESS:
            self._dma_write(f"{channel}_DMACR", DMACR_RS)
            self._wait_dma(f"{channel} to run after the DMA reset",
                           lambda channel=channel: not self._dma_read(f"{channel}_DMASR") & DMASR_HALTED)
        status = self.registers.read(register("STATUS").offset)
        if status & (field_mask("STATUS", "BUSY") | field_mask("STATUS", "DONE")):
            raise BoardError(f"{self.registers.where}: STATUS=0x{status:X} after CTRL.RESET, expected idle "
                             "(is the overlay's engine older than ENGINE_VERSION 2, without CTRL.RESET?)")

    def close(self) -> None:
        """Free the DMA buffers (contiguous memory is scarce on the board)."""
        for buffer in self._buffers.values():
            buffer.freebuffer()
        self._buffers.clear()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def diagnostics(self) -> str:
        """Both DMA channels' registers, decoded, for error reports."""
        parts = []
        for channel, address in DMA_ADDRESS.items():
            high = self._dma_read(f"{channel}_{address}_MSB")
            low = self._dma_read(f"{channel}_{address}")
            parts.append(f"{channel}: DMACR={describe_dmacr(self._dma_read(f'{channel}_DMACR'))}, "
                         f"DMASR={describe_dmasr(self._dma_read(f'{channel}_DMASR'))}, "
                         f"{address}=0x{high << 32 | low:08X}, LENGTH={self._dma_read(f'{channel}_LENGTH')}")
        return "DMA " + "; ".join(parts)

    def budget_seconds(self, cycles: int) -> float:
        """Wall-clock time for a budget of ``cycles`` at the engine's clock, at least ``min_wait_s``."""
        return max(self.min_wait_s, cycles / (self.clock_mhz * 1e6))

    # -- internals ----------------------------------------------------------------------------
    def _dma_read(self, name: str) -> int:
        return int(self.dma_mmio.read(DMA_REGISTERS[name])) & REGISTER_MASK

    def _dma_write(self, name: str, value: int) -> None:
        self.dma_mmio.write(DMA_REGISTERS[name], value)

    def _wait_dma(self, what: str, ready) -> None:
        deadline = time.monotonic() + self.min_wait_s
        while not ready():
            if time.monotonic() > deadline:
                self.fault = f"DMA: timed out after {self.min_wait_s:g} s waiting for {what}; {self.diagnostics()}"
                raise BoardError(self.fault)

    def _usable(self) -> None:
        if self._closed:
            raise BoardError(f"PynqTransport({self.bitfile!r}) is closed")
        if self.fault:
            raise BoardError(f"{self.fault}\nthe DMA may be mid-transfer: call reset() (the next job's START does) "
                             "before streaming again")

    def _check_length(self, channel: str, nbytes: int, what: str) -> None:
        if nbytes > self.max_bytes:
            raise BoardError(f"{channel}: {what} is {nbytes} bytes, more than the DMA's buffer length register "
                             f"allows ({self.max_bytes} bytes; c_sg_length_width in build_overlay.tcl)")

    def _buffer(self, channel: str, words: int):
        """A contiguous buffer of at least ``words`` 64-bit words for ``channel``, reused across jobs."""
        buffer = self._buffers.get(channel)
        if buffer is None or buffer.shape[0] < words:
            if buffer is not None:
                buffer.freebuffer()
            buffer = pynq.allocate(shape=(words,), dtype=np.uint64)
            # write back whatever the allocation left in the cache, so no dirty line can later
            # overwrite what the DMA writes
            buffer.flush()
            self._buffers[channel] = buffer
        return buffer

    def _poll(self, channel: str, deadline: float) -> bool:
        """Poll ``channel``'s DMASR until Idle (True) or the deadline (False); raise on DMA errors."""
        while True:
            status = self._dma_read(f"{channel}_DMASR")
            if status & DMASR_ERRORS:
                self.fault = f"{channel}: the DMA reports an error: {channel}_DMASR={describe_dmasr(status)}"
                raise BoardError(f"{self.fault}; {self.diagnostics()}")
            if status & DMASR_IDLE:
                return True
            if time.monotonic() > deadline:
                return False

    def _finish_send(self) -> None:
        """Make sure the last MM2S transfer is complete (the engine accepted every word)."""
        if not self._send_pending:
            return
        if not self._poll("MM2S", time.monotonic() + self.min_wait_s):
            self.fault = (f"MM2S: the engine has not accepted all {self._send_pending} words of the input stream "
                          f"within {self.min_wait_s:g} s of the end of its job; {self.diagnostics()}")
            raise BoardError(self.fault)
        self._send_pending = 0
