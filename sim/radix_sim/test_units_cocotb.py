"""cocotb tests of single gateware units (run through ``tests/test_sim_units.py``).

One test per unit, each against the top level that :func:`radix_sim.units.build_unit` built:

* ``test_pe`` (``radix_pe``): products of W+1-bit activations (signed and unsigned W-bit values,
  docs/arithmetic.md §12), partial sums, the pass-through of ``x``/``swap`` and the
  shadow/active weight swap timing, checked every cycle;
* ``test_array`` (``radix_array``): passes of random length with bubbles, weights shifted for the
  next pass as early as allowed, every pixel's column sums checked at ``latency`` against
  :func:`radix.golden.conv_accumulate` (a 1x1 convolution), first with signed, then with
  unsigned activations (``x_unsigned``);
* ``test_output_unit`` (``radix_output_unit``): random jobs (ReLU, pooling, odd sizes, several
  tiles, shifts at the ends of their range, signed and unsigned outputs) drained from a
  behavioural model of the two accumulator banks under random output backpressure; every output
  word, its ``last`` flag, ``finished`` and ``saturated`` checked against
  :func:`radix.golden.requantize` and :func:`radix.golden.maxpool2x2`.

Environment: ``RADIX_UNIT_PARAMS`` (JSON of the unit's build parameters), ``RADIX_SEED`` and the
amount of work, ``RADIX_CYCLES`` (PE), ``RADIX_PASSES`` (array), ``RADIX_JOBS`` (output unit).

Every cycle follows one scheme: inputs are driven at the falling edge, outputs are sampled in the
``ReadOnly`` phase after it, and the next rising edge registers the inputs. So a value sampled in
cycle ``t`` is what the Amaranth simulator's ``ctx.get`` returns after the ``ctx.set`` of cycle
``t`` (the unit tests in ``tests/test_hw_*.py`` count cycles the same way).
"""

from __future__ import annotations

import json
import math
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly
from radix import golden
from radix.engine_spec import STREAM_BITS, EngineConfig
from radix.stream_format import SHIFT_BITS, pack_int, pack_lanes, tile_out_words, tiles, unpack_int
from radix_hw.layout import LayerConfigLayout

CLOCK_NS = 10
RESET_CYCLES = 3


def _params() -> dict:
    return json.loads(os.environ["RADIX_UNIT_PARAMS"])


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def _rng() -> np.random.Generator:
    return np.random.default_rng(_env_int("RADIX_SEED", 1))


def _set(signal, value: int) -> None:
    signal.value = int(value) & ((1 << len(signal)) - 1)


async def _start(dut, inputs: dict) -> None:
    """Drive ``inputs`` (name -> value), start the clock, and hold reset for a few cycles."""
    for name, value in inputs.items():
        _set(getattr(dut, name), value)
    dut.rst.value = 1
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    await ClockCycles(dut.clk, RESET_CYCLES)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


# ------------------------------------------------------------------------------------------------
# Processing element


