"""The ``pynq`` transport: the bus-master engine (engine version 13) on a PYNQ-Z2, through PYNQ.

Only this module imports pynq, and nothing else in ``radix`` imports this module at import time:
``import radix.pynq_transport`` without PYNQ raises an :class:`ImportError` that says so. It runs
on the board's PYNQ v3 image (Python 3.10, numpy 1.21).

:class:`PynqBusTransport` is a :class:`radix.bus_transport.BusTransport`: the engine's AXI4-Lite
registers and one physically contiguous buffer the engine reaches over ``S_AXI_HP0``. The overlay
(``boards/pynq_z2/build_overlay.tcl``, described by :mod:`radix.overlay`) is loaded with
``pynq.Overlay``; the engine's registers are a ``pynq.MMIO`` over the cell's address range,
addressed by the offsets of ``radix.engine_spec.BUS_REGISTERS`` only (:class:`EngineRegisters`);
the buffer comes from ``pynq.allocate`` (contiguous, cached): every write is flushed to the DDR
and every read invalidated first, range by range, and the window the driver gives the engine is
this buffer's physical range. There is no AXI DMA: the engine fetches its command list, weights
and activations itself, so a whole batch costs a handful of register accesses.

Every wait is bounded: a budget of engine cycles becomes wall-clock time at the overlay's clock
(``pynq.Clocks.fclk0_mhz`` unless given), never less than ``min_wait_s``. When the overlay routes
the engine's ``interrupt`` to the PS through an AXI interrupt controller (PYNQ 3.0.1 serves
interrupts only that way), :meth:`PynqBusTransport.wait_done` sleeps on ``pynq.Interrupt`` and
reads STATUS once per wake-up (a level interrupt can leave a stale wake-up behind); otherwise it
polls STATUS. ``engine_seconds`` adds up the time spent in those waits.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import warnings

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

from .bus_transport import BusTransport
from .engine_errors import DriverError
from .engine_spec import (BUS_BYTES, BUS_ENGINE_VERSION, BUS_REGISTERS, COMMAND_BYTES, ENGINE_ID, ERROR_CODES,
                          bus_register, field_mask_of)
from .overlay import DDR_BASE, DDR_RANGE, ENGINE_CELL, ENGINE_MODULE, check_fclk_mhz

MIN_WAIT_SECONDS = 1.0  # floor of every wait
POLL_SLEEP_SECONDS = 50e-6  # between two STATUS reads while polling
REGISTER_MASK = 0xFFFFFFFF

_REGISTER_BY_OFFSET = {reg.offset: reg for reg in BUS_REGISTERS}
_STATUS = bus_register("STATUS").offset
_CTRL = bus_register("CTRL").offset
_BUSY = field_mask_of("STATUS", "BUSY")
_FINISHED = field_mask_of("STATUS", "DONE") | field_mask_of("STATUS", "ERROR")
_IRQ_EN = field_mask_of("CTRL", "IRQ_EN")
_RESET = field_mask_of("CTRL", "RESET")


class BoardError(DriverError):
    """The overlay, the buffer or the engine cannot go on; the message names the file, cell or register."""


def describe_status(value: int) -> str:
    """``0x00000004 (ERROR)``: a STATUS value with the names of its set bits."""
    names = [fld.name for fld in bus_register("STATUS").fields if value >> fld.offset & 1]
    return f"0x{value:08X} ({', '.join(names) or 'idle'})"


def describe_error(code: int) -> str:
    """``3 (OPCODE: the command's opcode is not one this engine knows)``: an ERR_CODE value decoded."""
    if code == 0:
        return "0 (none)"
    name, meaning = ERROR_CODES.get(code, ("unknown", "not a code of radix.engine_spec.ERROR_CODES"))
    return f"{code} ({name}: {meaning})"


class EngineRegisters:
    """The engine's 32-bit registers over an MMIO-like object, by ``engine_spec.BUS_REGISTERS`` offset.

    ``mmio`` needs ``read(offset) -> int`` and ``write(offset, value)``: a ``pynq.MMIO`` on the
    board. An offset that is not a register of the bus-master engine is refused (named in a
    :class:`ValueError`), so nothing reaches the bus at a hard-coded address.
    """

    def __init__(self, mmio, *, where: str = ENGINE_CELL):
        self.mmio = mmio
        self.where = where

    def _register(self, offset: int):
        reg = _REGISTER_BY_OFFSET.get(offset)
        if reg is None:
            raise ValueError(f"{self.where}: offset 0x{offset:X} is not a register of the bus-master engine "
                             "(radix.engine_spec.BUS_REGISTERS)")
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


class PynqBusTransport(BusTransport):
    """The bus-master engine of a Radix overlay on the board.

    Parameters
    ----------
    bitfile:
        The overlay's ``.bit``; PYNQ reads the ``.hwh`` of the same name beside it.
    engine:
        The engine's cell in the overlay's ``ip_dict``.
    clock_mhz:
        The engine's clock, to turn cycle budgets into time; default ``pynq.Clocks.fclk0_mhz``
        (which PYNQ sets from the ``.hwh`` when it loads the overlay). It must be a frequency the
        PS makes (:func:`radix.overlay.check_fclk_mhz`).
    download:
        Load the bitstream into the PL (PYNQ's ``Overlay(download=...)``).
    min_wait_s:
        The shortest wait, in seconds, whatever the cycle budget; also the bound on CTRL.RESET.
    interrupt:
        Sleep on the engine's interrupt when the overlay connects it (default); False polls STATUS.

    Construction checks the overlay (the engine cell, its address range, ID and VERSION) and
    resets the engine (:meth:`reset`). ``wait_mode`` says how :meth:`wait_done` waits and why.
    """

    name = "pynq"
    measures_cycles = True  # CYCLES is the engine's own count

    def __init__(self, bitfile, *, engine: str = ENGINE_CELL, clock_mhz: float | None = None, download: bool = True,
                 min_wait_s: float = MIN_WAIT_SECONDS, interrupt: bool = True):
        super().__init__()
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
        self._buffer = None
        self._size = 0
        self._closed = False
        self.overlay = pynq.Overlay(path, download=download)
        ip_dict = self.overlay.ip_dict
        if engine not in ip_dict:
            hint = (" It has an AXI DMA: an engine-version-4 overlay (streams through the DMA); rebuild it with "
                    "boards/pynq_z2/build_overlay.tcl." if any("axi_dma" in str(v.get("type")) for v in ip_dict.values())
                    else " Is it a Radix overlay from boards/pynq_z2/build_overlay.tcl?")
            raise BoardError(f"overlay {path} has no IP {engine!r} (its IPs: {', '.join(sorted(ip_dict))}).{hint}")
        entry = ip_dict[engine]
        module = str(entry.get("type", "")).split(":")[2:3]
        if module != [ENGINE_MODULE]:
            raise BoardError(f"overlay {path}: {engine} is a {entry.get('type')}, not the bus-master engine "
                             f"(module {ENGINE_MODULE}); rebuild the overlay with boards/pynq_z2/build_overlay.tcl")
        span = int(entry["addr_range"])
        needed = max(reg.offset for reg in BUS_REGISTERS) + 4
        if span < needed:
            raise BoardError(f"overlay {path}: {engine} maps {span} bytes, the registers need {needed}")
        self.base_address = int(entry["phys_addr"])
        self.registers = EngineRegisters(pynq.MMIO(self.base_address, span),
                                         where=f"{engine} at 0x{self.base_address:08X}")
        ident = self.read(bus_register("ID").offset)
        if ident != ENGINE_ID:
            raise BoardError(f"overlay {path}: register ID of {engine} at 0x{self.base_address:08X} reads "
                             f"0x{ident:08X}, a Radix engine reads 0x{ENGINE_ID:08X}")
        version = self.read(bus_register("VERSION").offset)
        if version != BUS_ENGINE_VERSION:
            raise BoardError(f"overlay {path}: {engine} is engine VERSION {version}, this transport drives the "
                             f"bus-master engine, VERSION {BUS_ENGINE_VERSION}: rebuild the overlay from this radix")
        self.clock_mhz = check_fclk_mhz(pynq.Clocks.fclk0_mhz if clock_mhz is None else clock_mhz,
                                        what="the engine clock")
        self.interrupt = None
        self.wait_mode = "polling STATUS (interrupt=False)"
        if interrupt:
            self._attach_interrupt(entry)
        self.reset()

    def _attach_interrupt(self, entry: dict) -> None:
        """Use ``pynq.Interrupt`` on the engine's interrupt pin when PYNQ lists it (only through an
        AXI interrupt controller in PYNQ 3.0.1); else, or when PYNQ cannot reach it, poll."""
        pin = (entry.get("interrupts") or {}).get("interrupt")
        if not pin:
            self.wait_mode = ("polling STATUS (the overlay routes the engine's interrupt to no AXI interrupt "
                              "controller, which pynq.Interrupt needs)")
            return
        try:
            self.interrupt = pynq.Interrupt(pin["fullpath"])
        except Exception as exc:  # PYNQ's own errors (no pin, no UIO device for the IRQ) are ValueErrors and OSErrors
            self.wait_mode = f"polling STATUS (pynq.Interrupt({pin['fullpath']!r}) failed: {exc})"
            return
        self.wait_mode = f"interrupt {pin['fullpath']} through {pin.get('controller') or 'the PS'}"

    # -- registers --------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        self._usable()
        self.register_accesses += 1
        return self.registers.read(offset)

    def write(self, offset: int, value: int) -> None:
        """Write a register; a CTRL write keeps CTRL.IRQ_EN set while the transport waits on the interrupt."""
        self._usable()
        if offset == _CTRL and self.interrupt is not None:
            value = int(value) | _IRQ_EN
        self.register_accesses += 1
        self.registers.write(offset, value)

    # -- memory -----------------------------------------------------------------------------
    def allocate(self, nbytes: int) -> int:
        """A zeroed contiguous buffer of at least ``nbytes`` (the current one when it is large
        enough, else a new one); its physical address, which the engine's window covers."""
        self._usable()
        nbytes = int(nbytes)
        if nbytes < 1:
            raise ValueError(f"allocate: {nbytes} bytes, at least one is needed")
        words = math.ceil(nbytes / BUS_BYTES)
        if self._buffer is None or self._buffer.shape[0] < words:
            self._free()
            self._buffer = pynq.allocate(shape=(words,), dtype=np.uint64)
        self._buffer[:] = 0
        self._buffer.flush()
        self._size = words * BUS_BYTES
        address = int(self._buffer.physical_address)
        if address % COMMAND_BYTES:
            raise BoardError(f"pynq.allocate gave a buffer at 0x{address:08X}, not {COMMAND_BYTES}-byte aligned "
                             "(the engine's command list must be)")
        if address < DDR_BASE or address + self._size > DDR_BASE + DDR_RANGE:
            raise BoardError(f"pynq.allocate gave {self._size} bytes at 0x{address:08X}, outside the DDR that "
                             f"S_AXI_HP0 reaches (0x{DDR_BASE:08X}..0x{DDR_BASE + DDR_RANGE - 1:08X})")
        return address

    @property
    def memory_size(self) -> int:
        return self._size

    @property
    def buffer_address(self) -> int | None:
        """The buffer's physical address, or None before :meth:`allocate`."""
        return None if self._buffer is None else int(self._buffer.physical_address)

    def write_memory(self, offset: int, words: np.ndarray) -> None:
        """Write 64-bit ``words`` at byte ``offset`` and flush them from the CPU's cache to the DDR."""
        words = np.asarray(words, dtype=np.uint64).reshape(-1)
        view = self._buffer[self._span(offset, words.size)]
        view[:] = words
        view.flush()

    def read_memory(self, offset: int, count: int) -> np.ndarray:
        """``count`` words at byte ``offset`` as the engine left them in the DDR (invalidated first)."""
        view = self._buffer[self._span(offset, int(count))]
        view.invalidate()
        return np.array(view, dtype=np.uint64)

    def _span(self, offset: int, count: int) -> slice:
        self._usable()
        if self._buffer is None:
            raise BoardError("no buffer: call allocate() first")
        if offset % BUS_BYTES or offset < 0 or count < 0 or offset + count * BUS_BYTES > self._size:
            raise ValueError(f"{count} words at byte offset {offset} are not aligned words inside the "
                             f"{self._size}-byte buffer")
        return slice(offset // BUS_BYTES, offset // BUS_BYTES + count)

    # -- control ----------------------------------------------------------------------------
    def wait_done(self, cycles: int) -> bool:
        """Wait until STATUS.DONE or STATUS.ERROR is set, at most :meth:`budget_seconds`; False then."""
        self._usable()
        started = time.monotonic()
        deadline = started + self.budget_seconds(cycles)
        try:
            if self.interrupt is not None:
                return self._wait_interrupt(deadline)
            return self._poll(deadline, _FINISHED)
        finally:
            self.engine_seconds += time.monotonic() - started

    def _wait_interrupt(self, deadline: float) -> bool:
        """Sleep on the interrupt; read STATUS after each wake-up (and once more at the deadline, so
        a lost interrupt costs time but never a result)."""
        loop = _event_loop()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bool(self.read(_STATUS) & _FINISHED)
            try:
                loop.run_until_complete(asyncio.wait_for(self.interrupt.wait(), remaining))
            except asyncio.TimeoutError:
                return bool(self.read(_STATUS) & _FINISHED)
            if self.read(_STATUS) & _FINISHED:
                return True

    def _poll(self, deadline: float, mask: int, *, until_clear: bool = False) -> bool:
        """Read STATUS until ``mask`` is set (or, ``until_clear``, clear); False at the deadline."""
        while True:
            status = self.read(_STATUS) & mask
            if (not status) if until_clear else status:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SLEEP_SECONDS)

    def reset(self) -> None:
        """CTRL.RESET, then wait (at most ``min_wait_s``) for STATUS.BUSY to fall: the engine
        completes the bursts it has on the bus, then idles."""
        self.write(_CTRL, _RESET)
        if not self._poll(time.monotonic() + self.min_wait_s, _BUSY, until_clear=True):
            raise BoardError(f"{self.registers.where}: STATUS.BUSY still set {self.min_wait_s:g} s after CTRL.RESET; "
                             f"{self.diagnostics()}")

    def diagnostics(self) -> str:
        """The engine's status and error registers decoded, the window and the buffer."""
        if self._closed:
            return f"PynqBusTransport({self.bitfile!r}) is closed"
        value = {name: self.read(bus_register(name).offset)
                 for name in ("STATUS", "CMD_DONE", "ERR_CODE", "ERR_INDEX", "ERR_ADDR", "WIN_BASE", "WIN_SIZE")}
        text = (f"{self.registers.where}: STATUS={describe_status(value['STATUS'])}, CMD_DONE={value['CMD_DONE']}, "
                f"ERR_CODE={describe_error(value['ERR_CODE'])}, ERR_INDEX={value['ERR_INDEX']}, "
                f"ERR_ADDR=0x{value['ERR_ADDR']:08X}; window 0x{value['WIN_BASE']:08X} +{value['WIN_SIZE']} bytes")
        if self._buffer is None:
            text += "; no buffer allocated"
        else:
            address = self.buffer_address
            text += f"; buffer 0x{address:08X}..0x{address + self._size - 1:08X} ({self._size} bytes)"
        return f"{text}; waits: {self.wait_mode}"

    def budget_seconds(self, cycles: int) -> float:
        """Wall-clock time for a budget of ``cycles`` at the engine's clock, at least ``min_wait_s``."""
        return max(self.min_wait_s, cycles / (self.clock_mhz * 1e6))

    def close(self) -> None:
        """Free the buffer (contiguous memory is scarce on the board); the transport is unusable after."""
        self._free()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- internals ----------------------------------------------------------------------------
    def _free(self) -> None:
        if self._buffer is not None:
            self._buffer.freebuffer()
            self._buffer = None
            self._size = 0

    def _usable(self) -> None:
        if self._closed:
            raise BoardError(f"PynqBusTransport({self.bitfile!r}) is closed")


def _event_loop() -> asyncio.AbstractEventLoop:
    """The event loop PYNQ's interrupt controllers and UIO devices use (the thread's). In Jupyter it
    is already running the kernel: nest_asyncio (PYNQ's environment has it) lets us wait inside it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop()
    if loop.is_running():
        import nest_asyncio

        nest_asyncio.apply(loop)
    return loop
