# amaranth: UnusedElaboratable=no
"""ConvCore end to end: job streams in, output stream out, bit for bit against radix.golden."""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from radix import golden
from radix.engine_spec import EngineConfig, computed_map, pair
from radix.runner import natural_shift
from radix.stream_format import decode_output, job_words, output_word_count
from radix_hw.core import ConvCore


@dataclass(frozen=True)
class Layer:
    c_in: int
    c_out: int
    h: int
    w: int
    k: int | tuple[int, int]  # a square kernel, or (KH, KW)
    stride: int | tuple[int, int] = 1  # or (SH, SW)
    pad: int | tuple[int, int, int, int] = 0  # every side, or (top, left, bottom, right)
    relu: bool = False
    pool: bool = False
    add: bool = False
    unsigned_in: bool = False  # docs/arithmetic.md §1: the input, skip and output tensors' signedness
    unsigned_skip: bool = False
    unsigned_out: bool = False
    narrow: bool = False  # the input streams one word a pixel (narrow_in): c_in fits a word
    strip_rows: int = 0  # passes strip-major over strips of this many computed rows (0: one strip)
    weights_first: bool = False  # the first output tile's weight rows all precede the input tiles
    input_ahead: bool = False  # the input loads while the job before computes (the other half of the buffer)

    @property
    def kernel(self) -> tuple[int, int]:
        return pair(self.k, "kernel")

    @property
    def strides(self) -> tuple[int, int]:
        return pair(self.stride, "stride")

    @property
    def padding(self) -> tuple[int, int, int, int]:
        return golden.padding4(self.pad)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    @property
    def out_size(self) -> tuple[int, int]:
        (kh, kw), (sh, sw), (top, left, bottom, right) = self.kernel, self.strides, self.padding
        return (golden.conv_output_size(self.h, kh, sh, top, bottom),
                golden.conv_output_size(self.w, kw, sw, left, right))


@dataclass
class Job:
    layer: Layer
    words: list
    expected: golden.Requantized
    out_h: int
    out_w: int

    @property
    def registers(self) -> dict:
        lay = self.layer
        (kh, kw), (sh, sw), (top, left, _, _) = lay.kernel, lay.strides, lay.padding
        return {"in_ch": lay.c_in, "in_h": lay.h, "in_w": lay.w, "out_ch": lay.c_out,
                "out_h": self.out_h, "out_w": self.out_w, "kernel_h": kh, "kernel_w": kw, "stride_h": sh,
                "stride_w": sw, "pad_top": top, "pad_left": left, "relu": int(lay.relu),
                "pool": int(lay.pool), "add": int(lay.add), "in_unsigned": int(lay.unsigned_in),
                "skip_unsigned": int(lay.unsigned_skip), "out_unsigned": int(lay.unsigned_out),
                "narrow_in": int(lay.narrow), "strip_rows": lay.strip_rows, "weights_first": int(lay.weights_first),
                "input_ahead": int(lay.input_ahead), "in_mirror": 0}


def random_skip(layer: Layer, out_shape, weights, bias, shift, config: EngineConfig, rng):
    """A skip map of ``(C_out,) + out_shape`` and per-channel skip shifts (§9); updates
    ``weights``, ``bias`` and ``shift`` of the channels that show the skip.

    Most channels take the skip shift that puts the skip at the output's scale (``-shift``
    plus a little), so it competes with large accumulators. Every third channel, and the last,
    *shows the skip*: zero weights, a tiny bias and a data shift of about ``-t``, so
    ``round_shift(skip, t)`` reaches the output bit for bit (its rounding too); these take the
    ends of the range first (the largest left shift, the largest right shift, zero, +-1, one
    beyond the top, which the engine clamps without changing a result), then random shifts.
    """
    width = config.width
    lo, hi = golden.tensor_range(width, unsigned=layer.unsigned_skip)
    skip = rng.integers(lo, hi + 1, (layer.c_out,) + tuple(out_shape))
    skip.flat[:2] = lo, hi
    t_lo, t_hi = golden.skip_shift_range(width, unsigned=layer.unsigned_skip)
    s_lo, s_hi = golden.shift_range(width)
    skip_shift = np.clip(-golden.clamp_shift(shift, width) + rng.integers(-2, 3, layer.c_out), t_lo, t_hi)
    extremes = [t_lo, t_hi, 0, 1, -1, t_hi + 3, t_lo + 1, t_hi - 1, 2]
    shown = [c for c in range(layer.c_out) if c % 3 == 2 or c == layer.c_out - 1]
    for n, c in enumerate(shown):
        t = extremes[n] if n < len(extremes) else int(rng.integers(t_lo, t_hi + 1))
        skip_shift[c] = t
        weights[c] = 0
        bias[c] = rng.integers(-3, 4)
        shift[c] = np.clip(-t + rng.integers(0, 3), s_lo, s_hi)
    return skip, skip_shift


