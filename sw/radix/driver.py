"""The host driver: runs a program layer by layer on an engine through any transport.

For each layer it checks the engine can run it, splits it into jobs that fit the engine's
buffers (bands of output rows; a fully connected layer is one 1x1 job), and for each job writes
the layer registers, starts the engine, streams the input map and the weights, collects the
outputs and waits for DONE — every wait bounded. The same code drives the reference model, the
RTL simulation and the board. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import golden, stream_format
from .cycle_model import job_cycles
from .engine_spec import ENGINE_ID, ENGINE_VERSION, REGISTERS, EngineConfig, field_mask, register
from .program import Layer, Program
from .transport import Transport

REGISTER_FIELD_MAX = 0xFFFF  # layer size registers are 16 bits wide in the gateware
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
        for layer in program.layers:
            self._band_rows(layer)

    def _band_rows(self, layer: Layer) -> int:
        """Output rows per job for ``layer``; raises naming the limit when not even one row fits."""
        cfg = self.config
        c_in, k = _reduction_channels(layer), layer.kernel
        t_in = stream_format.tiles(c_in, cfg.rows)
        where = f"layer {layer.name}"
        if t_in * k * k * cfg.rows > cfg.wt_depth:
            raise EngineMismatch(
                f"{where}: {t_in * k * k * cfg.rows} weight rows per output tile exceed the engine's WT_DEPTH {cfg.wt_depth}"
            )
        if layer.kind == "fc":
            if t_in > cfg.in_depth:
                raise EngineMismatch(f"{where}: {t_in} input pixel groups exceed the engine's IN_DEPTH {cfg.in_depth}")
            return 1
        _, h, w = layer.in_shape
        h_out, w_out = _conv_out(layer)
        if max(c_in, layer.weights.shape[0], h, w) > REGISTER_FIELD_MAX:
            raise EngineMismatch(f"{where}: a dimension exceeds the 16-bit layer registers")
        step = 2 if layer.pool else 1
        if w_out * step > cfg.acc_depth:
            raise EngineMismatch(f"{where}: {step} output row(s) of {w_out} pixels exceed the engine's ACC_DEPTH {cfg.acc_depth}")
        rows = min(cfg.acc_depth // w_out, _rows_for_input(cfg.in_depth // (t_in * w), k, layer.stride))
        rows = min(rows, h_out)
        rows -= rows % step
        if rows < step:
            raise EngineMismatch(
                f"{where}: {step} output row(s) need {t_in * ((step - 1) * layer.stride + k) * w} input pixel groups, "
                f"the engine's IN_DEPTH is {cfg.in_depth}"
            )
        return rows

    def plan(self, layer: Layer, x) -> list[Job]:
        """Split one layer on input ``x`` (one image, integers) into engine jobs."""
        cfg = self.config
        c_out = layer.weights.shape[0]
        shift = golden.clamp_shift(layer.shift, cfg.width)
        if layer.kind == "fc":
            x_map = np.asarray(x).reshape(-1, 1, 1)
            weights = layer.weights.reshape(c_out, -1, 1, 1)
            regs = _registers(c_in=x_map.shape[0], in_h=1, in_w=1, c_out=c_out, out_h=1, out_w=1, kernel=1, stride=1,
                              pad_top=0, pad_left=0, relu=layer.relu, pool=False)
            words = stream_format.job_words(x_map, weights, layer.bias, shift, cfg)
            return [Job(regs, words, slice(0, 1), (c_out, 1, 1))]
        x = np.asarray(x)
        _, h, w = x.shape
        h_out, w_out = _conv_out(layer)
        rows = self._band_rows(layer)
        cotiles = [stream_format.cotile_words(layer.weights, layer.bias, shift, t, cfg)
                   for t in range(stream_format.tiles(c_out, cfg.cols))]
        jobs = []
        # with pooling, h_out and rows are even, so every band pools whole 2x2 windows
        for r0 in range(0, h_out, rows):
            n = min(rows, h_out - r0)
            y_start = r0 * layer.stride - layer.pad
            y0, y1 = max(0, y_start), min(h, y_start + (n - 1) * layer.stride + layer.kernel)
            regs = _registers(c_in=x.shape[0], in_h=y1 - y0, in_w=w, c_out=c_out, out_h=n, out_w=w_out,
                              kernel=layer.kernel, stride=layer.stride, pad_top=y0 - y_start, pad_left=layer.pad,
                              relu=layer.relu, pool=layer.pool)
            words = np.concatenate([stream_format.input_words(x[:, y0:y1], cfg)] + cotiles)
            div = 2 if layer.pool else 1
            jobs.append(Job(regs, words, slice(r0 // div, (r0 + n) // div), (c_out, n // div, w_out // div)))
        return jobs

    # -- execution ------------------------------------------------------------------------
    def run_job(self, job: Job, where: str) -> tuple[np.ndarray, int, int]:
        """Run one job; returns its ``(C_out, h, w)`` output, cycles and saturated count."""
        t, cfg = self.transport, self.config
        for name, value in job.registers.items():
            t.write(register(name).offset, value)
        t.write(register("STATUS").offset, field_mask("STATUS", "DONE"))
        t.write(register("CTRL").offset, field_mask("CTRL", "START"))
        t.send(job.words)
        c_out, oh, ow = job.out_shape
        expected = stream_format.output_word_count(c_out, oh, ow, cfg)
        budget = max(MIN_WAIT_CYCLES, self.wait_factor * job_cycles(cfg, job.registers))
        got = t.receive(expected, budget)
        if got.words.size < expected:
            if got.words.size and got.last:
                raise StreamLengthError(f"{where}: output stream ended (TLAST) after {got.words.size} words, expected {expected}")
            raise EngineTimeout(f"{where}: {got.words.size} of {expected} output words after {budget} cycles\n{self.dump()}")
        if got.words.size > expected or not got.last:
            raise StreamLengthError(f"{where}: output stream longer than the expected {expected} words (no TLAST on the last one)")
        if not t.wait_done(budget):
            raise EngineTimeout(f"{where}: STATUS.DONE not set after {budget} cycles\n{self.dump()}")
        values = stream_format.decode_output(got.words, c_out, oh, ow, cfg)
        return values, t.read(register("CYCLES").offset), t.read(register("SATURATED").offset)

    def run_layer(self, layer: Layer, x) -> LayerRun:
        """Run one layer on one image's integer input."""
        jobs = self.plan(layer, x)
        out = np.zeros(_layer_out_shape(layer), dtype=np.int64)
        cycles = saturated = 0
        for index, job in enumerate(jobs):
            values, job_cycles_measured, job_saturated = self.run_job(job, f"layer {layer.name} job {index + 1}/{len(jobs)}")
            if layer.kind == "fc":
                out = values.reshape(-1)
            else:
                out[:, job.out_rows] = values
            cycles += job_cycles_measured
            saturated += job_saturated
        return LayerRun(layer.name, out, cycles, saturated, len(jobs))

    def run_image(self, program: Program, x_q) -> ImageRun:
        """Run every layer of ``program`` on one quantized image ``(C, H, W)``."""
        run = ImageRun(logits=np.zeros(0, dtype=np.int64))
        current = np.asarray(x_q, dtype=np.int64)
        for layer in program.layers:
            result = self.run_layer(layer, current)
            run.layers.append(result)
            current = result.values
        run.logits = current.reshape(-1)
        return run

    def dump(self) -> str:
        """Every register, for error reports."""
        return "registers: " + ", ".join(f"{reg.name}=0x{self.transport.read(reg.offset):X}" for reg in REGISTERS)