def pe_reference(xs, swaps, w_ins, shifts, psums):
    """Per-cycle expected outputs of one PE (``None`` where a value is not defined yet).

    The active weight that multiplies ``x_in`` of cycle ``a`` is the shadow weight as it was
    before cycle ``a``'s shift if ``swap_in`` is set in cycle ``a``; ``psum_out`` of cycle
    ``a + 3`` is ``psum_in`` of cycle ``a + 2`` plus that product.
    """
    n = len(xs)
    shadow, active = None, None
    active_for, shadow_seen = [], []
    for t in range(n):
        shadow_seen.append(shadow)  # w_out in cycle t shows shifts of cycles < t
        if swaps[t]:
            active = shadow
        if shifts[t]:
            shadow = int(w_ins[t])
        active_for.append(active)
    expected = []
    for t in range(n):
        psum = None
        if t >= 3 and active_for[t - 3] is not None:
            psum = int(psums[t - 1]) + int(xs[t - 3]) * active_for[t - 3]
        expected.append({
            "psum_out": psum,
            "x_out": int(xs[t - 1]) if t else None,
            "swap_out": int(swaps[t - 1]) if t else None,
            "w_out": shadow_seen[t],
        })
    return expected


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_pe(dut):
    """Random x, weights, shifts, swaps and partial sums; every output checked every cycle."""
    params = _params()
    width, acc_width = params["width"], params["acc_width"]
    n = _env_int("RADIX_CYCLES", 1500)
    rng = _rng()
    lo, hi = golden.int_range(width)
    u_hi = golden.tensor_range(width, unsigned=True)[1]
    xs = rng.integers(lo, u_hi + 1, n)  # activations of either signedness, as the array extends them
    w_ins = rng.integers(lo, hi + 1, n)
    shifts = rng.random(n) < 0.3
    swaps = rng.random(n) < 0.15
    # The partial sum plus any product stays inside A bits (docs/arithmetic.md §3); draw the
    # ends of that range often.
    max_product = -lo * u_hi
    p_lo, p_hi = golden.int_range(acc_width)
    p_lo, p_hi = p_lo + max_product, p_hi - max_product
    psums = rng.integers(p_lo, p_hi + 1, n, dtype=np.int64)
    ends = rng.random(n)
    psums = np.where(ends < 0.05, p_lo, np.where(ends > 0.95, p_hi, psums))
    # A scripted start: the largest signed product (lo * lo), then lo * hi, then a swap in the same
    # cycle as a shift (the active weight takes the shadow from before the shift), back-to-back
    # swaps, and the largest magnitude of all, lo * u_hi (an unsigned activation).
    script = {  # cycle: (x, swap, w_in, shift)
        0: (0, 0, lo, 1), 1: (lo, 1, hi, 0), 2: (lo, 0, hi, 1), 3: (hi, 0, 0, 0),
        4: (lo, 1, 5, 1), 5: (lo, 1, -3, 1), 6: (hi, 1, lo, 1), 7: (lo, 0, 0, 0), 8: (u_hi, 1, 0, 0),
        9: (u_hi, 0, 0, 0),
    }
    for t, (x, swap, w, shift) in script.items():
        xs[t], swaps[t], w_ins[t], shifts[t] = x, swap, w, shift
    expected = pe_reference(xs, swaps, w_ins, shifts, psums)

    await _start(dut, {"x_in": 0, "swap_in": 0, "w_in": 0, "w_shift": 0, "psum_in": 0})
    checked = 0
    for t in range(n):
        if t:
            await FallingEdge(dut.clk)
        _set(dut.x_in, xs[t])
        _set(dut.swap_in, swaps[t])
        _set(dut.w_in, w_ins[t])
        _set(dut.w_shift, shifts[t])
        _set(dut.psum_in, psums[t])
        await ReadOnly()
        got = {
            "psum_out": dut.psum_out.value.to_signed(),
            "x_out": dut.x_out.value.to_signed(),
            "swap_out": int(dut.swap_out.value),
            "w_out": dut.w_out.value.to_signed(),
        }
        for name, want in expected[t].items():
            if want is not None:
                assert got[name] == want, f"cycle {t}: {name} = {got[name]}, expected {want}"
                checked += 1
    assert checked > 3 * n, f"only {checked} values checked in {n} cycles"
    dut._log.info("PE W=%d A=%d: %d cycles, %d values checked", width, acc_width, n, checked)


# ------------------------------------------------------------------------------------------------
# Systolic array


