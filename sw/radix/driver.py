"""The host driver: runs a program layer by layer on an engine through any transport.

For each layer it checks the engine can run it, splits it into jobs that fit the engine's
buffers (bands of output rows, :mod:`radix.jobs`; a fully connected layer is one 1x1 job), and for
each job writes the layer registers, starts the engine, streams the input map, the biases, a
residual add's skip pixels and the weights, collects the outputs and waits for DONE — every wait
bounded. A program is a graph: the driver keeps every tensor until its last reader has run; a
concatenation only places tensors side by side (docs/arithmetic.md §11), the host does no
arithmetic on activations. Each job's FLAGS tell the engine the signedness of its input, skip and
output tensors (§1), as the layer records them. The same code drives the reference model, the
RTL simulation and the board. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import golden, jobs, network, stream_format
from .cycle_model import job_cycles
from .engine_spec import (ENGINE_ID, ENGINE_VERSION, REGISTERS, EngineConfig, computed_map, field_mask, register,
                          skip_shift_range)
from .program import INPUT, Layer, Program
from .transport import Transport

MIN_WAIT_CYCLES = 100_000


class DriverError(RuntimeError):
    """The engine or the program cannot go on; the message names the layer, job and register."""


class EngineMismatch(DriverError):
    """The program needs something this engine build does not have."""


class EngineTimeout(DriverError):
    """The engine did not finish within its budget; the message carries a register dump."""


class StreamLengthError(DriverError):
    """The output stream was shorter or longer than the job's output."""


@dataclass
class Job:
    """One engine job: registers, input stream and where its output rows go."""

    registers: dict
    words: np.ndarray
    out_rows: slice
    out_shape: tuple[int, int, int]


@dataclass
class LayerRun:
    """A layer's result on the engine: integer output, measured cycles and saturations."""

    name: str
    values: np.ndarray
    cycles: int
    saturated: int
    jobs: int


@dataclass
class ImageRun:
    logits: np.ndarray
    layers: list[LayerRun] = field(default_factory=list)

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)


def read_config(transport: Transport) -> EngineConfig:
    """Identify the engine and read its build parameters from the registers."""
    ident = transport.read(register("ID").offset)
    if ident != ENGINE_ID:
        raise EngineMismatch(f"register ID reads 0x{ident:08X}, not a Radix engine (0x{ENGINE_ID:08X})")
    version = transport.read(register("VERSION").offset)
    if version != ENGINE_VERSION:
        raise EngineMismatch(f"engine VERSION {version}, this driver speaks version {ENGINE_VERSION}")
    params = {}
    for reg in REGISTERS:
        if reg.build and reg.build != "acc_width":
            params[reg.build] = transport.read(reg.offset)
    try:
        config = EngineConfig(**params)
    except ValueError as exc:
        raise EngineMismatch(f"engine build registers are not a valid configuration: {exc}") from None
    acc = transport.read(register("ACC_WIDTH").offset)
    if acc != config.acc_width:
        raise EngineMismatch(f"engine ACC_WIDTH {acc} disagrees with its DATA_WIDTH {config.width}")
    return config


