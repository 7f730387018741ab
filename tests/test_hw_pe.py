# amaranth: UnusedElaboratable=no
"""The processing element against numpy products (Amaranth simulator): weights signed W-bit,
activations W+1-bit, the range of a signed or an unsigned W-bit value (docs/arithmetic.md §12)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from radix_hw.pe import ProcessingElement


def to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@pytest.mark.parametrize("width", [8, 16])
def test_pe_products_and_weight_swaps(width):
    acc_width = 2 * width + 16
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1))
    cycles = 300
    xs = rng.integers(lo, 2 * hi, cycles)  # signed and unsigned activations
    psums = rng.integers(-(1 << (acc_width - 2)), 1 << (acc_width - 2), cycles)
    # A weight is shifted in at random cycles; swaps happen at random cycles too.
    shifts = rng.random(cycles) < 0.3
    w_ins = rng.integers(lo, hi, cycles)
    swaps = rng.random(cycles) < 0.2
    xs[:6] = [lo, hi - 1, lo, 0, 2 * hi - 1, 2 * hi - 1]
    w_ins[1], shifts[1], swaps[4] = lo, True, True  # -2^(W-1) * (2^W - 1): the largest magnitude
    w_ins[0], shifts[0], swaps[1] = lo, True, True

    # Reference: the active weight in cycle a+1 (the one multiplying x_in of cycle a).
    shadow, active = 0, 0
    active_for = []
    for t in range(cycles):
        if swaps[t]:
            active = shadow
        if shifts[t]:
            shadow = int(w_ins[t])
        active_for.append(active)
    expected = {t + 3: int(psums[t + 2]) + int(xs[t]) * active_for[t] for t in range(cycles - 3)}

    dut = ProcessingElement(width=width, acc_width=acc_width)
    seen = {}

    async def bench(ctx):
        for t in range(cycles):
            ctx.set(dut.x_in, int(xs[t]))
            ctx.set(dut.swap_in, int(swaps[t]))
            ctx.set(dut.w_in, int(w_ins[t]))
            ctx.set(dut.w_shift, int(shifts[t]))
            ctx.set(dut.psum_in, int(psums[t]))
            seen[t] = (ctx.get(dut.psum_out), ctx.get(dut.x_out), ctx.get(dut.swap_out))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    for t, value in expected.items():
        assert seen[t][0] == value, f"cycle {t}"
    for t in range(1, cycles):
        assert seen[t][1] == xs[t - 1] and seen[t][2] == swaps[t - 1]


def test_pe_rejects_bad_parameters():
    with pytest.raises(ValueError):
        ProcessingElement(width=8, acc_width=8)
    with pytest.raises(ValueError):
        ProcessingElement(width=1, acc_width=32)
