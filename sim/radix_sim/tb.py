"""cocotb testbench of the whole engine: clock, reset, AXI4-Lite master, AXI4-Stream source/sink.

The source inserts random idle cycles and the sink random backpressure, both from a fixed seed so
a failure reproduces. Every wait is bounded; a timeout raises :class:`JobTimeout` with the
register state. Jobs (random layers and their golden results) come from :func:`random_job`.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from radix import golden, jobs, stream_format
from radix.runner import natural_shift
from radix.engine_spec import LAYER_REGISTERS, REGISTERS, EngineConfig, computed_map, field_mask, register

CLOCK_NS = 10
RESET_CYCLES = 8
REGISTER_TIMEOUT_CYCLES = 200  # one AXI4-Lite access, backpressure included
CONFIG_REGISTERS = {"rows": "ROWS", "cols": "COLS", "width": "DATA_WIDTH", "in_depth": "IN_DEPTH",
                    "wt_depth": "WT_DEPTH", "acc_depth": "ACC_DEPTH"}


class JobTimeout(AssertionError):
    """A bounded wait expired; the message names the engine's register state."""


@dataclass(frozen=True)
class JobResult:
    """What one job produced."""

    words: np.ndarray  # output stream words, uint64
    cycles: int  # CYCLES register
    saturated: int  # SATURATED register


@dataclass(frozen=True)
class Job:
    """One engine job and its golden outcome."""

    layer: dict  # layer register name -> value
    words: np.ndarray  # input stream words, uint64
    expected: np.ndarray  # expected output stream words, uint64
    saturated: int  # expected SATURATED
    description: str


def _pauses(rng: random.Random, probability: float):
    """Endless pause pattern: True (pause) with ``probability``."""
    while True:
        yield rng.random() < probability


