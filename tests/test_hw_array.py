# amaranth: UnusedElaboratable=no
"""The systolic array against numpy matrix products, passes scheduled as tightly as allowed."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from radix.stream_format import pack_int, unpack_int
from radix_hw.array import SystolicArray


def schedule(rows: int, shift_gap: int, pixels: list[int]):
    """Cycles of each pass's swap and of its shifts, packed as tightly as the array allows: the
    next pass's shifts ``shift_gap`` cycles after a swap enters, the next swap right after them."""
    starts, shift_cycles = [], []
    start = rows  # pass 0's shifts occupy cycles 0 .. rows-1
    shift_cycles.append(list(range(rows)))
    for n, p in enumerate(pixels):
        starts.append(start)
        if n + 1 < len(pixels):
            first_shift = start + shift_gap
            shift_cycles.append(list(range(first_shift, first_shift + rows)))
            start = max(start + p, first_shift + rows)
    return starts, shift_cycles


@pytest.mark.parametrize("unsigned", [False, True])
@pytest.mark.parametrize("rows,cols,width,macs_per_dsp", [
    (1, 1, 8, 1), (1, 3, 8, 1), (3, 1, 16, 1), (2, 5, 8, 1), (5, 3, 16, 1), (4, 4, 8, 1),
    (1, 1, 8, 2), (1, 2, 8, 2), (3, 1, 8, 2), (2, 5, 8, 2), (4, 4, 8, 2), (7, 6, 8, 2), (16, 3, 8, 2),
])
def test_array_matches_matrix_products(rows, cols, width, macs_per_dsp, unsigned):
    """Signed weights times signed or (``x_unsigned``) unsigned W-bit activations."""
    rng = np.random.default_rng(rows * 100 + cols * 10 + width + 1000 * macs_per_dsp + 7 * unsigned)
    acc_width = 2 * width + 16
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    x_lo, x_hi = (0, 2 * hi) if unsigned else (lo, hi)
    pixels = [int(p) for p in rng.integers(1, 3 * (rows + cols), 5)] + [1, 2 * rows + cols + 3]
    weights = [rng.integers(lo, hi, (cols, rows)) for _ in pixels]
    inputs = [rng.integers(x_lo, x_hi, (p, rows)) for p in pixels]
    weights[0][:] = lo  # extreme products
    inputs[0][:] = x_hi - 1 if unsigned else lo
    dut = SystolicArray(rows=rows, cols=cols, width=width, macs_per_dsp=macs_per_dsp)
    assert dut.shift_gap == rows - 1
    starts, shift_cycles = schedule(rows, dut.shift_gap, pixels)

    total = starts[-1] + pixels[-1] + rows + cols + 4
    x_at = {s + i: (n, i) for n, s in enumerate(starts) for i in range(pixels[n])}
    shift_at = {t: (n, j) for n, cyc in enumerate(shift_cycles) for j, t in enumerate(cyc)}
    seen = {}

    async def bench(ctx):
        ctx.set(dut.x_unsigned, int(unsigned))
        for t in range(total):
            if t in x_at:
                n, i = x_at[t]
                ctx.set(dut.x_in, pack_int(inputs[n][i], width))
                ctx.set(dut.swap_in, int(i == 0))
            else:  # bubbles carry garbage that must not matter
                ctx.set(dut.x_in, pack_int(rng.integers(x_lo, x_hi, rows), width))
                ctx.set(dut.swap_in, 0)
            if t in shift_at:
                n, j = shift_at[t]
                ctx.set(dut.w_in, pack_int(weights[n][:, rows - 1 - j], width))  # bottom row first
                ctx.set(dut.w_shift, 1)
            else:
                ctx.set(dut.w_in, pack_int(rng.integers(lo, hi, cols), width))
                ctx.set(dut.w_shift, 0)
            seen[t] = ctx.get(dut.sums)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    for t, (n, i) in x_at.items():
        expected = weights[n].astype(np.int64) @ inputs[n][i].astype(np.int64)
        got = unpack_int(seen[t + dut.latency], cols, acc_width)
        assert got == expected.tolist(), f"pass {n} pixel {i}"


def test_array_rejects_bad_parameters():
    with pytest.raises(ValueError):
        SystolicArray(rows=0, cols=2, width=8)
    with pytest.raises(ValueError):
        SystolicArray(rows=2, cols=2, width=12)
    with pytest.raises(ValueError):
        SystolicArray(rows=2, cols=2, width=16, macs_per_dsp=2)
    with pytest.raises(ValueError):
        SystolicArray(rows=2, cols=2, width=8, macs_per_dsp=3)

