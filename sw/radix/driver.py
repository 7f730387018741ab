"""The host driver of the bus-master engine (engine version 13): load a program once, then run
batches of images, each from one START.

:meth:`Driver.load` lays the program out in the transport's buffer (:mod:`radix.placement`:
every weight block and the command list written once) and sets ``CMD_BASE``, ``CMD_COUNT`` and
the window (``WIN_BASE``, ``WIN_SIZE``: the buffer, so the engine reaches nothing else).
:meth:`Driver.run` then writes a batch's input tensor, clears STATUS, writes ``CTRL.START``,
waits (bounded) and reads STATUS, CYCLES and the beat counters: six register accesses per batch,
no per-layer host work. The logits and every intermediate tensor stay in memory, so callers may
read any of them (:meth:`BatchRun.tensor`) to find the first divergence from the golden model.
The same code drives the reference model, the RTL simulation and the board. Numpy only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .bus_transport import BusTransport
from .cycle_model import list_cycles
from .engine_errors import DriverError, EngineFault, EngineMismatch, EngineTimeout
from .engine_spec import (BUS_BYTES, BUS_ENGINE_VERSION, BUS_REGISTERS, ENGINE_ID, ERROR_CODES, EngineConfig,
                          bus_register, field_mask_of)
from .placement import Placement, place
from .program import Program

__all__ = ["Driver", "DriverError", "EngineMismatch", "EngineTimeout", "EngineFault", "Loaded", "BatchRun",
           "read_config"]

MIN_WAIT_CYCLES = 100_000
DONE = field_mask_of("STATUS", "DONE")
ERROR = field_mask_of("STATUS", "ERROR")


def read_config(transport: BusTransport) -> EngineConfig:
    """Identify the engine and read its build parameters from the registers."""
    ident = transport.read(bus_register("ID").offset)
    if ident != ENGINE_ID:
        raise EngineMismatch(f"register ID reads 0x{ident:08X}, not a Radix engine (0x{ENGINE_ID:08X})")
    version = transport.read(bus_register("VERSION").offset)
    if version != BUS_ENGINE_VERSION:
        raise EngineMismatch(f"engine VERSION {version}, this driver speaks version {BUS_ENGINE_VERSION}")
    params = {reg.build: transport.read(reg.offset) for reg in BUS_REGISTERS if reg.build and reg.build != "acc_width"}
    try:
        config = EngineConfig(**params)
    except ValueError as exc:
        raise EngineMismatch(f"engine build registers are not a valid configuration: {exc}") from None
    acc = transport.read(bus_register("ACC_WIDTH").offset)
    if acc != config.acc_width:
        raise EngineMismatch(f"engine ACC_WIDTH {acc} disagrees with its DATA_WIDTH {config.width}")
    return config


@dataclass
class Loaded:
    """A program placed in the engine's buffer: its placement and the wait budget of one batch."""

    placement: Placement
    budget_cycles: int


@dataclass
class BatchRun:
    """One batch through the engine.

    ``engine_cycles`` is CYCLES (START to DONE); ``host_seconds`` the host's wall-clock time in
    :meth:`Driver.run` outside the engine (writing the inputs, the register accesses, reading the
    logits); ``register_accesses``, ``bytes_read`` and ``bytes_written`` are the batch's.
    ``memory`` is the whole buffer after the run, read only when asked for (``keep_memory``).
    """

    images: int
    logits: np.ndarray
    engine_cycles: int
    host_seconds: float
    register_accesses: int
    bytes_read: int
    bytes_written: int
    placement: Placement
    memory: np.ndarray | None = field(default=None, repr=False)

    def tensor(self, name: str, image: int) -> np.ndarray:
        """Tensor ``name`` of image ``image`` as the engine left it (needs ``keep_memory``)."""
        if self.memory is None:
            raise DriverError("this run did not keep the engine's memory: run with keep_memory=True")
        return self.placement.tensor(self.memory, name, image)

    def layer_stats(self) -> dict[str, tuple[int, int]]:
        """``{layer: (cycles, saturated outputs)}`` from the commands' stats words (needs
        ``keep_memory``): a layer's cycles run from the previous layer's last command to its own."""
        if self.memory is None:
            raise DriverError("this run did not keep the engine's memory: run with keep_memory=True")
        stats = self.placement.command_stats(self.memory)
        out: dict[str, list[int]] = {}
        previous_end = 0
        for info, (end, sat) in zip(self.placement.commands, stats):
            entry = out.setdefault(info.layer, [0, 0])
            entry[0] += end - previous_end
            entry[1] += sat
            previous_end = end
        return {name: (cycles, sat) for name, (cycles, sat) in out.items()}