class EngineTB:
    """Drives one ``radix_engine`` instance.

    Parameters
    ----------
    dut:
        The cocotb handle of the top level.
    seed:
        Seed of the idle and backpressure patterns.
    idle:
        Probability that the input stream source inserts an idle cycle.
    backpressure:
        Probability that the output stream sink deasserts TREADY in a cycle.
    """

    def __init__(self, dut, *, seed: int = 1, idle: float = 0.2, backpressure: float = 0.3):
        for name, value in (("idle", idle), ("backpressure", backpressure)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} probability {value} outside [0, 1)")
        self.dut = dut
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        rng = random.Random(seed)
        if idle:
            self.source.set_pause_generator(_pauses(random.Random(rng.random()), idle))
        if backpressure:
            self.sink.set_pause_generator(_pauses(random.Random(rng.random()), backpressure))
        for model in (self.axil.write_if, self.axil.read_if, self.source, self.sink):
            model.log.setLevel(logging.WARNING)  # one INFO line per access drowns the job log
        self.config: EngineConfig | None = None

    async def start(self) -> None:
        """Start the clock and apply a synchronous reset."""
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, RESET_CYCLES)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def bounded(self, awaitable, cycles: int, what: str):
        """Await ``awaitable`` for at most ``cycles`` clock cycles, else raise :class:`JobTimeout`."""
        try:
            return await with_timeout(awaitable, cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise JobTimeout(f"{what}: no answer within {cycles} cycles") from None

    async def read(self, address: int) -> tuple[int, AxiResp]:
        """Read one 32-bit word at a byte address: ``(value, response)``."""
        resp = await self.bounded(self.axil.read(address, 4), REGISTER_TIMEOUT_CYCLES, f"read 0x{address:03X}")
        return int.from_bytes(resp.data, "little"), resp.resp

    async def write(self, address: int, data: bytes | int) -> AxiResp:
        """Write a 32-bit value (int) or bytes (with strobes from the address) at a byte address."""
        payload = data.to_bytes(4, "little") if isinstance(data, int) else bytes(data)
        resp = await self.bounded(self.axil.write(address, payload), REGISTER_TIMEOUT_CYCLES, f"write 0x{address:03X}")
        return resp.resp

    async def read_reg(self, name: str) -> int:
        """Read a register by name; a response other than OKAY fails."""
        value, resp = await self.read(register(name).offset)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"reading {name} answered {resp!r}")
        return value

    async def write_reg(self, name: str, value: int) -> None:
        """Write a register by name; a response other than OKAY fails."""
        resp = await self.write(register(name).offset, value)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"writing {name} answered {resp!r}")

    async def read_config(self) -> EngineConfig:
        """The engine's build parameters as its registers report them (kept in ``self.config``)."""
        values = {param: await self.read_reg(reg) for param, reg in CONFIG_REGISTERS.items()}
        self.config = EngineConfig(**values)
        return self.config

    async def register_state(self) -> str:
        """All registers as ``NAME=0x...`` for error messages (reads without timeouts raising)."""
        parts = []
        for reg in REGISTERS:
            try:
                value, _ = await self.read(reg.offset)
                parts.append(f"{reg.name}=0x{value:X}")
            except JobTimeout:
                parts.append(f"{reg.name}=<no answer>")
        return " ".join(parts)

    async def wait_done(self, cycles: int) -> int:
        """Poll STATUS until DONE is set, for at least ``cycles`` clock cycles; returns STATUS."""
        done = field_mask("STATUS", "DONE")
        poll = 8
        for _ in range(cycles // poll + 1):
            status = await self.read_reg("STATUS")
            if status & done:
                return status
            await ClockCycles(self.dut.clk, poll)
        raise JobTimeout(f"STATUS.DONE not set within {cycles} cycles; {await self.register_state()}")

    async def run_job(self, layer: dict, words, *, timeout_cycles: int | None = None, irq: bool = False) -> JobResult:
        """Program ``layer``, START, stream ``words`` in and collect the output frame.

        Returns the output words, CYCLES and SATURATED, and clears STATUS.DONE. Raises
        :class:`JobTimeout` (naming the register state) if the output frame or DONE does not come
        within ``timeout_cycles`` (default: scaled from the input length).
        """
        unknown = set(layer) - set(LAYER_REGISTERS)
        if unknown:
            raise ValueError(f"not layer registers: {', '.join(sorted(unknown))}")
        words = np.asarray(words, dtype=np.uint64)
        if timeout_cycles is None:
            timeout_cycles = 20 * words.size + 20_000
        for name in LAYER_REGISTERS:
            await self.write_reg(name, int(layer.get(name, 0)))
        ctrl = field_mask("CTRL", "START") | (field_mask("CTRL", "IRQ_EN") if irq else 0)
        await self.write_reg("CTRL", ctrl)
        await self.source.send(words_frame(words))
        try:
            frame = await with_timeout(self.sink.recv(), timeout_cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise JobTimeout(
                f"no complete output frame within {timeout_cycles} cycles (input stream sent: "
                f"{self.source.idle()}); {await self.register_state()}"
            ) from None
        await self.wait_done(REGISTER_TIMEOUT_CYCLES)
        if not self.source.idle():
            raise AssertionError("the engine finished before it accepted the whole input stream")
        cycles = await self.read_reg("CYCLES")
        saturated = await self.read_reg("SATURATED")
        await self.write_reg("STATUS", field_mask("STATUS", "DONE"))
        data = bytes(frame.tdata)
        if len(data) % 8:
            raise AssertionError(f"output frame of {len(data)} bytes is not whole 64-bit words")
        return JobResult(np.frombuffer(data, dtype="<u8").astype(np.uint64), cycles, saturated)


def words_frame(words) -> AxiStreamFrame:
    """An AXI4-Stream frame of 64-bit words (little-endian bytes)."""
    return AxiStreamFrame(np.asarray(words, dtype=np.uint64).astype("<u8").tobytes())


def _random_values(rng: np.random.Generator, shape, bits: int, *, unsigned: bool = False) -> np.ndarray:
    lo, hi = golden.tensor_range(bits, unsigned=unsigned)
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)


@dataclass(frozen=True)
class Geometry:
    """The shape of one job: a whole layer (symmetric padding) or a spatial tile of one."""

    c_in: int
    c_out: int
    height: int
    width: int
    kernel: int
    stride: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int
    pool: bool

    @property
    def is_layer(self) -> bool:
        """Whether this is a whole layer that ``golden.conv2d`` describes."""
        pad = self.pad_top
        return (
            self.pad_left == pad
            and self.out_h == golden.conv_output_size(self.height, self.kernel, self.stride, pad)
            and self.out_w == golden.conv_output_size(self.width, self.kernel, self.stride, pad)
        )


def fits(config: EngineConfig, g: Geometry) -> bool:
    """Whether job ``g`` fits the engine's buffers.

    The driver's rule (:func:`radix.jobs.band_rows`: one output tile's weight rows in a weight
    bank, the computed map in an accumulator bank, which also bounds a residual add's skip
    pixels to one skip bank) with the job as one band of its layer, and the whole input map in
    the input buffer (``T_in*H*W`` pixel groups): the testbench sends every row of its tile,
    the driver only the rows its band reads.
    """
    t_in = math.ceil(g.c_in / config.rows)
    if t_in * g.height * g.width > config.in_depth:
        return False
    geometry = jobs.Geometry(kind="conv", c_in=g.c_in, c_out=g.c_out, height=g.height, width=g.width,
                             kernel=g.kernel, stride=g.stride, pad_top=g.pad_top, pad_left=g.pad_left,
                             out_h=g.out_h, out_w=g.out_w, pool=g.pool)
    try:
        rows = jobs.band_rows(geometry, config)
    except jobs.LayerFitError:
        return False
    return rows >= computed_map(g.out_h, g.out_w, g.pool)[0]


def random_geometry(rng: np.random.Generator, config: EngineConfig, *, max_channels: int, max_size: int,
                    tile_probability: float) -> Geometry:
    """A random job shape that fits ``config``; a tile has its own bottom/right padding."""
    while True:
        kernel = int(rng.choice([1, 2, 3, 3, 3, 5, 7]))
        stride = int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
        pads = rng.integers(0, kernel - 1, size=4, endpoint=True)
        if rng.random() >= tile_probability:
            pads[:] = pads[0]  # a whole layer: the same padding on every side
        top, left, bottom, right = (int(p) for p in pads)
        height = int(rng.integers(1, max_size, endpoint=True))
        width = int(rng.integers(1, max_size, endpoint=True))
        out_h = (top + height + bottom - kernel) // stride + 1
        out_w = (left + width + right - kernel) // stride + 1
        if out_h < 1 or out_w < 1:
            continue
        geometry = Geometry(
            c_in=int(rng.integers(1, max_channels, endpoint=True)),
            c_out=int(rng.integers(1, max_channels, endpoint=True)),
            height=height, width=width, kernel=kernel, stride=stride, pad_top=top, pad_left=left,
            out_h=out_h, out_w=out_w, pool=bool(rng.random() < 0.4) and out_h >= 2 and out_w >= 2,
        )
        if fits(config, geometry):
            return geometry


def random_skip(rng: np.random.Generator, config: EngineConfig, g: Geometry, w, bias, shift, *,
                unsigned: bool = False):
    """A residual add's skip map ``(C_out, OUT_H, OUT_W)``, signed or ``unsigned`` (§1), and
    per-channel skip shifts (§9).

    Most channels take the skip shift that puts the skip at the output's scale (``-shift``
    plus a little, so it competes with the accumulator and often saturates), some an end of
    the range (the largest left shift ``-(A-W-2)``, one less for an unsigned skip, -1, 0, 1,
    ``W``). About a quarter *show the skip*: their weights become zero, their bias tiny and
    their data shift about ``-t``, so ``round_shift(skip, t)`` reaches the output bit for bit,
    rounding included, for shifts drawn over the whole range. ``w``, ``bias`` and ``shift`` of
    those channels are updated.
    """
    width = config.width
    skip = _random_values(rng, (g.c_out, g.out_h, g.out_w), width, unsigned=unsigned)
    lo_skip, hi_skip = golden.skip_shift_range(width, unsigned=unsigned)
    lo_shift, hi_shift = golden.shift_range(width)
    skip_shift = -shift + rng.integers(-2, 2, size=g.c_out, endpoint=True)
    extremes = rng.random(g.c_out) < 0.15
    skip_shift[extremes] = rng.choice([lo_skip, lo_skip + 1, -1, 0, 1, hi_skip], size=int(extremes.sum()))
    skip_shift = np.clip(skip_shift, lo_skip, hi_skip)
    shown = rng.random(g.c_out) < 0.25
    for c in np.flatnonzero(shown):
        skip_shift[c] = rng.integers(lo_skip, hi_skip, endpoint=True)
        w[c] = 0
        bias[c] = rng.integers(-3, 3, endpoint=True)
        shift[c] = np.clip(-skip_shift[c] + rng.integers(0, 2, endpoint=True), lo_shift, hi_shift)
    return skip, skip_shift


def random_job(rng: np.random.Generator, config: EngineConfig, *, max_channels: int = 12, max_size: int = 9,
               tile_probability: float = 0.3, add_probability: float = 0.4) -> Job:
    """A random convolution job that fits ``config``, with its golden output words.

    Whole layers are checked with ``golden.conv2d``, spatial tiles (padding that differs per side)
    with ``golden.conv_job``. A job has a residual add (FLAGS.ADD, :func:`random_skip`) with
    ``add_probability``; its input, skip and output tensors are each unsigned (FLAGS.IN_UNSIGNED,
    SKIP_UNSIGNED, OUT_UNSIGNED; docs/arithmetic.md §1) with probability one half.
    """
    g = random_geometry(rng, config, max_channels=max_channels, max_size=max_size, tile_probability=tile_probability)
    relu = bool(rng.random() < 0.5)
    add = bool(rng.random() < add_probability)
    unsigned_in, unsigned_skip, unsigned_out = (bool(u) for u in rng.random(3) < 0.5)
    return geometry_job(rng, config, g, relu=relu, add=add, unsigned_in=unsigned_in,
                        unsigned_skip=add and unsigned_skip, unsigned_out=unsigned_out)


def skip_reuse_job(rng: np.random.Generator, config: EngineConfig, *, pool: bool) -> Job:
    """A residual add whose tiles each take one pass (1x1 kernel, one input-channel tile) over
    an 8x8 map, with six output-channel tiles: with the output stream stalled, the loader would
    refill a skip bank while the tile two before is still reading it, unless it waits for the
    accumulator's skip release."""
    side = 8
    g = Geometry(c_in=config.rows, c_out=6 * config.cols, height=side, width=side, kernel=1, stride=1, pad_top=0,
                 pad_left=0, out_h=side, out_w=side, pool=pool)
    if not fits(config, g):
        raise ValueError(f"{config} is too small for an {side}x{side} skip reuse job")
    return geometry_job(rng, config, g, relu=False, add=True)


def geometry_job(rng: np.random.Generator, config: EngineConfig, g: Geometry, *, relu: bool, add: bool,
                 unsigned_in: bool = False, unsigned_skip: bool = False, unsigned_out: bool = False) -> Job:
    """A job of shape ``g`` with random data, weights, biases and shifts (and, with ``add``, a
    skip map and skip shifts), its tensors of the given signedness, and its golden output words."""
    width, acc_bits = config.width, config.acc_width
    x = _random_values(rng, (g.c_in, g.height, g.width), width, unsigned=unsigned_in)
    w = _random_values(rng, (g.c_out, g.c_in, g.kernel, g.kernel), width)
    # Mostly biases and shifts near the products' scale (2W bits), with the extremes now and then.
    drop = 0 if rng.random() < 0.1 else acc_bits - 1 - 2 * width + int(rng.integers(-2, 2, endpoint=True))
    bias = _random_values(rng, g.c_out, acc_bits - 1) >> drop
    lo_shift, hi_shift = golden.shift_range(width)
    natural = natural_shift(width, g.c_in * g.kernel * g.kernel) + int(unsigned_in)
    shift = rng.integers(natural - 3, natural + 4, size=g.c_out)
    extremes = rng.random(g.c_out) < 0.1
    shift[extremes] = rng.choice([lo_shift, -1, 0, 1, hi_shift - 1, hi_shift], size=int(extremes.sum()))
    shift = np.clip(shift, lo_shift, hi_shift)
    skip = skip_shift = stream_skip = None
    if add:
        skip, skip_shift = random_skip(rng, config, g, w, bias, shift, unsigned=unsigned_skip)
        comp_h, comp_w = computed_map(g.out_h, g.out_w, g.pool)
        stream_skip = skip[:, :comp_h, :comp_w]  # the stream and conv_job carry the computed map

    signedness = {"unsigned_in": unsigned_in, "unsigned_skip": unsigned_skip, "unsigned_out": unsigned_out}
    if g.is_layer:
        result = golden.conv2d(x[None], w, bias, stride=g.stride, pad=g.pad_top, shift=shift, relu=relu,
                               pool=g.pool, width=width, skip=None if skip is None else skip[None],
                               skip_shift=skip_shift, **signedness)
    else:
        result = golden.conv_job(x[None], w, bias, stride=g.stride, pad_top=g.pad_top, pad_left=g.pad_left,
                                 out_h=g.out_h, out_w=g.out_w, shift=shift, relu=relu, pool=g.pool, width=width,
                                 skip=None if skip is None else stream_skip[None], skip_shift=skip_shift,
                                 **signedness)
    flags = {"RELU": relu, "POOL": g.pool, "ADD": add, "IN_UNSIGNED": unsigned_in, "SKIP_UNSIGNED": unsigned_skip,
             "OUT_UNSIGNED": unsigned_out}
    layer = {
        "IN_CH": g.c_in, "IN_H": g.height, "IN_W": g.width, "OUT_CH": g.c_out, "OUT_H": g.out_h,
        "OUT_W": g.out_w, "KERNEL": g.kernel, "STRIDE": g.stride, "PAD_TOP": g.pad_top, "PAD_LEFT": g.pad_left,
        "FLAGS": sum(field_mask("FLAGS", name) for name, on in flags.items() if on),
    }
    description = (
        f"{'layer' if g.is_layer else 'tile'} {g.c_in}x{g.height}x{g.width} -> {g.c_out}x{g.out_h}x{g.out_w} "
        f"k={g.kernel} S={g.stride} pad_top={g.pad_top} pad_left={g.pad_left} relu={relu} pool={g.pool} "
        f"add={add} shifts={shift.tolist()}" + (f" skip_shifts={skip_shift.tolist()}" if add else "")
        + "".join(f" {name}" for name, on in signedness.items() if on)
    )
    return Job(
        layer=layer,
        words=stream_format.job_words(x, w, bias, shift, config, skip=stream_skip, skip_shift=skip_shift),
        expected=stream_format.output_words(result.values[0], config),
        saturated=result.saturated,
        description=description,
    )


def compare_words(job: Job, actual, config: EngineConfig) -> None:
    """Fail naming the first differing word (tile, pixel, word) and the count of differences."""
    actual = np.asarray(actual, dtype=np.uint64)
    if actual.size != job.expected.size:
        raise AssertionError(f"{job.description}: {actual.size} output words, expected {job.expected.size}")
    wrong = np.flatnonzero(actual != job.expected)
    if wrong.size:
        first = int(wrong[0])
        pixel, word = divmod(first, config.wt_words)
        pixels = job.expected.size // config.wt_words // stream_format.tiles(job.layer["OUT_CH"], config.cols)
        tile, pixel = divmod(pixel, pixels)
        raise AssertionError(
            f"{job.description}: {wrong.size} of {actual.size} output words differ; first at word {first} "
            f"(channel tile {tile}, pixel {pixel}, word {word}): got 0x{int(actual[first]):016X}, "
            f"expected 0x{int(job.expected[first]):016X}"
        )