def make_job(layer: Layer, config: EngineConfig, rng) -> Job:
    """Random data, weights, biases and per-channel shifts (some saturating, some out of range);
    with ``layer.add`` a random skip map and skip shifts as well."""
    width = config.width
    lo, hi = golden.int_range(width)
    x_lo, x_hi = golden.tensor_range(width, unsigned=layer.unsigned_in)
    x = rng.integers(x_lo, x_hi + 1, (layer.c_in, layer.h, layer.w))
    weights = rng.integers(lo, hi + 1, (layer.c_out, layer.c_in) + layer.kernel)
    x.flat[0], weights.flat[0] = x_hi if layer.unsigned_in else x_lo, lo  # the largest product
    bias = rng.integers(-(1 << (2 * width + 2)), 1 << (2 * width + 2), layer.c_out)
    bias[0] = golden.int_range(config.acc_width - 1)[0]
    # Shifts near the accumulators' size keep most outputs in range; a few are extreme.
    shift = natural_shift(width, layer.c_in * layer.taps) + 1 + rng.integers(-3, 3, layer.c_out)
    extremes = [-width, config.acc_width, 0, -2, 60, -100]
    for c in range(min(layer.c_out - 1, len(extremes))):
        shift[c + 1] = extremes[c]
    out_h, out_w = layer.out_size
    skip = skip_shift = stream_skip = None
    if layer.add:
        skip, skip_shift = random_skip(layer, (out_h, out_w), weights, bias, shift, config, rng)
        comp_h, comp_w = computed_map(out_h, out_w, layer.pool)
        stream_skip = skip[:, :comp_h, :comp_w]  # the stream carries the computed map only
    expected = golden.conv2d(x[None], weights, bias, stride=layer.strides, pad=layer.padding,
                             shift=golden.clamp_shift(shift, width), relu=layer.relu,
                             pool=layer.pool, width=width,
                             skip=None if skip is None else skip[None], skip_shift=skip_shift,
                             unsigned_in=layer.unsigned_in, unsigned_skip=layer.unsigned_skip,
                             unsigned_out=layer.unsigned_out)
    words = [int(w) for w in job_words(x, weights, bias, shift, config, skip=stream_skip,
                                       skip_shift=skip_shift, narrow=layer.narrow,
                                       striped=bool(layer.strip_rows), weights_first=layer.weights_first)]
    return Job(layer, words, expected, out_h, out_w)


