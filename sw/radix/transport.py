"""The small interface between the driver and an engine, and the reference engine behind it.

A transport moves registers and stream words; it knows nothing of layers. The driver runs the
same code over every transport: ``reference`` (this module: the golden model behind the engine's
registers and stream formats), ``sim`` (the RTL in cocotb, ``radix_sim``) and ``pynq`` (the board,
``radix.pynq_transport``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden, stream_format
from .cycle_model import job_cycles
from .engine_spec import (
    DEFAULT_CONFIG,
    REGISTERS,
    EngineConfig,
    build_value,
    computed_map,
    field_mask,
    register,
)


@dataclass
class Received:
    """Words read from the engine's output stream; ``last`` tells whether the final one had TLAST."""

    words: np.ndarray
    last: bool


class Transport:
    """What the driver needs from an engine.

    Every wait is bounded by ``cycles``, a budget in engine clock cycles that each transport turns
    into its own bound (simulated cycles, or wall-clock time at the overlay's clock).
    """

    name = "abstract"
    measures_cycles = True  # CYCLES is counted by the engine; False where it is a model's estimate

    def read(self, offset: int) -> int:
        raise NotImplementedError

    def write(self, offset: int, value: int) -> None:
        raise NotImplementedError

    def expect(self, count: int) -> None:
        """Arm the output stream for a job of ``count`` words; the driver calls it before
        :meth:`send` (a DMA's receive channel must be armed before the send starts)."""

    def send(self, words: np.ndarray) -> None:
        """Queue ``words`` on the input stream (returns before they are all accepted)."""
        raise NotImplementedError

    def receive(self, count: int, cycles: int) -> Received:
        """Collect up to ``count`` output words, stopping early at TLAST or when the budget runs out."""
        raise NotImplementedError

    def wait_done(self, cycles: int) -> bool:
        """Wait until STATUS.DONE is set; False when the budget runs out."""
        raise NotImplementedError

    def reset(self) -> None:
        """Abort whatever the engine is doing and leave it idle (CTRL.RESET); a transport with a
        DMA resets its channels too. The driver calls it at start-up and after a timeout."""
        self.write(register("CTRL").offset, field_mask("CTRL", "RESET"))

    def diagnostics(self) -> str:
        """State beyond the engine's registers for error reports (e.g. DMA status), or ''."""
        return ""

    def close(self) -> None:
        """Release the engine."""


