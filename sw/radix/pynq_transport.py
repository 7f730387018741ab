"""The ``pynq`` transport: the engine on a PYNQ-Z2, through its overlay's registers and AXI DMA.

Only this module imports pynq, and nothing else in ``radix`` imports this module at import time:
``import radix.pynq_transport`` without PYNQ raises an :class:`ImportError` that says so. It runs
on the board's PYNQ v3 image (Python 3.10, numpy 1.21).

The overlay (``boards/pynq_z2/build_overlay.tcl``) has the engine's AXI4-Lite slave as the cell
:data:`ENGINE_CELL` and an AXI DMA in simple mode as :data:`DMA_CELL`: MM2S feeds the engine's
input stream, its output stream feeds S2MM, both 64-bit. Registers are addressed by the offsets
of :mod:`radix.engine_spec` only (:class:`EngineRegisters`).

Every wait polls with a deadline: a budget of engine cycles becomes wall-clock time at the
overlay's clock (``pynq.Clocks.fclk0_mhz`` unless given), never less than ``min_wait_s``. After a
stream times out or the DMA reports an error, the DMA is still mid-transfer: the transport refuses
further streams and asks for a new one (loading the overlay again resets the engine and the DMA).
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
from .transport import Received, Transport

ENGINE_CELL = "engine"  # block design cell of the engine: its key in the overlay's ip_dict
DMA_CELL = "axi_dma"  # block design cell of the AXI DMA
BUFFER_LENGTH_WIDTH = 23  # the DMA's buffer length register (c_sg_length_width in the Tcl)
MIN_WAIT_SECONDS = 1.0  # floor of every wait
WORD_BYTES = STREAM_BITS // 8
REGISTER_MASK = 0xFFFFFFFF

# the AXI DMA registers read here (simple mode, PG021 "Register Space"); pynq's channel
# transfer() writes the address and length registers
DMA_REGISTERS = {
    "MM2S_DMASR": 0x04,
    "S2MM_DMASR": 0x34,
    "S2MM_LENGTH": 0x58,  # bytes actually written by the last S2MM transfer
}
# DMASR bits, PG021 "MM2S_DMASR" / "S2MM_DMASR"
DMASR_BITS = ((0, "Halted"), (1, "Idle"), (4, "DMAIntErr"), (5, "DMASlvErr"), (6, "DMADecErr"),
              (12, "IOC_Irq"), (14, "Err_Irq"))
DMASR_IDLE = 1 << 1
DMASR_ERRORS = (1 << 4) | (1 << 5) | (1 << 6)

_REGISTER_BY_OFFSET = {reg.offset: reg for reg in REGISTERS}


class BoardError(DriverError):
    """The overlay, its DMA or a transfer cannot go on; the message names the file, channel or register."""


def describe_dmasr(value: int) -> str:
    """``0x00001002 (Idle, IOC_Irq)``: a DMASR value with the names of its set bits."""
    names = [name for bit, name in DMASR_BITS if value >> bit & 1]
    return f"0x{value:08X} ({', '.join(names) or 'running'})"


class EngineRegisters:
    """The engine's 32-bit registers over an MMIO-like object, by :mod:`radix.engine_spec` offset.

    ``mmio`` needs ``read(offset) -> int`` and ``write(offset, value)``: a ``pynq.MMIO`` on the
    board, any stand-in in tests. An offset that is not in ``engine_spec.REGISTERS`` is refused
    (named in a :class:`ValueError`), so nothing reaches the bus at a hard-coded address.
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
        (which PYNQ sets from the ``.hwh`` when it loads the overlay).
    download:
        Load the bitstream into the PL (PYNQ's ``Overlay(download=...)``); loading resets the
        engine and the DMA.
    min_wait_s:
        The shortest wait, in seconds, whatever the cycle budget.
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
        self.dma = getattr(self.overlay, dma)
        if getattr(self.dma, "sendchannel", None) is None or getattr(self.dma, "recvchannel", None) is None:
            raise BoardError(f"overlay {path}: {dma} is a {type(self.dma).__name__}, not PYNQ's AXI DMA driver with "
                             "MM2S and S2MM channels (pynq.lib.dma.DMA, for xilinx.com:ip:axi_dma:7.1)")
        self.max_bytes = int(self.dma.buffer_max_size)
        self.clock_mhz = float(pynq.Clocks.fclk0_mhz if clock_mhz is None else clock_mhz)
        if self.clock_mhz <= 0:
            raise ValueError(f"engine clock {self.clock_mhz} MHz: must be positive")
        self.min_wait_s = float(min_wait_s)
        if self.min_wait_s < 0:
            raise ValueError(f"min_wait_s {self.min_wait_s}: must not be negative")
        self.fault: str | None = None
        self._buffers: dict = {}
        self._send_pending = 0  # words of the last MM2S transfer not yet seen complete
        self._closed = False

    # -- registers --------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        return self.registers.read(offset)

    def write(self, offset: int, value: int) -> None:
        self.registers.write(offset, value)

    # -- streams ----------------------------------------------------------------------------
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
        self.dma.sendchannel.transfer(buffer, 0, nbytes)
        self._send_pending = words.size

    def receive(self, count: int, cycles: int) -> Received:
        """Collect up to ``count`` words from S2MM, stopping at TLAST; empty when the budget runs out.

        The transfer asks for ``count + 1`` words, so a stream longer than ``count`` shows as
        ``last=False``; S2MM_LENGTH gives the words that actually arrived before TLAST.
        """
        self._usable()
        if count < 1:
            raise ValueError(f"receive: count {count} must be at least 1")
        nbytes = (count + 1) * WORD_BYTES
        self._check_length("S2MM", nbytes, f"an output stream of {count} words (+1 to see its end)")
        buffer = self._buffer("S2MM", count + 1)
        self.dma.recvchannel.transfer(buffer, 0, nbytes)
        seconds = self.budget_seconds(cycles)
        if not self._poll("S2MM", time.monotonic() + seconds):
            self.fault = (f"S2MM: the output stream did not end within {seconds:.3g} s "
                          f"({cycles} cycles at {self.clock_mhz:g} MHz); {self.diagnostics()}")
            return Received(np.zeros(0, dtype=np.uint64), last=False)
        arrived = int(self.dma.mmio.read(DMA_REGISTERS["S2MM_LENGTH"])) // WORD_BYTES
        buffer.invalidate()
        if arrived > count:
            # the rest of the stream may still be waiting in the engine: the next job cannot trust it
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
        """The DMA's status registers, decoded, for error reports."""
        read = self.dma.mmio.read
        return (f"DMA MM2S_DMASR={describe_dmasr(int(read(DMA_REGISTERS['MM2S_DMASR'])))}, "
                f"S2MM_DMASR={describe_dmasr(int(read(DMA_REGISTERS['S2MM_DMASR'])))}, "
                f"S2MM_LENGTH={int(read(DMA_REGISTERS['S2MM_LENGTH']))}")

    def budget_seconds(self, cycles: int) -> float:
        """Wall-clock time for a budget of ``cycles`` at the engine's clock, at least ``min_wait_s``."""
        return max(self.min_wait_s, cycles / (self.clock_mhz * 1e6))

    # -- internals ----------------------------------------------------------------------------
    def _usable(self) -> None:
        if self._closed:
            raise BoardError(f"PynqTransport({self.bitfile!r}) is closed")
        if self.fault:
            raise BoardError(f"{self.fault}\nthe DMA is still mid-transfer: create a new PynqTransport"
                             f"({self.bitfile!r}), which loads the overlay again and resets the engine and the DMA")

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
        offset = DMA_REGISTERS[f"{channel}_DMASR"]
        while True:
            status = int(self.dma.mmio.read(offset))
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