class Driver:
    """Runs programs on one bus-master engine through ``transport`` (a :class:`BusTransport`)."""

    def __init__(self, transport: BusTransport, *, wait_factor: int = 20):
        self.transport = transport
        self.config = read_config(transport)
        self.wait_factor = wait_factor

    def check(self, program: Program, *, batch: int = 1) -> None:
        """Refuse, before anything is written, a program this engine cannot run (names the layer
        and the limit): the placement makes every command and checks it as the engine will."""
        place(program, self.config, batch=batch)

    def load(self, program: Program, *, batch: int = 1) -> Loaded:
        """Place ``program`` for batches of up to ``batch`` images in the transport's buffer, once."""
        return self.load_with(program, batch=batch)

    def load_with(self, program: Program, *, batch: int = 1, externals: dict | None = None,
                  order=None) -> Loaded:
        """:meth:`load` with external tensors (``radix.placement.place``), which the caller writes
        into the buffer with ``placement.input_words(x, name=...)`` before :meth:`run`, and the
        jobs' stream orders from ``order`` (``radix.placement.place``; None: the fastest)."""
        t = self.transport
        # the layout does not depend on the base: place once for the size, once at the buffer
        base = t.allocate(place(program, self.config, batch=batch, externals=externals).memory_bytes)
        placement = place(program, self.config, batch=batch, base=base, externals=externals, order=order)
        t.write_memory(0, placement.memory)
        for name, value in (("CMD_BASE", placement.cmd_base), ("CMD_COUNT", placement.cmd_count),
                            ("WIN_BASE", base), ("WIN_SIZE", placement.memory_bytes)):
            t.write(bus_register(name).offset, value)
        estimate = list_cycles(self.config, [info.fields for info in placement.commands])
        return Loaded(placement, max(MIN_WAIT_CYCLES, self.wait_factor * estimate))

    def run(self, loaded: Loaded, x_q, *, keep_memory: bool = False) -> BatchRun:
        """Run the quantized images ``x_q`` (N, C, H, W), ``N`` up to the loaded batch, from one START."""
        t, placement = self.transport, loaded.placement
        started, engine_before, accesses_before = time.perf_counter(), t.engine_seconds, t.register_accesses
        offset, words = placement.input_words(x_q)
        t.write_memory(offset, words)
        t.write(bus_register("STATUS").offset, DONE | ERROR)
        t.write(bus_register("CTRL").offset, field_mask_of("CTRL", "START"))
        finished = t.wait_done(loaded.budget_cycles)
        status = t.read(bus_register("STATUS").offset)
        if not finished:
            self._failed(EngineTimeout, f"the command list did not finish within {loaded.budget_cycles} cycles")
        if status & ERROR:
            self._fault(placement)
        cycles = t.read(bus_register("CYCLES").offset)
        beats_read = t.read(bus_register("BEATS_READ").offset)
        beats_written = t.read(bus_register("BEATS_WRITTEN").offset)
        images = int(np.asarray(x_q).shape[0])
        logits = self._logits(placement, images)
        host = time.perf_counter() - started - (t.engine_seconds - engine_before)
        accesses = t.register_accesses - accesses_before
        memory = t.read_memory(0, placement.memory_bytes // BUS_BYTES) if keep_memory else None
        return BatchRun(images=images, logits=logits, engine_cycles=cycles, host_seconds=host,
                        register_accesses=accesses, bytes_read=beats_read * BUS_BYTES,
                        bytes_written=beats_written * BUS_BYTES, placement=placement, memory=memory)

    def _logits(self, placement: Placement, images: int) -> np.ndarray:
        """The last layer's output of the first ``images`` images, read from its tensor only."""
        last = placement.tensors[placement.program.layers[-1].name]
        count = images * last.image_bytes // BUS_BYTES
        words = self.transport.read_memory(last.addr - placement.base, count)
        view = np.zeros(placement.memory.size, dtype=np.uint64)
        start = (last.addr - placement.base) // BUS_BYTES
        view[start:start + count] = words
        return np.stack([placement.tensor(view, last.name, b).reshape(-1) for b in range(images)])

    def _fault(self, placement: Placement):
        t = self.transport
        code = t.read(bus_register("ERR_CODE").offset)
        index = t.read(bus_register("ERR_INDEX").offset)
        addr = t.read(bus_register("ERR_ADDR").offset)
        name, meaning = ERROR_CODES.get(code, (f"code {code}", "unknown"))
        where = (f"command {index} (layer {placement.commands[index].layer})" if index < placement.cmd_count
                 else f"command {index}")
        self._failed(EngineFault, f"the engine stopped at {where}: ERR_CODE {name} ({meaning}), ERR_ADDR 0x{addr:08X}")

    def _failed(self, error: type[DriverError], message: str):
        """Raise ``error`` with the state at the failure, after resetting the engine."""
        state = self.dump()
        self.transport.reset()
        raise error(f"{message}\n{state}")

    def dump(self) -> str:
        """Every register and the transport's own state, for error reports."""
        text = "registers: " + ", ".join(f"{reg.name}=0x{self.transport.read(reg.offset):X}" for reg in BUS_REGISTERS)
        extra = self.transport.diagnostics()
        return f"{text}\n{extra}" if extra else text