def array_schedule(rng, rows: int, cols: int, pixels: list[int]):
    """Cycles of every pass's pixels and weight shifts, as tight as the array allows or a little
    looser at random, with bubbles between pixels.

    Returns ``(pixel_cycles, shift_cycles)``: per pass the cycles of its pixels (the first one
    carries the swap) and the cycles of its ``rows`` shifts (bottom weight row first). A pass's
    shifts start at or after ``a + rows + cols - 2`` of the previous pass's swap cycle ``a`` and
    all lie before its own swap (the array's contract).
    """
    def spread(first: int, count: int, gap_p: float) -> list[int]:
        cycles, t = [], first
        for _ in range(count):
            cycles.append(t)
            t += 1 + (int(rng.integers(1, 4)) if rng.random() < gap_p else 0)
        return cycles

    def slack() -> int:
        return 0 if rng.random() < 0.6 else int(rng.integers(1, 6))

    pixel_cycles, shift_cycles = [], [spread(slack(), rows, 0.2)]
    start = shift_cycles[0][-1] + 1 + slack()
    for n, count in enumerate(pixels):
        pixel_cycles.append(spread(start, count, 0.15))
        if n + 1 < len(pixels):
            earliest = start + rows + cols - 2
            shift_cycles.append(spread(earliest + slack(), rows, 0.2))
            start = max(pixel_cycles[-1][-1], shift_cycles[-1][-1]) + 1 + slack()
    return pixel_cycles, shift_cycles


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_array(dut):
    """Passes of random length through the skewed array, signed activations and then unsigned
    ones (``x_unsigned``); column sums against golden."""
    params = _params()
    rows, cols, width = params["rows"], params["cols"], params["width"]
    acc_width = golden.acc_width(width)
    latency = rows + cols + 1
    rng = _rng()
    lo, hi = golden.int_range(width)
    n_passes = _env_int("RADIX_PASSES", 12)
    await _start(dut, {"x_in": 0, "x_unsigned": 0, "swap_in": 0, "w_in": 0, "w_shift": 0})
    for unsigned in (False, True):
        x_lo, x_hi = golden.tensor_range(width, unsigned=unsigned)
        pixels = [1, 2, 2 * rows + cols + 3] + [int(p) for p in rng.integers(1, 3 * (rows + cols) + 2, n_passes - 3)]
        rng.shuffle(pixels)
        weights = [rng.integers(lo, hi + 1, (cols, rows)) for _ in pixels]
        inputs = [rng.integers(x_lo, x_hi + 1, (p, rows)) for p in pixels]
        weights[0][:] = lo  # the largest products, summed over every row
        inputs[0][:] = x_hi if unsigned else lo
        weights[1][:] = hi
        inputs[1][:] = x_hi if unsigned else lo  # the largest positive ones, or the most negative
        pixel_cycles, shift_cycles = array_schedule(rng, rows, cols, pixels)

        # Reference: each pass is a 1x1 convolution of a 1 x p map with rows input channels.
        expected_at = {}
        for n, cycles in enumerate(pixel_cycles):
            x = inputs[n].T.reshape(1, rows, 1, len(cycles))
            acc = golden.conv_accumulate(x, weights[n].reshape(cols, rows, 1, 1), np.zeros(cols, np.int64),
                                         stride=1, pad=0)
            for i, t in enumerate(cycles):
                expected_at[t + latency] = (n, i, acc[0, :, 0, i].tolist())
        x_at = {t: (n, i) for n, cycles in enumerate(pixel_cycles) for i, t in enumerate(cycles)}
        shift_at = {t: (n, j) for n, cycles in enumerate(shift_cycles) for j, t in enumerate(cycles)}
        total = max(expected_at) + 3

        for t in range(total):
            if t or unsigned:
                await FallingEdge(dut.clk)
            _set(dut.x_unsigned, unsigned)
            if t in x_at:
                n, i = x_at[t]
                _set(dut.x_in, pack_int(inputs[n][i], width))
                _set(dut.swap_in, i == 0)
            else:  # bubbles carry garbage that must not matter
                _set(dut.x_in, pack_int(rng.integers(x_lo, x_hi + 1, rows), width))
                _set(dut.swap_in, 0)
            if t in shift_at:
                n, j = shift_at[t]
                _set(dut.w_in, pack_int(weights[n][:, rows - 1 - j], width))
                _set(dut.w_shift, 1)
            else:
                _set(dut.w_in, pack_int(rng.integers(lo, hi + 1, cols), width))
                _set(dut.w_shift, 0)
            await ReadOnly()
            if t in expected_at:
                n, i, want = expected_at[t]
                got = unpack_int(int(dut.sums.value), cols, acc_width)
                assert got == want, (f"unsigned={unsigned}: cycle {t}: pass {n} pixel {i}: sums {got}, "
                                     f"expected {want}")
        dut._log.info("array %dx%d W=%d unsigned=%s: %d passes, %d pixels checked in %d cycles",
                      rows, cols, width, unsigned, len(pixels), len(expected_at), total)


