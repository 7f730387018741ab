"""The output unit against radix.golden.requantize/maxpool2x2, bit for bit (Amaranth simulator),
for signed and unsigned outputs (docs/arithmetic.md §5, §6)."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from radix import golden
from radix.engine_spec import EngineConfig
from radix.stream_format import decode_output, tiles
from radix_hw.accumulator import SHIFT_BITS
from radix_hw.output_unit import OutputUnit


class DrainHarness(Elaboratable):
    """The output unit reading two accumulator banks whose contents the testbench writes."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.unit = OutputUnit(config=config)
        width = config.cols * config.acc_width
        self.banks = [Memory(shape=width, depth=config.acc_depth, init=[]) for _ in range(2)]
        self.full = Signal(2)
        self.shifts = Signal(data.ArrayLayout(config.cols * SHIFT_BITS, 2))

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        ports = []
        for b, bank in enumerate(self.banks):
            m.submodules[f"bank{b}"] = bank
            port = bank.read_port()
            m.d.comb += [port.addr.eq(unit.acc.addr), port.en.eq(unit.acc.en & (unit.acc.bank == b))]
            ports.append(port)
        m.d.comb += [
            unit.acc.data.eq(Mux(unit.acc.bank, ports[1].data, ports[0].data)),
            unit.acc.full.eq(self.full),
            unit.acc.shifts.eq(self.shifts[unit.acc.bank]),
        ]
        return m


