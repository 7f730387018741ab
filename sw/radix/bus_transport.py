"""The interface between the driver and a bus-master engine (engine version 9): registers plus memory.

A bus-master engine reads its command list, weights and activations from memory and writes its
outputs there (docs/engine.md, "Memory and commands"). A transport gives the driver the engine's
AXI4-Lite registers and one physically contiguous buffer of memory the engine may reach; it knows
nothing of layers. Implementations: ``reference`` (:mod:`radix.command_exec`: the golden model
executing command lists over a numpy memory), ``sim`` (the RTL with an AXI memory model,
``radix_sim``) and ``pynq`` (the board: ``pynq.allocate`` and MMIO).
"""

from __future__ import annotations

import numpy as np

from .engine_errors import EngineTimeout
from .engine_spec import BUS_BYTES, field_mask_of, bus_register

# Reads of STATUS a reset may take: each read is several bus cycles, and a reset waits at most
# for the bursts already on the bus (16 beats each, a few outstanding) to complete.
RESET_POLLS = 10_000


class BusTransport:
    """Registers and one memory buffer of a bus-master engine.

    Every wait is bounded by ``cycles``, a budget in engine clock cycles that each transport turns
    into its own bound (simulated cycles, or wall-clock time at the overlay's clock).
    ``register_accesses`` counts :meth:`read` and :meth:`write` calls (the host's cost on a board);
    ``engine_seconds`` the wall-clock time spent waiting for the engine or computing it (a
    simulation, the reference model), which the driver's host time leaves out.
    """

    name = "abstract"
    measures_cycles = True  # CYCLES is counted by the engine; False where it is a model's estimate

    def __init__(self):
        self.register_accesses = 0
        self.engine_seconds = 0.0

    # -- registers ----------------------------------------------------------------------
    def read(self, offset: int) -> int:
        raise NotImplementedError

    def write(self, offset: int, value: int) -> None:
        raise NotImplementedError

    # -- memory -------------------------------------------------------------------------
    def allocate(self, nbytes: int) -> int:
        """Make the buffer at least ``nbytes`` long (zeroed) and return its bus address. The
        driver calls it once per loaded program; a later call may move and re-zero the buffer."""
        raise NotImplementedError

    @property
    def memory_size(self) -> int:
        """Bytes of the current buffer (0 before :meth:`allocate`)."""
        raise NotImplementedError

    def write_memory(self, offset: int, words: np.ndarray) -> None:
        """Write 64-bit ``words`` at byte ``offset`` of the buffer (8-byte aligned); visible to the
        engine when this returns (a board transport flushes the cache)."""
        raise NotImplementedError

    def read_memory(self, offset: int, count: int) -> np.ndarray:
        """``count`` 64-bit words from byte ``offset`` of the buffer, as the engine left them (a
        board transport invalidates the cache first)."""
        raise NotImplementedError

    # -- control ------------------------------------------------------------------------
    def wait_done(self, cycles: int) -> bool:
        """Wait until STATUS.DONE or STATUS.ERROR is set; False when the budget runs out."""
        raise NotImplementedError

    def reset(self) -> None:
        """Abort whatever the engine is doing and leave it idle (CTRL.RESET), then read STATUS
        until BUSY falls: a START written while the reset completes would be ignored. The wait
        is bounded (:data:`RESET_POLLS` reads); a transport with a clock of its own overrides it."""
        self.write(bus_register("CTRL").offset, field_mask_of("CTRL", "RESET"))
        busy = field_mask_of("STATUS", "BUSY")
        for _ in range(RESET_POLLS):
            if not self.read(bus_register("STATUS").offset) & busy:
                return
        raise EngineTimeout(f"{self.name} transport: STATUS.BUSY still set after CTRL.RESET and "
                            f"{RESET_POLLS} reads of STATUS; {self.diagnostics()}")

    def diagnostics(self) -> str:
        """State beyond the engine's registers for error reports, or ''."""
        return ""

    def close(self) -> None:
        """Release the engine and the buffer."""


def words_bytes(words: np.ndarray) -> int:
    """Bytes of ``words`` 64-bit words."""
    return int(np.asarray(words).size) * BUS_BYTES