def run_jobs(config: EngineConfig, jobs: list[Job], *, seed: int, ready_prob=1.0, valid_prob=1.0,
             reset_after: int | None = None, ahead: bool = False, loaded_early: list | None = None):
    """Run jobs one after another on one core; returns (words, saturated, cycles) per job.

    With ``ahead``, as the engine's command unit does, the jobs' streams follow each other
    without a gap and each job's load starts as soon as the loader is idle, while the job
    before still computes; without it, a job's load starts right before its start.
    With ``reset_after``, a two-cycle reset cuts the first job off that many cycles after its
    start; that job returns no result. ``loaded_early`` gets, per job after the first, whether
    its load started before the job before was done.
    """
    if ahead and reset_after is not None:
        raise ValueError("reset_after runs the jobs one by one")
    # each job's registers, an input loaded ahead in the other half of the input buffer from the
    # job before's, as the command unit mirrors it
    registers, mirror = [], 0
    for job in jobs:
        mirror = int(job.layer.input_ahead and not mirror)
        registers.append(dict(job.registers, in_mirror=mirror))
    dut = ConvCore(config=config)
    top = Module()
    top.domains.sync = sync = ClockDomain("sync")
    top.submodules.core = dut
    rng = np.random.default_rng(seed)
    results = []
    state = {"job": None, "epoch": 0, "received": [],
             "words": [int(word) for job in jobs for word in job.words] if ahead else None}
    loaded = [False] * len(jobs)

    async def load(ctx, n):
        for _ in range(1000):
            if ctx.get(dut.load_idle):
                break
            await ctx.tick()
        assert ctx.get(dut.load_idle), "the loader never became idle"
        ctx.set(dut.load_layer, registers[n])
        ctx.set(dut.load_start, 1)
        await ctx.tick()
        ctx.set(dut.load_start, 0)
        loaded[n] = True

    async def control(ctx):
        for n, job in enumerate(jobs):
            received = []
            if not loaded[n]:
                await load(ctx, n)
            state.update(job=job, epoch=state["epoch"] + 1, received=received)
            ctx.set(dut.layer, registers[n])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            if n == 0 and reset_after is not None:
                await ctx.tick().repeat(reset_after)
                state.update(job=None, epoch=state["epoch"] + 1)
                loaded[n + 1:] = [False] * (len(jobs) - n - 1)
                ctx.set(sync.rst, 1)
                for _ in range(2):  # plain ticks: repeat() would raise DomainReset
                    await ctx.tick()
                ctx.set(sync.rst, 0)
                await ctx.tick()
                continue
            cycles, pulse = 1, False
            limit = 50 * len(job.words) + 20_000 + 4 * _ideal_cycles(config, job)
            while True:
                _, _, done, busy, idle = await ctx.tick().sample(dut.done, dut.busy, dut.load_idle)
                cycles += 1
                if pulse:
                    ctx.set(dut.load_start, 0)
                    pulse = False
                if done:
                    break
                assert busy and cycles < limit, "core hung"
                if ahead and n + 1 < len(jobs) and not loaded[n + 1] and idle:
                    ctx.set(dut.load_layer, registers[n + 1])
                    ctx.set(dut.load_start, 1)
                    pulse = loaded[n + 1] = True
            if loaded_early is not None and n + 1 < len(jobs):
                loaded_early.append(loaded[n + 1])
            assert not ctx.get(dut.busy)
            results.append((received, ctx.get(dut.saturated), cycles))
            if not ahead:
                await ctx.tick().repeat(3)

    async def send(ctx, words, current=lambda: True):
        """Offer ``words`` one a cycle under random stalls while ``current()``."""
        index = 0
        while index < len(words) and current():
            valid = rng.random() < valid_prob
            ctx.set(dut.s_in.valid, int(valid))
            ctx.set(dut.s_in.payload, words[index])
            _, _, ready = await ctx.tick().sample(dut.s_in.ready)
            if valid and ready:
                index += 1
        ctx.set(dut.s_in.valid, 0)

    async def source(ctx):
        if ahead:  # one stream of every job's words
            await send(ctx, state["words"])
            return
        while True:
            job, epoch = state["job"], state["epoch"]
            await send(ctx, job.words if job is not None else [], lambda: state["epoch"] == epoch)
            while state["epoch"] == epoch:
                await ctx.tick()

    async def sink(ctx):
        while True:
            ctx.set(dut.m_out.ready, int(rng.random() < ready_prob))
            _, _, valid, ready, data, last = await ctx.tick().sample(
                dut.m_out.valid, dut.m_out.ready, dut.m_out.payload.data, dut.m_out.payload.last)
            if valid and ready:
                state["received"].append((data, last))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink, background=True)
    sim.run()
    return results