def pack_lanes(values, bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def random_accumulators(rng, shape, acc_width: int, width: int) -> np.ndarray:
    """A mix of full-range, mid-range and small values, so every shift has work to do; the small
    ones cover both ends of the signed and the unsigned W-bit range at shift 0."""
    full = rng.integers(-(1 << (acc_width - 1)), 1 << (acc_width - 1), shape, dtype=np.int64)
    mid = rng.integers(-(1 << (2 * width)), 1 << (2 * width), shape, dtype=np.int64)
    small = rng.integers(-(1 << (width + 1)), 1 << (width + 1), shape, dtype=np.int64)
    pick = rng.integers(0, 3, shape)
    acc = np.where(pick == 0, full, np.where(pick == 1, mid, small))
    acc.flat[:2] = [-(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1]
    return acc


def run_unit(config, acc, shift, *, relu, pool, ready_prob, seed, size, unsigned=False):
    """Drive the harness with bank contents ``acc`` (C_out, H, W) for an ``OUT_H x OUT_W``
    layer ``size`` and collect the output words."""
    c_out, rows, cols_px = acc.shape
    out_h, out_w = size
    cols = config.cols
    n_tiles = tiles(c_out, cols)
    lanes = np.zeros((n_tiles * cols, rows, cols_px), dtype=np.int64)
    lanes[:c_out] = acc
    shifts = np.zeros(n_tiles * cols, dtype=np.int64)
    shifts[:c_out] = shift
    rng = np.random.default_rng(seed)
    harness = DrainHarness(config)
    unit = harness.unit
    result = {"words": [], "finished": False}

    async def feeder(ctx):
        ctx.set(unit.layer, {"in_ch": 1, "in_h": 1, "in_w": 1, "out_ch": c_out, "out_h": out_h,
                             "out_w": out_w, "kernel_h": 1, "kernel_w": 1, "stride_h": 1,
                             "stride_w": 1, "pad_top": 0, "pad_left": 0, "relu": int(relu), "pool": int(pool),
                             "out_unsigned": int(unsigned)})
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        full, loaded = 0, 0
        for _ in range(200_000):
            if loaded < n_tiles and not (full >> (loaded % 2)) & 1:
                b = loaded % 2
                tile = lanes[loaded * cols:(loaded + 1) * cols].reshape(cols, -1)
                for p in range(rows * cols_px):
                    ctx.set(harness.banks[b].data[p], pack_lanes(tile[:, p], config.acc_width))
                ctx.set(harness.shifts[b], pack_lanes(shifts[loaded * cols:(loaded + 1) * cols],
                                                      SHIFT_BITS))
                full |= 1 << b
                loaded += 1
                ctx.set(harness.full, full)
            _, _, release, bank, finished = await ctx.tick().sample(
                unit.acc.release, unit.acc.bank, unit.finished)
            if release:
                full &= ~(1 << bank)
                ctx.set(harness.full, full)
            if finished:
                result["finished"] = True
                result["saturated"] = ctx.get(unit.saturated)
                return

    async def sink(ctx):
        while not result["finished"]:
            ctx.set(unit.m_out.ready, int(rng.random() < ready_prob))
            _, _, valid, ready, word, last = await ctx.tick().sample(
                unit.m_out.valid, unit.m_out.ready, unit.m_out.payload.data, unit.m_out.payload.last)
            if valid and ready:
                result["words"].append((word, last))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(feeder)
    sim.add_testbench(sink, background=True)
    sim.run()
    assert result["finished"], "output unit never finished"
    return result


CASES = [
    # cols, width, c_out, out_h, out_w, relu, pool, ready_prob, unsigned output
    (3, 8, 3, 4, 4, False, False, 1.0, False),
    (3, 8, 7, 5, 7, True, True, 0.6, False),
    (3, 8, 5, 3, 2, False, True, 0.3, False),
    (5, 16, 5, 6, 3, True, False, 0.5, False),
    (5, 16, 12, 7, 5, False, True, 0.8, False),
    (11, 8, 13, 4, 5, True, False, 0.7, False),
    (1, 16, 2, 1, 1, False, False, 0.5, False),
    (4, 8, 4, 2, 2, True, True, 0.4, False),
    (3, 8, 7, 6, 7, True, True, 0.6, True),  # ReLU then unsigned: nothing saturates at 0
    (3, 8, 5, 5, 4, False, True, 0.5, True),  # no ReLU: negatives saturate to 0 and count
    (5, 16, 6, 6, 5, False, True, 0.8, True),
    (11, 8, 13, 4, 5, True, False, 0.7, True),
    (4, 16, 4, 3, 3, True, False, 1.0, True),
    (1, 8, 3, 4, 6, False, False, 0.5, True),
]


@pytest.mark.parametrize("cols,width,c_out,out_h,out_w,relu,pool,ready_prob,unsigned", CASES)
def test_output_unit_matches_golden(cols, width, c_out, out_h, out_w, relu, pool, ready_prob, unsigned):
    config = EngineConfig(rows=2, cols=cols, width=width, in_depth=16, wt_depth=16, acc_depth=64)
    seed = cols * 1000 + c_out * 100 + out_h * 10 + out_w + 7 * unsigned
    rng = np.random.default_rng(seed)
    acc_width = config.acc_width
    acc = random_accumulators(rng, (c_out, out_h, out_w), acc_width, width)
    lo, hi = golden.shift_range(width)
    shift = rng.integers(lo, hi + 1, c_out)
    shift[: min(c_out, 4)] = [lo, hi, 0, 1][: min(c_out, 4)]  # the range ends, identity, halving

    # With pooling the engine computes only the even-cropped map (docs/arithmetic.md §6): the
    # bank holds it in raster order of the cropped width, while OUT_H/OUT_W may stay odd.
    computed = golden.even_crop(acc) if pool else acc
    result = run_unit(config, computed, shift, relu=relu, pool=pool, ready_prob=ready_prob,
                      seed=seed, size=(out_h, out_w), unsigned=unsigned)

    expected = golden.requantize(computed[None], shift.reshape(1, -1, 1, 1), relu=relu, width=width,
                                 unsigned=unsigned)
    values = golden.maxpool2x2(expected.values) if pool else expected.values
    _, exp_h, exp_w = values[0].shape
    words = [w for w, _ in result["words"]]
    lasts = [last for _, last in result["words"]]
    got = decode_output(words, c_out, exp_h, exp_w, config, unsigned=unsigned)
    np.testing.assert_array_equal(got, values[0])
    if unsigned:  # the cases reach the unsigned range's top, where a signed reading would differ
        assert values[0].max() >= 1 << (width - 1)
    assert lasts == [0] * (len(lasts) - 1) + [1]
    assert result["saturated"] == expected.saturated
