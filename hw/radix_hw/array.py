"""The rows x cols weight-stationary systolic array with input skew and output de-skew."""

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from radix.engine_spec import SUPPORTED_WIDTHS, accumulator_width, array_shift_gap

from .helpers import delay, lane
from .pe import PackedPE, ProcessingElement, activation_width, lane_sum_width


class SystolicArray(wiring.Component):
    """``rows x cols`` multiply-accumulate cells; column ``c`` sums ``w[c][r] * x[r]`` over the rows.

    All ``rows`` input lanes of one pixel are presented together on ``x_in`` (lane ``r`` in bits
    ``r*W``), W-bit values that ``x_unsigned`` reads as unsigned (zero-extended) or, clear, as
    signed (sign-extended): the PEs multiply ``W + 1``-bit activations, so both ranges are exact
    (docs/arithmetic.md §12). ``x_unsigned`` must hold while a pass's pixels are in the array
    (the core holds it for a whole job). The array skews the lanes (lane ``r`` enters row ``r``
    ``r`` cycles later), each lane
    travels right one PE per cycle, partial sums travel down, and the column sums are de-skewed
    so that the ``cols`` sums of a pixel appear together on ``sums`` (column ``c`` in bits
    ``c*A``) exactly :attr:`latency` = ``rows + cols + 1`` cycles after the pixel's ``x_in``.

    Weights: ``w_in`` (one weight row, column ``c`` in bits ``c*W``) is shifted into the top row
    of shadow weights by ``w_shift`` and moves one row down per shift, so a pass's rows are
    shifted in bottom row first. ``swap_in``, presented with the first pixel of a pass, makes
    every PE switch to its shadow weight as that pixel reaches it. Each column's weights and
    shifts enter skewed like the inputs (column ``c`` as many cycles after column 0 as the swap
    wave reaches it later), so a column's shadows are rewritten right behind its own swaps: for a
    pass whose swap enters at cycle ``a``, shifts for the next pass may be presented at cycles
    ``>= a +`` :attr:`shift_gap` ``= a + rows - 1`` (the bottom row has swapped by then, in every
    column), and the next swap may enter at ``a'`` once the last shift lies at ``<= a' - 1``. A
    pass thus lasts at least ``2 * rows`` cycles (until 2026-12-07 the shifts went to every
    column at once, after the swap wave had crossed the whole array: ``2 * rows + cols - 1``).

    With ``macs_per_dsp=2`` (W=8 only) each row is ``ceil(cols/2)`` :class:`PackedPE` s, two
    adjacent columns per DSP48E1 (an odd last column pairs with a zero weight whose sum is
    dropped), exact for every input (see :class:`PackedPE`). The input then crosses a row in
    ``ceil(cols/2)`` cycles instead of ``cols``; it enters through ``cols - ceil(cols/2)`` extra
    delay stages so that every timing above, the latency included, is the same as with one
    MAC per DSP (the last PE swaps at ``a + rows + cols - 2`` in both).
    """

    def __init__(self, *, rows: int, cols: int, width: int, macs_per_dsp: int = 1):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"array {name} must be a positive integer, not {value!r}")
        if width not in SUPPORTED_WIDTHS:
            raise ValueError(f"array width must be one of {SUPPORTED_WIDTHS}, not {width!r}")
        if macs_per_dsp not in (1, 2) or (macs_per_dsp == 2 and width != PackedPE.WIDTH):
            raise ValueError(f"array macs_per_dsp must be 1, or 2 at width {PackedPE.WIDTH}, "
                             f"not {macs_per_dsp!r} at width {width}")
        self.rows = rows
        self.cols = cols
        self.width = width
        self.macs_per_dsp = macs_per_dsp
        self.acc_width = accumulator_width(width)
        self.latency = rows + cols + 1
        self.shift_gap = array_shift_gap(rows)
        super().__init__({
            "x_in": In(rows * width),
            "x_unsigned": In(1),
            "swap_in": In(1),
            "w_in": In(cols * width),
            "w_shift": In(1),
            "sums": Out(cols * self.acc_width),
        })

    @property
    def dsps(self) -> int:
        """Multipliers (DSP48E1s) of the array."""
        return self.rows * -(-self.cols // self.macs_per_dsp)

    def _skewed_weights(self, m, columns: list, delays: list[int]) -> tuple[list, list]:
        """``(weights, shifts)``: each column's top-row weight ``columns[c]`` and the array's
        ``w_shift``, delayed ``delays[c]`` cycles (the weights through reset-less chains that map
        to shift-register LUTs; the shifts through one chain with a tap per column, with reset so
        that no stale shift survives one)."""
        chain = [self.w_shift]
        for stage in range(max(delays)):
            reg = Signal(name=f"skew_shift_d{stage + 1}")
            m.d.sync += reg.eq(chain[-1])
            chain.append(reg)
        weights = [delay(m, column, d, name=f"skew_w{c}") for c, (column, d) in enumerate(zip(columns, delays))]
        return weights, [chain[d] for d in delays]

    def _activation(self, m, x_lane, r: int):
        """Lane ``r`` extended by its sign bit, or by a zero when ``x_unsigned``: done after the
        skew delay, so the delay lines stay W bits wide."""
        x = Signal(signed(activation_width(self.width)), name=f"x{r}")
        m.d.comb += x.eq(Cat(x_lane, x_lane[-1] & ~self.x_unsigned))
        return x

    def elaborate(self, platform):
        if self.macs_per_dsp == 2:
            return self._elaborate_packed()
        m = Module()
        rows, cols, w, a = self.rows, self.cols, self.width, self.acc_width
        pes = [[ProcessingElement(width=w, acc_width=a) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Column c's swaps come c cycles after column 0's: its weights and shifts do too.
        top, shifts = self._skewed_weights(m, [lane(self.w_in, c, w) for c in range(cols)], list(range(cols)))
        for r in range(rows):
            # Input skew: lane r reaches column 0 r cycles after the pixel is presented.
            x_lane = self._activation(m, delay(m, lane(self.x_in, r, w), r, name=f"skew_x{r}"), r)
            swap_lane = delay(m, self.swap_in, r, name=f"skew_swap{r}", reset_less=False)
            for c in range(cols):
                pe = pes[r][c]
                left = pes[r][c - 1] if c else None
                above = pes[r - 1][c] if r else None
                m.d.comb += [
                    pe.x_in.eq(left.x_out if left else x_lane),
                    pe.swap_in.eq(left.swap_out if left else swap_lane),
                    pe.w_in.eq(above.w_out if above else top[c]),
                    pe.w_shift.eq(shifts[c]),
                    pe.psum_in.eq(above.psum_out if above else Const(0, a)),
                ]

        # Output de-skew: column c leaves c cycles after column 0, so delay it cols-1-c cycles
        # (ending in a flip-flop: the accumulator's adder and bank write follow).
        sums = [delay(m, pes[rows - 1][c].psum_out, cols - 1 - c, name=f"deskew{c}", flop_out=True)
                for c in range(cols)]
        m.d.comb += self.sums.eq(Cat(*sums))
        return m

    def _elaborate_packed(self):
        m = Module()
        rows, cols, w, a = self.rows, self.cols, self.width, self.acc_width
        pairs = -(-cols // 2)
        s = lane_sum_width(rows, w)
        pes = [[PackedPE(width=w, sum_width=s) for _ in range(pairs)] for _ in range(rows)]
        for r in range(rows):
            for p in range(pairs):
                m.submodules[f"pe_{r}_{p}"] = pes[r][p]

        # Columns beyond cols (an odd last pair) get weight 0: their sums are never read.
        def top_weights(p):
            high = lane(self.w_in, 2 * p + 1, w) if 2 * p + 1 < cols else Const(0, w)
            return Cat(lane(self.w_in, 2 * p, w), high)

        # The extra input delay keeps the one-MAC timing (see the class docstring); pair p's
        # swaps come extra + p cycles after the swap enters: its weights and shifts do too.
        extra = cols - pairs
        top, shifts = self._skewed_weights(m, [top_weights(p) for p in range(pairs)],
                                           [extra + p for p in range(pairs)])
        for r in range(rows):
            x_lane = self._activation(m, delay(m, lane(self.x_in, r, w), r + extra, name=f"skew_x{r}"), r)
            swap_lane = delay(m, self.swap_in, r + extra, name=f"skew_swap{r}", reset_less=False)
            for p in range(pairs):
                pe = pes[r][p]
                left = pes[r][p - 1] if p else None
                above = pes[r - 1][p] if r else None
                m.d.comb += [
                    pe.x_in.eq(left.x_out if left else x_lane),
                    pe.swap_in.eq(left.swap_out if left else swap_lane),
                    pe.w_in.eq(above.w_out if above else top[p]),
                    pe.w_shift.eq(shifts[p]),
                    pe.psum0_in.eq(above.psum0_out if above else Const(0, s)),
                    pe.psum1_in.eq(above.psum1_out if above else Const(0, s)),
                ]

        # Output de-skew per pair; each lane sum is sign-extended to the accumulator width. The
        # chains end in a flip-flop: the accumulator's adder and bank write follow them.
        sums = []
        for c in range(cols):
            bottom = pes[rows - 1][c // 2]
            column = delay(m, bottom.psum1_out if c % 2 else bottom.psum0_out, pairs - 1 - c // 2,
                           name=f"deskew{c}", flop_out=True)
            wide = Signal(signed(a), name=f"sum{c}")
            m.d.comb += wide.eq(column)
            sums.append(wide)
        m.d.comb += self.sums.eq(Cat(*sums))
        return m