def _ideal_cycles(config: EngineConfig, job: Job) -> int:
    lay = job.layer
    passes = math.ceil(lay.c_in / config.rows) * lay.taps * math.ceil(lay.c_out / config.cols)
    return passes * max(job.out_h * job.out_w, config.min_pass)


def check(config: EngineConfig, job: Job, received, saturated):
    values = job.expected.values[0]
    _, exp_h, exp_w = values.shape
    words = [w for w, _ in received]
    assert len(words) == output_word_count(job.layer.c_out, exp_h, exp_w, config)
    got = decode_output(words, job.layer.c_out, exp_h, exp_w, config, unsigned=job.layer.unsigned_out)
    np.testing.assert_array_equal(got, values)
    assert [last for _, last in received] == [0] * (len(received) - 1) + [1]
    assert saturated == job.expected.saturated


def small_config(rows, cols, width) -> EngineConfig:
    return EngineConfig(rows=rows, cols=cols, width=width, in_depth=1024, wt_depth=512,
                        acc_depth=256)


CASES = [
    # (rows, cols, width), layer, ready_prob, valid_prob
    ((3, 2, 8), Layer(5, 3, 6, 7, 3, stride=1, pad=1, relu=True), 1.0, 1.0),
    ((3, 2, 8), Layer(4, 5, 11, 10, 7, stride=3, pad=3), 0.5, 0.7),
    ((4, 5, 16), Layer(6, 7, 9, 8, 5, stride=2, pad=2, pool=True), 0.6, 0.8),
    ((4, 5, 8), Layer(9, 11, 9, 9, 1, stride=4), 0.7, 0.5),
    ((1, 1, 8), Layer(2, 3, 5, 6, 2, relu=True, pool=True), 0.5, 0.6),
    ((1, 1, 16), Layer(3, 2, 4, 4, 3, stride=2, pad=2), 1.0, 1.0),
    ((2, 3, 16), Layer(3, 4, 7, 7, 4, stride=2, pad=3, relu=True, pool=True), 0.4, 0.9),
    ((4, 5, 8), Layer(5, 6, 2, 2, 2, stride=1, pad=1, relu=True), 0.8, 0.8),  # P < min_pass
    ((3, 2, 16), Layer(4, 3, 5, 4, 6, stride=2, pad=5, pool=True), 0.9, 1.0),
    ((5, 3, 16), Layer(11, 4, 6, 6, 3, stride=1, pad=1, relu=True), 0.7, 0.7),  # 2-word groups
    # Residual add (FLAGS.ADD): skip pixels per output tile, docs/arithmetic.md §9.
    ((3, 5, 8), Layer(4, 7, 5, 6, 3, pad=1, relu=True, add=True), 0.6, 0.8),  # 2 tiles, part filled
    ((3, 5, 8), Layer(5, 16, 1, 1, 1, add=True), 0.7, 0.6),  # 1-pixel map (fully connected), 4 tiles
    ((3, 5, 8), Layer(2, 15, 1, 1, 1, relu=True, add=True), 1.0, 1.0),  # 1 pixel, single-pass tiles
    ((2, 3, 16), Layer(3, 10, 7, 7, 3, pad=0, pool=True, add=True), 0.5, 0.9),  # odd map cropped
    ((4, 5, 8), Layer(6, 15, 2, 2, 2, pad=1, relu=True, add=True), 0.8, 0.8),  # P < min_pass
    ((3, 2, 8), Layer(3, 11, 4, 5, 1, add=True), 1.0, 1.0),  # single-pass tiles back to back
    ((2, 5, 16), Layer(3, 9, 3, 4, 3, pad=1, relu=True, add=True), 0.7, 0.7),  # 2-word skip groups
    ((1, 1, 8), Layer(2, 3, 5, 6, 2, relu=True, pool=True, add=True), 0.5, 0.6),
    ((4, 3, 16), Layer(5, 3, 6, 5, 5, stride=2, pad=2, add=True), 0.9, 1.0),  # T_out = 1
    # Unsigned tensors (docs/arithmetic.md §1, §12): input, skip and output, with and without ReLU.
    ((3, 2, 8), Layer(5, 3, 6, 7, 3, pad=1, relu=True, unsigned_in=True, unsigned_out=True), 0.7, 0.8),
    ((4, 5, 8), Layer(6, 7, 9, 8, 5, stride=2, pad=2, pool=True, unsigned_in=True), 0.6, 0.8),
    ((2, 3, 16), Layer(3, 4, 7, 7, 4, stride=2, pad=3, pool=True, unsigned_out=True), 0.5, 0.9),
    ((3, 5, 8), Layer(4, 7, 5, 6, 3, pad=1, relu=True, add=True, unsigned_skip=True, unsigned_out=True), 0.6, 0.8),
    ((2, 5, 16), Layer(3, 9, 3, 4, 3, pad=1, add=True, unsigned_in=True, unsigned_skip=True), 0.7, 0.7),
    ((3, 2, 8), Layer(3, 11, 4, 5, 1, pool=True, add=True, unsigned_in=True, unsigned_skip=True,
                      unsigned_out=True), 1.0, 1.0),
    # Rectangular kernels and strides (KH x KW, SH x SW), padding different on every side.
    ((3, 2, 8), Layer(5, 3, 7, 6, (3, 1), stride=(2, 1), pad=(1, 0, 2, 0), relu=True), 0.7, 0.8),
    ((4, 5, 8), Layer(6, 7, 6, 10, (1, 3), stride=(1, 3), pad=(0, 2, 0, 1)), 0.6, 0.9),
    ((3, 2, 16), Layer(4, 5, 9, 8, (5, 2), stride=(2, 1), pad=(3, 1, 2, 0), pool=True), 0.8, 0.7),
    ((2, 3, 8), Layer(3, 4, 11, 9, (7, 4), stride=(2, 2), pad=(6, 3, 2, 1), relu=True, add=True), 0.5, 0.8),
    ((1, 1, 8), Layer(2, 3, 5, 9, (2, 7), stride=(4, 1), pad=(1, 6, 0, 3), unsigned_in=True), 1.0, 1.0),
    ((5, 3, 16), Layer(7, 4, 8, 5, (4, 1), stride=(3, 4), pad=(2, 0, 3, 0), add=True), 0.7, 0.7),  # 2-word groups
    # Kernels past 7 up to the limit of 15: DS-CNN's 10x4 stride-2 front with Keras "same"
    # padding on its 49x10 map (one channel), and a 15x2 kernel with the largest padding.
    ((2, 3, 8), Layer(1, 3, 49, 10, (10, 4), stride=(2, 2), pad=(4, 1, 5, 1), relu=True), 1.0, 1.0),
    ((3, 2, 8), Layer(2, 3, 16, 5, (15, 2), stride=(1, 2), pad=(14, 1, 13, 0)), 0.8, 0.9),
    # Narrow inputs (narrow_in): one word a pixel of a two-word input tile, the rest zero.
    ((5, 3, 16), Layer(3, 4, 6, 7, 3, pad=1, relu=True, narrow=True), 0.7, 0.8),
    ((9, 4, 8), Layer(8, 5, 7, 6, (3, 2), stride=(2, 1), pad=(1, 1, 1, 0), add=True, narrow=True), 0.6, 0.9),
    # Strips of rows (strip_rows): each strip's passes before the next strip's, the accumulator banks
    # alternating between strips; a last strip of fewer rows, strips across pooled row pairs (odd
    # strip sizes too), residual adds read from the tile's skip bank at the strip's pixels (the
    # random jobs below draw strips as well).
    ((3, 2, 8), Layer(5, 3, 9, 7, 3, stride=1, pad=1, pool=True, strip_rows=3), 0.7, 0.9),
    ((3, 5, 8), Layer(4, 7, 5, 6, 3, pad=1, relu=True, add=True, strip_rows=1), 0.6, 0.8),  # 2 tiles
    ((9, 4, 8), Layer(8, 5, 7, 6, (3, 2), stride=(2, 1), pad=(1, 1, 1, 0), add=True, narrow=True,
                      strip_rows=1), 0.6, 0.9),
    # single-pass strips shorter than the array's latency: a strip's bank must wait for its release
    ((3, 2, 8), Layer(3, 11, 4, 5, 1, add=True, strip_rows=1), 1.0, 1.0),
    # A last output tile's weight rows and skip pixels carry only the words holding its channels
    # (three-word rows of 10 lanes of 16 bits): 3 lanes, one word; 6 lanes, two words, in strips.
    ((3, 10, 16), Layer(4, 13, 5, 6, 3, pad=1, relu=True, add=True), 0.6, 0.8),
    ((3, 10, 16), Layer(5, 16, 4, 4, 2, add=True, strip_rows=2), 0.8, 0.7),
    # Weights first (weights_first): the first output tile's weight rows of every input tile, then
    # the input tiles back to back; with adds, strips, and input tiles of one word each (a 1x1
    # map: consecutive tile ends), on three-lane and one-lane rows.
    ((3, 5, 8), Layer(8, 7, 5, 6, 3, pad=1, relu=True, add=True, weights_first=True), 0.6, 0.8),
    ((3, 2, 8), Layer(7, 3, 6, 5, 3, pad=1, pool=True, strip_rows=2, weights_first=True), 0.7, 0.9),
    ((2, 3, 8), Layer(7, 4, 1, 1, 1, weights_first=True), 1.0, 1.0),
    ((1, 2, 8), Layer(3, 3, 2, 1, 1, add=True, weights_first=True), 1.0, 1.0),
]


