# amaranth: UnusedElaboratable=no
"""The accumulator's last pass with the residual add (docs/arithmetic.md §9), Amaranth simulator.

Every skip shift the bias word can carry (in range, at both ends, and beyond them, where the
accumulator clamps) meets skip values covering the W-bit range, signed or unsigned
(``skip_unsigned``: zero-extended, its shift range one shorter); each pixel written must be
``bias + round_shift(skip, t) + sums`` exactly, and ``skip_release`` must pulse once per tile,
when its last pixel is written. Without ``add`` the skip buffer is ignored.
"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from radix import golden
from radix.engine_spec import EngineConfig
from radix.stream_format import pack_int, unpack_int
from radix.engine_spec import skip_shift_range
from radix_hw.accumulator import SHIFT_BITS, Accumulator, skip_address_bits


class SkipHarness(Elaboratable):
    """The accumulator reading a skip buffer whose contents the testbench writes."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.acc = Accumulator(config=config)
        self.skip = Memory(shape=config.cols * config.width, depth=2 * config.acc_depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = self.acc
        m.submodules.skip = self.skip
        wiring.connect(m, self.acc.skip_rd, self.skip.read_port())
        return m


def skip_shift_cases(width: int, unsigned: bool) -> list[int]:
    """Every executed skip shift, then values beyond both ends (8-bit field extremes too)."""
    lo, hi = golden.skip_shift_range(width, unsigned=unsigned)
    return list(range(lo, hi + 1)) + [hi + 1, hi + 5, 127, lo - 1, lo - 9, -128]


def expected_base(bias, skip, skip_shift, width: int, unsigned: bool) -> np.ndarray:
    """``bias + round_shift(skip, t)``, ``t`` clamped to the executed range as the engine does."""
    lo, hi = golden.skip_shift_range(width, unsigned=unsigned)
    return bias + golden.align_skip(skip, np.clip(skip_shift, lo, hi), width, unsigned=unsigned)


def run_tiles(config: EngineConfig, bias, skip, skip_shift, sums, *, add: bool, unsigned: bool = False,
              sum_pool: bool = False):
    """One tile per row of ``bias``/``skip_shift`` (``cols`` lanes), with skip pixels
    ``skip[tile]`` (pixels, cols) and one pass per entry of ``sums`` (passes, tiles, pixels,
    cols); returns the drained words (tiles, pixels, cols) and the cycles in which
    ``skip_release`` pulsed, per tile. With ``sum_pool`` (a summed job) only pixel 0 is
    drained."""
    cols, acc_w, width = config.cols, config.acc_width, config.width
    n_tiles, pixels, _ = skip.shape
    passes = sums.shape[0]
    harness = SkipHarness(config)
    acc = harness.acc
    drained = np.zeros((n_tiles, pixels, cols), dtype=np.int64)
    releases = [[] for _ in range(n_tiles)]

    async def bench(ctx):
        ctx.set(acc.add, int(add))
        ctx.set(acc.skip_unsigned, int(unsigned))
        ctx.set(acc.sum_pool, int(sum_pool))
        ctx.set(acc.start, 1)
        await ctx.tick()
        ctx.set(acc.start, 0)
        cycle = 0
        for tile in range(n_tiles):
            # the skip bank is the output tile's weight bank, not its accumulator bank (which
            # alternates with strips of rows): here always the other one
            bank, skip_bank = tile % 2, 1 - tile % 2
            ctx.set(acc.acquire, 1)
            ctx.set(acc.acquire_bank, bank)
            ctx.set(acc.bias, pack_int(bias[tile], acc_w))
            ctx.set(acc.skip_shifts, pack_int(skip_shift[tile], SHIFT_BITS))
            await ctx.tick()
            ctx.set(acc.acquire, 0)
            for _ in range(Accumulator.ACQUIRE_TO_META):  # the earliest a tile's first meta may come
                ctx.set(acc.meta, {"valid": 0})
                await ctx.tick()
                cycle += 1
            # Meta of pixel n in cycle n of a pass, its sums META_LEAD cycles later.
            for index in range(passes):
                final = index == passes - 1
                # the skip pixels arrive for the last pass (the loader's order): before it, the
                # bank holds another tile's
                for p in range(pixels):
                    data = skip[tile, p] if final else skip[(tile + 1) % n_tiles, pixels - 1 - p]
                    ctx.set(harness.skip.data[skip_bank * config.acc_depth + p], pack_int(data, width))
                for n in range(pixels + Accumulator.META_LEAD + 2):
                    if n < pixels:
                        ctx.set(acc.meta, {"valid": 1, "addr": n, "first": int(index == 0), "final": int(final),
                                           "last": int(final and n == pixels - 1), "bank": bank,
                                           "tile_end": 1, "skip_bank": skip_bank, "skip_addr": n})
                    else:
                        ctx.set(acc.meta, {"valid": 0})
                    k = n - Accumulator.META_LEAD
                    ctx.set(acc.sums, pack_int(sums[index, tile, k], acc_w) if 0 <= k < pixels else 0)
                    released = ctx.get(acc.skip_release)
                    if released:
                        releases[tile].append((cycle, released))
                    await ctx.tick()
                    cycle += 1
            assert ctx.get(acc.drain.full) >> bank & 1, f"tile {tile}: bank {bank} not full"
            ctx.set(acc.drain.bank, bank)
            ctx.set(acc.drain.en, 1)
            for p in range(1 if sum_pool else pixels):
                ctx.set(acc.drain.addr, p)
                await ctx.tick()
                drained[tile, p] = unpack_int(ctx.get(acc.drain.data), cols, acc_w)
            ctx.set(acc.drain.en, 0)
            ctx.set(acc.drain.release, 1)
            await ctx.tick()
            ctx.set(acc.drain.release, 0)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return drained, releases


@pytest.mark.parametrize("cols,width,passes", [(5, 8, 1), (3, 16, 2)])
@pytest.mark.parametrize("add,unsigned", [(True, False), (True, True), (False, False), (False, True)])
def test_last_pass_adds_aligned_skip(cols, width, passes, add, unsigned):
    """The tile's last pass adds the aligned skip (with one pass, its only one; with two, the
    second, on top of the first pass's bias and sums)."""
    config = EngineConfig(rows=2, cols=cols, width=width, in_depth=16, wt_depth=16, acc_depth=64)
    rng = np.random.default_rng(cols * 100 + width + add + 2 * unsigned)
    acc_w = config.acc_width
    shifts = skip_shift_cases(width, unsigned)
    n_tiles = -(-len(shifts) // cols)
    skip_shift = np.resize(np.array(shifts), n_tiles * cols).reshape(n_tiles, cols)
    pixels = config.acc_depth
    lo, hi = golden.tensor_range(width, unsigned=unsigned)
    skip = rng.integers(lo, hi + 1, (n_tiles, pixels, cols))
    skip[:, :4] = [lo], [hi], [hi - 1 if unsigned else -1], [1]  # the ends and the smallest values that round
    # |bias|, |aligned skip| and |all sums| below 2^(A-3) each: the total stays inside A bits (§9).
    bias = rng.integers(-(1 << (acc_w - 3)), 1 << (acc_w - 3), (n_tiles, cols))
    bias[0] = 0
    sums = rng.integers(-(1 << (acc_w - 4)), 1 << (acc_w - 4), (passes, n_tiles, pixels, cols))
    sums[:, :, : pixels // 2] = 0  # the aligned skip alone is visible in the low bits
    drained, releases = run_tiles(config, bias, skip, skip_shift, sums, add=add, unsigned=unsigned)
    for tile in range(n_tiles):
        base = (expected_base(bias[tile], skip[tile], skip_shift[tile], width, unsigned) if add
                else np.broadcast_to(bias[tile], skip[tile].shape))
        np.testing.assert_array_equal(drained[tile], base + sums[:, tile].sum(axis=0), err_msg=f"tile {tile}, "
                                      f"skip shifts {skip_shift[tile].tolist()}")
        # the tile's skip bank is released, once its last pixel is written
        assert [value for _, value in releases[tile]] == [1 << (1 - tile % 2)], f"tile {tile}: {releases[tile]}"


def test_skip_shift_range_is_the_contracts():
    for width in (8, 16):
        config = EngineConfig(width=width)
        assert skip_shift_range(config.width) == golden.skip_shift_range(width)
        lo, hi = skip_shift_range(config.width)
        assert -(1 << (SHIFT_BITS - 1)) <= lo and hi < 1 << (SHIFT_BITS - 1)
        assert skip_shift_range(width, unsigned=True) == (lo + 1, hi)  # §9: an unsigned skip's bound
        assert skip_address_bits(config) >= (2 * config.acc_depth - 1).bit_length()


@pytest.mark.parametrize("cols,width", [(5, 8), (3, 16)])
def test_a_summed_job_writes_the_bias_plus_every_pixels_sums(cols, width):
    """``sum_pool``: each tile's pixels add into one word, drained at address 0, the bias once,
    wrapping in A bits as the read-modify-write does; the bank is full, and released, once per tile."""
    config = EngineConfig(rows=2, cols=cols, width=width, in_depth=16, wt_depth=16, acc_depth=64)
    rng = np.random.default_rng(cols + width)
    acc_w, n_tiles, pixels = config.acc_width, 3, config.acc_depth
    bias = rng.integers(-(1 << (acc_w - 3)), 1 << (acc_w - 3), (n_tiles, cols))
    sums = rng.integers(-(1 << (acc_w - 3)), 1 << (acc_w - 3), (n_tiles, pixels, cols))
    skip = np.zeros((n_tiles, pixels, cols), dtype=np.int64)
    drained, releases = run_tiles(config, bias, skip, np.zeros((n_tiles, cols), dtype=np.int64), sums[None],
                                  add=False, sum_pool=True)
    total = bias + sums.sum(axis=1)
    wrapped = (total + (1 << (acc_w - 1))) % (1 << acc_w) - (1 << (acc_w - 1))
    np.testing.assert_array_equal(drained[:, 0], wrapped)
    assert [[value for _, value in tile] for tile in releases] == [[1 << (1 - t % 2)] for t in range(n_tiles)]