# ------------------------------------------------------------------------------------------------
# Output unit


def _layer_word(fields: dict) -> int:
    """The ``layer`` port's value: LayerConfigLayout fields packed at their offsets."""
    word = 0
    for name, field in LayerConfigLayout:
        value = int(fields.get(name, 0))
        assert 0 <= value < 1 << field.width, f"layer field {name}={value}"
        word |= value << field.offset
    return word


def random_accumulators(rng, shape, shift, width: int) -> np.ndarray:
    """Accumulators of ``shape`` (C, H, W) in the signed A-bit range: full-range, mid-range and
    small values, and values around the saturation limits and the rounding ties of each
    channel's ``shift``."""
    acc_w = golden.acc_width(width)
    a_lo, a_hi = golden.int_range(acc_w)
    full = rng.integers(a_lo, a_hi + 1, shape, dtype=np.int64)
    mid = rng.integers(-(1 << (2 * width)), 1 << (2 * width), shape, dtype=np.int64)
    small = rng.integers(-(1 << (width - 1)), 1 << (width - 1), shape, dtype=np.int64)
    y_lo, y_hi = golden.int_range(width)
    u_hi = golden.tensor_range(width, unsigned=True)[1]
    base = rng.choice([y_hi, y_hi + 1, y_lo, y_lo - 1, 0, -1, 1, u_hi, u_hi + 1], shape)
    s = np.broadcast_to(np.asarray(shift, np.int64).reshape(-1, 1, 1), shape)
    right = np.maximum(s, 0)
    half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    tie = rng.choice([-1, 0, 1], shape) * half + rng.integers(-1, 2, shape) * (right > 1)
    # (shifts beyond A - W + 1 only clip harder; limiting them keeps int64 exact)
    up = np.left_shift(base, np.minimum(right, acc_w - width + 1)) + tie
    edge = np.where(s >= 0, up, np.right_shift(base, np.minimum(-s, 62)))
    edge = np.clip(edge, a_lo, a_hi)
    pick = rng.integers(0, 4, shape)
    acc = np.where(pick == 0, full, np.where(pick == 1, mid, np.where(pick == 2, small, edge)))
    acc.flat[:2] = [a_lo, a_hi][: acc.size]
    return acc