@pytest.mark.parametrize("shape,layer,ready_prob,valid_prob", CASES)
def test_core_matches_golden(shape, layer, ready_prob, valid_prob):
    config = small_config(*shape)
    seed = hash((shape, layer)) % 2**32
    job = make_job(layer, config, np.random.default_rng(seed))
    [(received, saturated, _)] = run_jobs(config, [job], seed=seed, ready_prob=ready_prob,
                                          valid_prob=valid_prob)
    check(config, job, received, saturated)


def test_core_with_buffers_exactly_full():
    """Non-power-of-two buffers filled to the last entry: input map, weight bank, accumulators."""
    layer = Layer(5, 5, 5, 6, 3, pad=1, relu=True)
    config = EngineConfig(rows=3, cols=2, width=8, in_depth=2 * 5 * 6, wt_depth=2 * 9 * 3,
                          acc_depth=5 * 6)
    job = make_job(layer, config, np.random.default_rng(13))
    [(received, saturated, _)] = run_jobs(config, [job], seed=13, ready_prob=0.5, valid_prob=0.8)
    check(config, job, received, saturated)


def test_core_skip_bank_waits_for_its_last_reader():
    """Single-pass tiles under heavy output backpressure: the accumulator banks wait on the
    drain, so the loader runs ahead. A tile's only pass frees its weight bank as it starts and
    reads its skip pixels as it runs, so without the accumulator's skip release the loader
    would refill the skip bank of the tile two before while that tile is still reading it."""
    config = small_config(3, 2, 8)
    job = make_job(Layer(3, 12, 8, 8, 1, add=True), config, np.random.default_rng(5))
    [(received, saturated, _)] = run_jobs(config, [job], seed=5, ready_prob=0.15)
    check(config, job, received, saturated)