class ReferenceTransport(Transport):
    """An engine made of the golden model: registers, stream formats and job semantics.

    It decodes each job's input stream exactly as docs/engine.md lays it out, computes it with
    :func:`radix.golden.conv_job` and encodes the output stream, so the driver's packing and
    tiling are checked against the golden model without hardware. ``CYCLES`` reports the analytic
    cycle model (an estimate, not a measurement).
    """

    name = "reference"
    measures_cycles = False  # CYCLES comes from the analytic cycle model

    def __init__(self, config: EngineConfig = DEFAULT_CONFIG):
        self.config = config
        self.regs = {reg.offset: build_value(reg, config) or 0 for reg in REGISTERS}
        self._input: list[np.ndarray] = []
        self._output = np.zeros(0, dtype=np.uint64)
        self._armed = False

    def read(self, offset: int) -> int:
        return self.regs.get(offset, 0)

    def write(self, offset: int, value: int) -> None:
        reg = next((r for r in REGISTERS if r.offset == offset), None)
        if reg is None or reg.access == "ro":
            return
        if reg.name == "CTRL":
            self.regs[offset] = value & field_mask("CTRL", "IRQ_EN")
            if value & field_mask("CTRL", "RESET"):
                self._abort()
            elif value & field_mask("CTRL", "START") and not self._armed:
                self._armed = True
                self._set_status(busy=True, done=False)
        elif reg.name == "STATUS":
            if value & field_mask("STATUS", "DONE"):
                self.regs[offset] &= ~field_mask("STATUS", "DONE")
        else:
            self.regs[offset] = value & 0xFFFFFFFF

    def _abort(self) -> None:
        """CTRL.RESET: drop the running job, its pending input and its unread output."""
        self._input, self._output, self._armed = [], np.zeros(0, dtype=np.uint64), False
        self._set_status(busy=False, done=False)
        self.regs[register("CYCLES").offset] = self.regs[register("SATURATED").offset] = 0

    def send(self, words: np.ndarray) -> None:
        self._input.append(np.asarray(words, dtype=np.uint64))
        self._try_run()

    def receive(self, count: int, cycles: int) -> Received:
        take = self._output[:count]
        self._output = self._output[count:]
        return Received(take, last=self._armed is False and take.size > 0 and self._output.size == 0)

    def wait_done(self, cycles: int) -> bool:
        return bool(self.regs[register("STATUS").offset] & field_mask("STATUS", "DONE"))

    def _set_status(self, *, busy: bool, done: bool) -> None:
        self.regs[register("STATUS").offset] = (field_mask("STATUS", "BUSY") if busy else 0) | (
            field_mask("STATUS", "DONE") if done else 0)

    def _layer(self) -> dict:
        return {reg.name: self.regs[reg.offset] for reg in REGISTERS if reg.access == "rw"}

    def _try_run(self) -> None:
        if not self._armed:
            return
        cfg, layer = self.config, self._layer()
        c_in, c_out, k = layer["IN_CH"], layer["OUT_CH"], layer["KERNEL"]
        flags = layer["FLAGS"]

        def flag(name: str) -> bool:
            return bool(flags & field_mask("FLAGS", name))

        pool, add = flag("POOL"), flag("ADD")
        unsigned_in, unsigned_skip, unsigned_out = flag("IN_UNSIGNED"), flag("SKIP_UNSIGNED"), flag("OUT_UNSIGNED")
        comp_h, comp_w = computed_map(layer["OUT_H"], layer["OUT_W"], pool)
        t_out = stream_format.tiles(c_out, cfg.cols)
        n_input = stream_format.input_word_count(c_in, layer["IN_H"], layer["IN_W"], cfg)
        skip_pixels = comp_h * comp_w if add else 0
        n_tile = stream_format.cotile_word_count(c_in, k, cfg, skip_pixels=skip_pixels)
        words = np.concatenate(self._input) if self._input else np.zeros(0, dtype=np.uint64)
        if words.size < n_input + t_out * n_tile:
            return  # the engine would wait for the rest of the stream
        self._input = [words[n_input + t_out * n_tile :]]
        input_part, cotiles = stream_format.split_job_words(
            words[: n_input + t_out * n_tile], c_in=c_in, height=layer["IN_H"], width_px=layer["IN_W"], kernel=k,
            c_out=c_out, config=cfg, skip_pixels=skip_pixels)
        x = stream_format.decode_input_words(input_part, c_in, layer["IN_H"], layer["IN_W"], cfg, unsigned=unsigned_in)
        tiles = [stream_format.decode_cotile_words(part, c_in, k, cfg, skip_pixels=skip_pixels,
                                                   skip_unsigned=unsigned_skip) for part in cotiles]
        part = {key: np.concatenate([tile[key] for tile in tiles])[:c_out] for key in tiles[0]}
        skip = part["skip"].reshape(1, c_out, comp_h, comp_w) if add else None
        out = golden.conv_job(
            x[None], part["weights"], part["bias"], stride=layer["STRIDE"], pad_top=layer["PAD_TOP"],
            pad_left=layer["PAD_LEFT"], out_h=layer["OUT_H"], out_w=layer["OUT_W"],
            shift=part["shift"], relu=flag("RELU"), pool=pool, width=cfg.width, skip=skip,
            skip_shift=part["skip_shift"], unsigned_in=unsigned_in, unsigned_skip=unsigned_skip,
            unsigned_out=unsigned_out,
        )
        self._output = np.concatenate([self._output, stream_format.output_words(out.values[0], cfg)])
        self.regs[register("CYCLES").offset] = job_cycles(cfg, layer)
        self.regs[register("SATURATED").offset] = out.saturated
        self._armed = False
        self._set_status(busy=False, done=True)