def random_job(rng, config: EngineConfig, index: int) -> dict:
    """One drain job and its expected output words and saturated count."""
    cols, width = config.cols, config.width
    pool = bool(index % 2) if index < 6 else bool(rng.random() < 0.5)
    relu = bool(index // 2 % 2) if index < 4 else bool(rng.random() < 0.5)
    unsigned = bool(index % 3 == 1) if index < 6 else bool(rng.random() < 0.5)  # docs/arithmetic.md §5
    c_out = int(rng.integers(1, 3 * cols + 1))
    if index in (4, 5):  # maps that fill a bank (the last read address wraps), pooled from odd sizes
        side = max(2, math.isqrt(config.acc_depth) & ~1)
        h, w = side, min(config.acc_depth // side, 16) & ~1
        out_h, out_w = (h + 1, w + 1) if pool else (h, w)
    else:
        while True:  # the computed map (even-cropped with pooling) fits a bank
            out_h, out_w = int(rng.integers(2 if pool else 1, 10)), int(rng.integers(2 if pool else 1, 10))
            h, w = (out_h - out_h % 2, out_w - out_w % 2) if pool else (out_h, out_w)
            if h * w <= config.acc_depth:
                break
    s_lo, s_hi = golden.shift_range(width)
    shift = rng.integers(s_lo, s_hi + 1, c_out)
    shift[: min(c_out, 5)] = [s_lo, s_hi, 0, 1, width][: min(c_out, 5)]
    acc = random_accumulators(rng, (c_out, h, w), shift, width)

    n_tiles = tiles(c_out, cols)
    acc_pad = np.zeros((n_tiles * cols, h, w), np.int64)
    acc_pad[:c_out] = acc
    shift_pad = np.zeros(n_tiles * cols, np.int64)
    shift_pad[:c_out] = shift
    out = golden.requantize(acc_pad[None], shift_pad.reshape(1, -1, 1, 1), relu=relu, width=width, unsigned=unsigned)
    values = (golden.maxpool2x2(out.values) if pool else out.values)[0]
    real = golden.requantize(acc[None], shift.reshape(1, -1, 1, 1), relu=relu, width=width, unsigned=unsigned)
    assert real.saturated == out.saturated  # padding lanes hold 0 and never saturate

    words, banks = [], []
    for k in range(n_tiles):
        lanes = slice(k * cols, (k + 1) * cols)
        pixels_out = values[lanes].reshape(cols, -1).T
        # only the words that hold channels: fewer in a last tile of fewer channels
        packed = pack_lanes(pixels_out, width=width).reshape(-1, config.wt_words)
        words.extend(int(v) for v in packed[:, :tile_out_words(c_out, k, config)].reshape(-1))
        pixels_in = acc_pad[lanes].reshape(cols, -1).T
        contents = [pack_int(p, config.acc_width) for p in pixels_in]
        # Bank entries past the computed map hold garbage that must never reach the output.
        garbage = rng.integers(0, 1 << 62, (config.acc_depth - len(contents), cols))
        contents += [pack_int(g, config.acc_width) for g in garbage]
        banks.append((contents, pack_int(shift_pad[lanes], SHIFT_BITS)))
    layer = _layer_word({"in_ch": 1, "in_h": 1, "in_w": 1, "out_ch": c_out, "out_h": out_h, "out_w": out_w,
                         "kernel_h": 1, "kernel_w": 1, "stride_h": 1, "stride_w": 1, "relu": int(relu),
                         "pool": int(pool), "out_unsigned": int(unsigned)})
    return {
        "layer": layer, "tiles": banks, "words": words, "saturated": real.saturated,
        "ready_p": float(rng.choice([1.0, 0.8, 0.5, 0.25])), "load_delay": int(rng.integers(0, 12)),
        "description": (f"c_out={c_out} {out_h}x{out_w} relu={relu} pool={pool} unsigned={unsigned} "
                        f"shifts={shift.tolist()}"),
    }


class BankModel:
    """The accumulator's drain side (radix_hw.accumulator.acc_drain_signature): two banks whose
    read data follows an enabled read by one cycle and holds otherwise, the ``full`` flags and
    the per-bank data shifts."""

    def __init__(self, config: EngineConfig):
        self.contents: list[list[int]] = [[0] * config.acc_depth, [0] * config.acc_depth]
        self.shifts = [0, 0]
        self.data = [0, 0]
        self.full = 0

    def clock(self, *, en: int, bank: int, addr: int, release: int) -> None:
        """The rising edge after a cycle in which the unit drove ``en``/``bank``/``addr``/``release``."""
        if en:
            self.data[bank] = self.contents[bank][addr]
        if release:
            assert self.full >> bank & 1, f"release of bank {bank}, which is not full"
            self.full &= ~(1 << bank)

    def load(self, bank: int, contents: list[int], shifts: int) -> None:
        assert not self.full >> bank & 1
        self.contents[bank] = list(contents)
        self.shifts[bank] = shifts
        self.full |= 1 << bank


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_output_unit(dut):
    """Random drain jobs back to back; every output word, ``last``, ``finished`` and
    ``saturated`` against golden, with random backpressure and random bank fill delays."""
    config = EngineConfig(**_params())
    n_jobs = _env_int("RADIX_JOBS", 8)
    rng = _rng()
    data_mask = (1 << STREAM_BITS) - 1
    model = BankModel(config)
    await _start(dut, {"start": 0, "layer": 0, "acc__data": 0, "acc__shifts": 0, "acc__full": 0,
                       "m_out__ready": 0})
    sampled = {"en": 0, "bank": 0, "addr": 0, "release": 0}
    total_cycles = 0
    for index in range(n_jobs):
        job = random_job(rng, config, index)
        expected = job["words"]
        where = f"job {index} ({job['description']})"
        # Bounded: every word needs about 1/ready_p cycles, every tile a fill and a drain.
        limit = int(len(expected) / job["ready_p"] * 3) + (len(job["tiles"]) + 1) * (60 + job["load_delay"])
        received, loaded, wait, released, stalled = 0, 0, job["load_delay"], 0, None
        for cycle in range(limit):
            await FallingEdge(dut.clk)
            if cycle == 0:
                _set(dut.layer, job["layer"])
            released += sampled["release"]
            model.clock(**sampled)
            if loaded < len(job["tiles"]) and not model.full >> (loaded % 2) & 1:
                if wait:
                    wait -= 1
                else:
                    model.load(loaded % 2, *job["tiles"][loaded])
                    loaded += 1
                    wait = int(rng.integers(0, job["load_delay"] + 1))
            bank = int(dut.acc__bank.value)
            _set(dut.acc__full, model.full)
            _set(dut.acc__data, model.data[bank])
            _set(dut.acc__shifts, model.shifts[bank])
            ready = int(rng.random() < job["ready_p"])
            _set(dut.m_out__ready, ready)
            _set(dut.start, cycle == 0)
            await ReadOnly()
            sampled = {"en": int(dut.acc__en.value), "bank": int(dut.acc__bank.value),
                       "addr": int(dut.acc__addr.value), "release": int(dut.acc__release.value)}
            valid, payload = int(dut.m_out__valid.value), int(dut.m_out__payload.value)
            if stalled is not None:  # a stalled word stays offered, unchanged
                assert valid and payload == stalled, f"{where}: cycle {cycle}: stalled word withdrawn or changed"
            stalled = payload if valid and not ready else None
            if valid and ready:
                assert received < len(expected), f"{where}: extra output word 0x{payload:X}"
                word, last = payload & data_mask, payload >> STREAM_BITS
                want = expected[received]
                assert word == want, f"{where}: word {received} = 0x{word:016X}, expected 0x{want:016X}"
                assert last == (received == len(expected) - 1), f"{where}: word {received}: last={last}"
                received += 1
            if int(dut.finished.value):
                assert received == len(expected), f"{where}: finished after {received} of {len(expected)} words"
                assert loaded == len(job["tiles"]) and released + sampled["release"] == loaded, \
                    f"{where}: finished with {loaded} tiles loaded, {released} released"
                saturated = int(dut.saturated.value)
                assert saturated == job["saturated"], f"{where}: saturated {saturated}, expected {job['saturated']}"
                break
        else:
            raise AssertionError(f"{where}: not finished within {limit} cycles ({received} of "
                                 f"{len(expected)} words, {loaded} tiles loaded, {released} released)")
        total_cycles += cycle + 1
        dut._log.info("%s: %d words, %d saturated, %d cycles", where, len(expected), job["saturated"], cycle + 1)
    # Idle afterwards: no word, no second finished pulse.
    await FallingEdge(dut.clk)
    model.clock(**sampled)
    _set(dut.start, 0)
    _set(dut.m_out__ready, 1)
    for cycle in range(20):
        await ReadOnly()
        assert not int(dut.m_out__valid.value) and not int(dut.finished.value), f"idle cycle {cycle}: activity"
        await FallingEdge(dut.clk)
    dut._log.info("output unit cols=%d W=%d: %d jobs in %d cycles", config.cols, config.width, n_jobs, total_cycles)