def random_layer(rng, config: EngineConfig, *, add: bool, rectangular: bool = False) -> Layer:
    """A random layer whose whole map fits ``config`` (sizes down to 1x1, several tiles), each
    tensor signed or unsigned at random: a square kernel, one stride and the same padding on
    every side, or with ``rectangular`` a ``KH x KW`` kernel with ``KH != KW``, strides
    ``SH != SW`` and each side's padding drawn below its kernel dimension."""
    while True:
        if rectangular:
            kh, kw = (int(k) for k in rng.choice([1, 2, 3, 4, 5, 7], 2, replace=False))
            sh, sw = (int(s) for s in rng.choice([1, 2, 3, 4], 2, replace=False))
            pad = tuple(int(rng.integers(0, k)) for k in (kh, kw, kh, kw))
            h, w = (int(v) for v in rng.integers(1, 12, 2))
            k, stride = (kh, kw), (sh, sw)
        else:
            k = kh = kw = int(rng.choice([1, 1, 2, 3, 3, 5]))
            stride = int(rng.choice([1, 1, 2, 3]))
            pad = int(rng.integers(0, k))
            h, w = (int(v) for v in rng.integers(1, 8, 2))
        c_in, c_out = (int(v) for v in rng.integers(1, 3 * max(config.rows, config.cols) + 1, 2))
        layer = Layer(c_in, c_out, h, w, k, stride=stride, pad=pad)
        out_h, out_w = layer.out_size
        if out_h < 1 or out_w < 1:
            continue
        pool = bool(rng.random() < 0.3) and out_h >= 2 and out_w >= 2
        t_in = math.ceil(c_in / config.rows)
        comp_h, comp_w = computed_map(out_h, out_w, pool)
        if (t_in * h * w <= config.in_depth and t_in * kh * kw * config.rows <= config.wt_depth
                and comp_h * comp_w <= config.acc_depth):
            unsigned_in, unsigned_skip, unsigned_out = (bool(u) for u in rng.random(3) < 0.5)
            strip_rows = int(rng.integers(1, min(comp_h, 15) + 1)) if rng.random() < 0.5 else 0
            return dataclasses.replace(layer, relu=bool(rng.random() < 0.5), pool=pool, add=add,
                                       unsigned_in=unsigned_in, unsigned_skip=add and unsigned_skip,
                                       unsigned_out=unsigned_out, strip_rows=strip_rows,
                                       weights_first=bool(rng.random() < 0.3))