def _reduction_channels(layer: Layer) -> int:
    return int(np.prod(layer.in_shape)) if layer.kind == "fc" else layer.in_shape[0]


def _conv_out(layer: Layer) -> tuple[int, int]:
    """The convolution output the engine computes: with pooling, an odd last row/column is
    never computed (docs/arithmetic.md §6)."""
    _, h, w = layer.in_shape
    h_out = golden.conv_output_size(h, layer.kernel, layer.stride, layer.pad)
    w_out = golden.conv_output_size(w, layer.kernel, layer.stride, layer.pad)
    if layer.pool:
        return h_out - h_out % 2, w_out - w_out % 2
    return h_out, w_out


def _layer_out_shape(layer: Layer) -> tuple[int, ...]:
    return tuple(layer.out_shape) if layer.kind == "conv" else (layer.weights.shape[0],)


def _rows_for_input(input_rows: int, kernel: int, stride: int) -> int:
    """Most output rows whose input rows ``(n-1)*stride + kernel`` fit ``input_rows``."""
    return max(0, (input_rows - kernel) // stride + 1)


def _registers(*, c_in, in_h, in_w, c_out, out_h, out_w, kernel, stride, pad_top, pad_left, relu, pool) -> dict:
    flags = (field_mask("FLAGS", "RELU") if relu else 0) | (field_mask("FLAGS", "POOL") if pool else 0)
    return {"IN_CH": c_in, "IN_H": in_h, "IN_W": in_w, "OUT_CH": c_out, "OUT_H": out_h, "OUT_W": out_w,
            "KERNEL": kernel, "STRIDE": stride, "PAD_TOP": pad_top, "PAD_LEFT": pad_left, "FLAGS": flags}
