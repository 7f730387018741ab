# amaranth: UnusedElaboratable=no
"""Two 8x8 MACs per DSP48E1: the packed PE and the packed array against numpy (Amaranth sim).

Activations are signed or unsigned 8-bit values (docs/arithmetic.md §1, §12), so the PE sees a
9-bit x in [-128, 255]. Random and extreme values (-128*255 = -32,640, the largest magnitude and
the lane bound; 127*255, the largest positive; (-128)*(-128), the largest signed one),
full-height columns whose sums reach the lane bound, and odd column counts.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from radix.engine_spec import EngineConfig
from radix.stream_format import pack_int, unpack_int
from radix_hw.array import SystolicArray
from radix_hw.pe import PACK_SHIFT, PackedPE, lane_sum_width, product_bound

LO, HI = -128, 128  # weights and signed activations: [LO, HI)
X_HI = 256  # activations of either signedness: [LO, X_HI)


def test_lane_sum_width_holds_the_extreme_sums():
    lowest, highest = LO * (X_HI - 1), (HI - 1) * (X_HI - 1)  # -128*255, 127*255
    assert product_bound(8) == -lowest == 32640
    for rows in (1, 2, 3, 16, 17, 64):
        bits = lane_sum_width(rows, 8)
        assert rows * lowest >= -(1 << (bits - 1)) and rows * highest <= (1 << (bits - 1)) - 1
        assert rows * lowest < -(1 << (bits - 2))  # one bit fewer would not hold it
    assert lane_sum_width(16, 8) == 20  # the default build's lanes: as wide as with signed inputs only
    with pytest.raises(ValueError):
        lane_sum_width(0, 8)


def test_packed_split_is_exact_for_every_low_product():
    """docs/arithmetic.md §12, exhaustively: for every w0 and every 9-bit x, the low 16 bits of
    P = x * (w1 * 2^16 + w0), sign-extended, are w0 * x and (P - p0) / 2^16 is w1 * x."""
    assert product_bound(8) < 1 << (PACK_SHIFT - 1)
    w0, x = np.meshgrid(np.arange(LO, HI), np.arange(LO, X_HI), indexing="ij")
    for w1 in (LO, -1, 0, 1, HI - 1):
        packed = x * (w1 * (1 << PACK_SHIFT) + w0)
        low = packed & ((1 << PACK_SHIFT) - 1)
        p0 = np.where(low >= 1 << (PACK_SHIFT - 1), low - (1 << PACK_SHIFT), low)
        high = (packed >> PACK_SHIFT) + ((packed >> (PACK_SHIFT - 1)) & 1)
        np.testing.assert_array_equal(p0, w0 * x)
        np.testing.assert_array_equal(high, w1 * x)


def test_packed_pe_products_and_swaps():
    rng = np.random.default_rng(5)
    sum_width = 20
    cycles = 500
    xs = rng.integers(LO, X_HI, cycles)
    w0s, w1s = rng.integers(LO, HI, cycles), rng.integers(LO, HI, cycles)
    # extremes first, (x, w0, w1): both signs of the low lane's borrow into the high lane, and
    # the unsigned activation 255 against both weight ends (the lane bound -128 * 255)
    top = X_HI - 1
    extremes = [(LO, LO, LO), (LO, HI - 1, LO), (HI - 1, LO, LO), (LO, LO, HI - 1), (0, LO, LO),
                (LO, 0, LO), (-1, 1, HI - 1), (1, -1, LO), (HI - 1, HI - 1, HI - 1),
                (top, LO, LO), (top, LO, HI - 1), (top, HI - 1, LO), (top, HI - 1, HI - 1), (top, -1, 1),
                (128, LO, LO), (top, 0, LO)]
    psum_lim = 1 << (sum_width - 2)
    p0s = rng.integers(-psum_lim, psum_lim, cycles)
    p1s = rng.integers(-psum_lim, psum_lim, cycles)
    shifts = rng.random(cycles) < 0.4
    swaps = rng.random(cycles) < 0.3
    for i, (x, w0, w1) in enumerate(extremes):
        # weight shifted at 3i, swapped in at 3i+1, multiplied by the x of 3i+1
        shifts[3 * i:3 * i + 3] = [True, False, False]
        swaps[3 * i:3 * i + 3] = [False, True, False]
        w0s[3 * i], w1s[3 * i], xs[3 * i + 1] = w0, w1, x

    shadow, active, active_for = (0, 0), (0, 0), []
    for t in range(cycles):
        if swaps[t]:
            active = shadow
        if shifts[t]:
            shadow = (int(w0s[t]), int(w1s[t]))
        active_for.append(active)
    dut = PackedPE(width=8, sum_width=sum_width)
    seen = {}

    async def bench(ctx):
        for t in range(cycles):
            ctx.set(dut.x_in, int(xs[t]))
            ctx.set(dut.swap_in, int(swaps[t]))
            ctx.set(dut.w_in, pack_int([w0s[t], w1s[t]], 8))
            ctx.set(dut.w_shift, int(shifts[t]))
            ctx.set(dut.psum0_in, int(p0s[t]))
            ctx.set(dut.psum1_in, int(p1s[t]))
            seen[t] = (ctx.get(dut.psum0_out), ctx.get(dut.psum1_out), ctx.get(dut.x_out))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    for t in range(cycles - 3):
        w0, w1 = active_for[t]
        assert seen[t + 3][:2] == (int(p0s[t + 2]) + int(xs[t]) * w0, int(p1s[t + 2]) + int(xs[t]) * w1), t
    for i in range(len(extremes)):
        assert active_for[3 * i + 1] == extremes[i][1:]
    assert all(seen[t][2] == xs[t - 1] for t in range(1, cycles))


def test_packed_pe_rejects_bad_parameters():
    with pytest.raises(ValueError):
        PackedPE(width=16, sum_width=40)
    with pytest.raises(ValueError):
        PackedPE(width=8, sum_width=15)


def run_passes(dut, weights, inputs, rng, *, unsigned: bool = False):
    """One pass per (weights, inputs) back to back as tightly as allowed, the inputs read as
    ``unsigned`` or signed 8-bit codes; the sums per pixel."""
    rows, cols = dut.rows, dut.cols
    starts, shift_at, start = [], {t: (0, t) for t in range(rows)}, rows
    for n, x in enumerate(inputs):
        starts.append(start)
        if n + 1 < len(inputs):
            first = start + rows + cols - 2
            shift_at.update({first + j: (n + 1, j) for j in range(rows)})
            start = max(start + len(x), first + rows)
    x_at = {s + i: (n, i) for n, s in enumerate(starts) for i in range(len(inputs[n]))}
    total = starts[-1] + len(inputs[-1]) + dut.latency + 2
    seen = {}

    async def bench(ctx):
        ctx.set(dut.x_unsigned, int(unsigned))
        for t in range(total):
            n, i = x_at.get(t, (None, None))
            ctx.set(dut.x_in, pack_int(inputs[n][i] if n is not None else rng.integers(LO, X_HI, rows), 8))
            ctx.set(dut.swap_in, int(i == 0))
            if t in shift_at:
                n, j = shift_at[t]
                ctx.set(dut.w_in, pack_int(weights[n][:, rows - 1 - j], 8))
            else:
                ctx.set(dut.w_in, pack_int(rng.integers(LO, HI, cols), 8))
            ctx.set(dut.w_shift, int(t in shift_at))
            seen[t] = ctx.get(dut.sums)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return {(n, i): unpack_int(seen[t + dut.latency], cols, dut.acc_width) for t, (n, i) in x_at.items()}


@pytest.mark.parametrize("unsigned", [False, True])
@pytest.mark.parametrize("rows,cols", [(16, 22), (16, 5), (17, 3), (1, 7)])
def test_packed_array_extreme_and_random_columns(rows, cols, unsigned):
    rng = np.random.default_rng(rows * 31 + cols + 7 * unsigned)
    dut = SystolicArray(rows=rows, cols=cols, width=8, macs_per_dsp=2)
    assert dut.dsps == rows * ((cols + 1) // 2)
    lo, hi = (0, X_HI) if unsigned else (LO, HI)  # the activations' range
    full = np.full((cols, rows), LO)
    mixed = np.where(np.arange(cols)[:, None] % 2 == 0, LO, HI - 1) * np.ones((1, rows), dtype=np.int64)
    weights = [full, mixed, rng.integers(LO, HI, (cols, rows)), -mixed - 1]
    extreme = hi - 1 if unsigned else lo  # the largest |x|
    inputs = [np.full((3, rows), extreme), np.array([[lo] * rows, [hi - 1] * rows, [0] * rows]),
              rng.integers(lo, hi, (2 * rows + cols, rows)), np.full((2, rows), extreme)]
    got = run_passes(dut, weights, inputs, rng, unsigned=unsigned)
    for (n, i), sums in got.items():
        assert sums == (weights[n].astype(np.int64) @ inputs[n][i].astype(np.int64)).tolist(), (n, i)
    assert got[(0, 0)] == [rows * LO * extreme] * cols  # the lane bound itself, in every column


def test_engine_config_packing():
    assert EngineConfig().macs_per_dsp == 2 and EngineConfig().macs_per_cycle == 384
    assert EngineConfig().dsps == 192
    w16 = EngineConfig(width=16)  # one MAC per DSP: the default shape is 16 x 12 on the same 192
    assert (w16.cols, w16.macs_per_dsp, w16.dsps, w16.macs_per_cycle) == (12, 1, 192, 192)
    assert EngineConfig(rows=3, cols=5).dsps == 9