@pytest.mark.parametrize("shape,seed", [((3, 5, 8), 21), ((2, 3, 16), 22), ((1, 2, 8), 23)])
def test_core_random_jobs_with_and_without_add(shape, seed):
    """Random layers back to back on one core, each loaded while the one before computes,
    residual adds mixed with plain ones, under random stream stalls on both sides."""
    config = small_config(*shape)
    rng = np.random.default_rng(seed)
    jobs = [make_job(random_layer(rng, config, add=add), config, rng)
            for add in (True, False, True, True, False, True)]
    early = []
    results = run_jobs(config, jobs, seed=seed, ready_prob=0.6, valid_prob=0.8, ahead=True, loaded_early=early)
    for job, (received, saturated, _) in zip(jobs, results):
        check(config, job, received, saturated)
    assert all(early), early


@pytest.mark.parametrize("shape,seed", [((3, 5, 8), 31), ((2, 3, 16), 32), ((4, 2, 8), 33)])
def test_core_random_rectangular_jobs(shape, seed):
    """Random rectangular kernels and strides (``KH != KW``, ``SH != SW``) with padding drawn per
    side, back to back on one core with and without residual adds, under stream stalls."""
    config = small_config(*shape)
    rng = np.random.default_rng(seed)
    jobs = [make_job(random_layer(rng, config, add=add, rectangular=True), config, rng)
            for add in (False, True, False, True, False)]
    early = []
    results = run_jobs(config, jobs, seed=seed, ready_prob=0.6, valid_prob=0.8, ahead=True, loaded_early=early)
    for job, (received, saturated, _) in zip(jobs, results):
        check(config, job, received, saturated)
    assert all(early), early