class Driver:
    """Runs programs on one engine. ``transport`` is any :class:`~radix.transport.Transport`."""

    def __init__(self, transport: Transport, *, wait_factor: int = 20):
        self.transport = transport
        self.config = read_config(transport)
        self.wait_factor = wait_factor

    # -- planning -------------------------------------------------------------------------
    def check(self, program: Program) -> None:
        """Refuse, before anything is sent, a program this engine cannot run (names layer and limit)."""
        cfg = self.config
        if program.width != cfg.width:
            raise EngineMismatch(
                f"program is {program.width}-bit, the engine's DATA_WIDTH is {cfg.width}: recalibrate with --bits {cfg.width}"
            )
        program.check_signedness("program")  # a ProgramError: the program breaks the contract on any engine
        for layer in program.layers:
            if layer.kind == "concat":
                continue
            self._band_rows(layer)
            lowest = skip_shift_range(cfg.width, unsigned=layer.unsigned_skip)[0]
            if layer.skip is not None and np.any(layer.skip_shift < lowest):
                raise EngineMismatch(f"layer {layer.name}: skip shift {int(layer.skip_shift.min())} below the "
                                     f"engine's {lowest} for a{'n unsigned' if layer.unsigned_skip else ' signed'} "
                                     f"skip (docs/arithmetic.md §9)")

    def _band_rows(self, layer: Layer) -> int:
        """Output rows per job for ``layer``; raises naming the layer and the limit when not even one fits."""
        try:
            return jobs.band_rows(layer.geometry(), self.config)
        except jobs.LayerFitError as exc:
            raise EngineMismatch(f"layer {layer.name}: {exc}") from None

    def plan(self, layer: Layer, x, skip=None) -> list[Job]:
        """Split one layer on input ``x`` (one image, integers) and its skip tensor into engine jobs."""
        cfg = self.config
        c_out = layer.weights.shape[0]
        shift = golden.clamp_shift(layer.shift, cfg.width)
        skip_shift = None
        if layer.skip is not None:
            skip_shift = np.minimum(layer.skip_shift, skip_shift_range(cfg.width)[1])
            skip = network.skip_of(layer, np.asarray(skip)[None])[0]
        if layer.kind == "fc":
            x_map = np.asarray(x).reshape(-1, 1, 1)
            weights = layer.weights.reshape(c_out, -1, 1, 1)
            regs = _registers(layer, c_in=x_map.shape[0], in_h=1, in_w=1, c_out=c_out, out_h=1, out_w=1, kernel=1,
                              stride=1, pad_top=0, pad_left=0)
            skip_map = None if skip is None else skip.reshape(c_out, 1, 1)
            words = stream_format.job_words(x_map, weights, layer.bias, shift, cfg, skip=skip_map,
                                            skip_shift=skip_shift)
            return [Job(regs, words, slice(0, 1), (c_out, 1, 1))]
        x = np.asarray(x)
        geometry = layer.geometry()
        comp_h, comp_w = computed_map(geometry.out_h, geometry.out_w, layer.pool)
        if skip is not None:
            skip = skip[:, :comp_h, :comp_w]
        jobs_out = []
        div = 2 if layer.pool else 1
        for r0, n in jobs.bands(geometry, cfg):
            y0, y1 = geometry.input_rows(r0, n)
            regs = _registers(layer, c_in=x.shape[0], in_h=y1 - y0, in_w=geometry.width, c_out=c_out, out_h=n,
                              out_w=comp_w, kernel=layer.kernel, stride=layer.stride,
                              pad_top=y0 - (r0 * layer.stride - geometry.pad_top), pad_left=geometry.pad_left)
            band_skip = None if skip is None else skip[:, r0 : r0 + n]
            words = stream_format.job_words(x[:, y0:y1], layer.weights, layer.bias, shift, cfg, skip=band_skip,
                                            skip_shift=skip_shift)
            jobs_out.append(Job(regs, words, slice(r0 // div, (r0 + n) // div), (c_out, n // div, comp_w // div)))
        return jobs_out

    # -- execution ------------------------------------------------------------------------
    def run_job(self, job: Job, where: str) -> tuple[np.ndarray, int, int]:
        """Run one job; returns its ``(C_out, h, w)`` output, cycles and saturated count."""
        t, cfg = self.transport, self.config
        for name, value in job.registers.items():
            t.write(register(name).offset, value)
        c_out, oh, ow = job.out_shape
        expected = stream_format.output_word_count(c_out, oh, ow, cfg)
        t.write(register("STATUS").offset, field_mask("STATUS", "DONE"))
        t.write(register("CTRL").offset, field_mask("CTRL", "START"))
        t.expect(expected)  # receive armed before the send starts
        t.send(job.words)
        budget = max(MIN_WAIT_CYCLES, self.wait_factor * job_cycles(cfg, job.registers))
        got = t.receive(expected, budget)
        if got.words.size < expected:
            if got.words.size and got.last:
                self._failed(StreamLengthError,
                             f"{where}: output stream ended (TLAST) after {got.words.size} words, expected {expected}")
            self._failed(EngineTimeout, f"{where}: {got.words.size} of {expected} output words after {budget} cycles")
        if got.words.size > expected or not got.last:
            self._failed(StreamLengthError,
                         f"{where}: output stream longer than the expected {expected} words (no TLAST on the last one)")
        if not t.wait_done(budget):
            self._failed(EngineTimeout, f"{where}: STATUS.DONE not set after {budget} cycles")
        unsigned = bool(job.registers["FLAGS"] & field_mask("FLAGS", "OUT_UNSIGNED"))
        values = stream_format.decode_output(got.words, c_out, oh, ow, cfg, unsigned=unsigned)
        return values, t.read(register("CYCLES").offset), t.read(register("SATURATED").offset)

    def run_layer(self, layer: Layer, x, skip=None) -> LayerRun:
        """Run one conv/fc layer on one image's integer input (and its skip tensor, with an add)."""
        jobs_planned = self.plan(layer, x, skip)
        out = np.zeros(_layer_out_shape(layer), dtype=np.int64)
        cycles = saturated = 0
        for index, job in enumerate(jobs_planned):
            where = f"layer {layer.name} job {index + 1}/{len(jobs_planned)}"
            values, job_cycles_measured, job_saturated = self.run_job(job, where)
            if layer.kind == "fc":
                out = values.reshape(-1)
            else:
                out[:, job.out_rows] = values
            cycles += job_cycles_measured
            saturated += job_saturated
        return LayerRun(layer.name, out, cycles, saturated, len(jobs_planned))

    def run_image(self, program: Program, x_q) -> ImageRun:
        """Run every layer of ``program`` on one quantized image ``(C, H, W)``.

        Tensors are kept until their last reader has run; a concatenation is data movement only.
        """
        run = ImageRun(logits=np.zeros(0, dtype=np.int64))
        tensors = {INPUT: np.asarray(x_q, dtype=np.int64)}
        readers: dict[str, int] = {}
        for layer in program.layers:
            for name in layer.inputs:
                readers[name] = readers.get(name, 0) + 1
        for layer in program.layers:
            inputs = [tensors[name] for name in layer.inputs]
            if layer.kind == "concat":
                result = LayerRun(layer.name, network.concatenate(layer, [v[None] for v in inputs])[0], 0, 0, 0)
            else:
                result = self.run_layer(layer, inputs[0], inputs[1] if len(inputs) > 1 else None)
            run.layers.append(result)
            tensors[layer.name] = result.values
            for name in layer.inputs:
                readers[name] -= 1
                if readers[name] == 0:
                    del tensors[name]
        run.logits = run.layers[-1].values.reshape(-1)
        return run

    def _failed(self, error: type[DriverError], message: str):
        """Raise ``error`` with the state at the failure, after resetting the engine (and the DMA,
        on the board) so that the next job starts clean."""
        state = self.dump()
        self.transport.reset()
        raise error(f"{message}\n{state}")

    def dump(self) -> str:
        """Every register and the transport's own state, for error reports."""
        text = "registers: " + ", ".join(f"{reg.name}=0x{self.transport.read(reg.offset):X}" for reg in REGISTERS)
        extra = self.transport.diagnostics()
        return f"{text}\n{extra}" if extra else text


def _layer_out_shape(layer: Layer) -> tuple[int, ...]:
    return tuple(layer.out_shape) if layer.kind == "conv" else (layer.weights.shape[0],)


def _registers(layer: Layer, *, c_in, in_h, in_w, c_out, out_h, out_w, kernel, stride, pad_top, pad_left) -> dict:
    """A job's layer registers; FLAGS from the layer (ReLU, pooling, residual add, signedness)."""
    add = layer.skip is not None
    flags = 0
    for name, on in (("RELU", layer.relu), ("POOL", layer.pool and layer.kind == "conv"), ("ADD", add),
                     ("IN_UNSIGNED", layer.unsigned_in), ("SKIP_UNSIGNED", add and layer.unsigned_skip),
                     ("OUT_UNSIGNED", layer.unsigned_out)):
        if on:
            flags |= field_mask("FLAGS", name)
    return {"IN_CH": c_in, "IN_H": in_h, "IN_W": in_w, "OUT_CH": c_out, "OUT_H": out_h, "OUT_W": out_w,
            "KERNEL": kernel, "STRIDE": stride, "PAD_TOP": pad_top, "PAD_LEFT": pad_left, "FLAGS": flags}