@pytest.mark.parametrize("shape,seed", [((3, 5, 8), 41), ((2, 3, 16), 42), ((4, 2, 8), 43)])
def test_core_inputs_loaded_ahead(shape, seed):
    """Random layers back to back, each loaded while the one before computes, about half of them
    with their input loaded ahead too (``input_ahead``: into the other half of the input buffer,
    mirrored, while the job before's passes still read theirs), under stream stalls: every job
    bit-exact, and the inputs loaded ahead shorten the list."""
    config = small_config(*shape)
    rng = np.random.default_rng(seed)
    layers, before = [], 0
    while len(layers) < 7:
        layer = random_layer(rng, config, add=bool(rng.random() < 0.5))
        groups = math.ceil(layer.c_in / config.rows) * layer.h * layer.w
        if layers and groups + before > config.in_depth:
            continue
        layers.append(layer)
        before = groups
    ahead = [make_job(dataclasses.replace(layer, input_ahead=bool(index % 2 or rng.random() < 0.3)), config,
                      np.random.default_rng([seed, index]))
             for index, layer in enumerate(layers)]
    plain = [make_job(layer, config, np.random.default_rng([seed, index])) for index, layer in enumerate(layers)]
    totals = []
    for batch in (plain, ahead):
        results = run_jobs(config, batch, seed=seed, ready_prob=0.6, valid_prob=0.8, ahead=True)
        for job, (received, saturated, _) in zip(batch, results):
            check(config, job, received, saturated)
        totals.append(sum(cycles for _, _, cycles in results))
    assert any(job.layer.input_ahead for job in ahead) and totals[1] < totals[0], totals


@pytest.mark.parametrize("reset_after", [40, 400, 800])
def test_core_recovers_from_reset_mid_job(reset_after):
    """A reset while loading, computing or draining leaves the core clean for the next job."""
    config = small_config(3, 2, 8)
    rng = np.random.default_rng(reset_after)
    jobs = [make_job(Layer(5, 5, 6, 6, 3, pad=1, add=True), config, rng),
            make_job(Layer(4, 3, 5, 5, 3, pad=1, relu=True, add=True), config, rng)]
    [(received, saturated, _)] = run_jobs(config, jobs, seed=reset_after, ready_prob=0.3,
                                          reset_after=reset_after)
    check(config, jobs[1], received, saturated)


def test_core_fully_connected_and_back_to_back_jobs():
    """A fully connected layer (1x1 conv of a 1x1 map) followed by a conv on the same core, once
    loaded one by one and once the conv loaded while the fully connected layer computes."""
    config = small_config(3, 2, 8)
    rng = np.random.default_rng(7)
    jobs = [make_job(Layer(20, 7, 1, 1, 1, relu=True), config, rng),
            make_job(Layer(4, 3, 5, 5, 3, pad=1, pool=True), config, rng)]
    for ahead in (False, True):
        results = run_jobs(config, jobs, seed=7, ready_prob=0.7, valid_prob=0.8, ahead=ahead)
        for job, (received, saturated, _) in zip(jobs, results):
            check(config, job, received, saturated)


@pytest.mark.parametrize("out_size", [3, 5])
def test_core_passes_run_back_to_back(out_size):
    """With data always ready, one more output-channel tile costs exactly its passes, each
    max(P, min_pass) cycles: no bubbles between passes, whether P is below min_pass or not."""
    config = small_config(4, 5, 8)
    rng = np.random.default_rng(out_size)
    cycles = []
    for c_out in (5, 10):
        job = make_job(Layer(8, c_out, out_size, out_size, 3, pad=1), config, rng)
        [(received, saturated, taken)] = run_jobs(config, [job], seed=out_size)
        check(config, job, received, saturated)
        cycles.append(taken)
    passes = 2 * 3 * 3
    assert cycles[1] - cycles[0] == passes * max(out_size * out_size, config.min_pass)


def test_core_rejects_bad_config():
    with pytest.raises(TypeError):
        ConvCore(config={"rows": 4})
    with pytest.raises(TypeError):
        ConvCore(EngineConfig())  # keyword-only


def test_core_on_default_config():
    """A multi-tile layer on the default build (bench/performance.py measures the large ones)."""
    layer = Layer(16, 22, 8, 8, 3, pad=1, relu=True)
    config = EngineConfig()
    job = make_job(layer, config, np.random.default_rng(11))
    [(received, saturated, cycles)] = run_jobs(config, [job], seed=11)
    check(config, job, received, saturated)
    assert cycles >= _ideal_cycles(config, job)
