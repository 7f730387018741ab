"""The rows x cols weight-stationary systolic array with input skew and output de-skew."""

from amaranth.hdl import Cat, Const, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from radix.engine_spec import SUPPORTED_WIDTHS, accumulator_width

from .helpers import delay, lane
from .pe import ProcessingElement


class SystolicArray(wiring.Component):
    """``rows x cols`` processing elements; column ``c`` sums ``w[c][r] * x[r]`` over the rows.

    All ``rows`` input lanes of one pixel are presented together on ``x_in`` (lane ``r`` in bits
    ``r*W``); the array skews them (lane ``r`` enters row ``r`` ``r`` cycles later), each lane
    travels right one PE per cycle, partial sums travel down, and the column sums are de-skewed
    so that the ``cols`` sums of a pixel appear together on ``sums`` (column ``c`` in bits
    ``c*A``) exactly :attr:`latency` = ``rows + cols + 1`` cycles after the pixel's ``x_in``.

    Weights: ``w_in`` (one weight row, column ``c`` in bits ``c*W``) is shifted into the top row
    of shadow weights by ``w_shift`` and moves one row down per shift, so a pass's rows are
    shifted in bottom row first. ``swap_in``, presented with the first pixel of a pass, makes
    every PE switch to its shadow weight as that pixel reaches it. For a pass whose swap enters
    at cycle ``a``, shifts for the next pass may occur at cycles ``>= a + rows + cols - 2``
    (every PE has swapped by then), and the next swap may enter at ``a'`` once the last shift
    lies at ``<= a' - 1``.
    """

    def __init__(self, *, rows: int, cols: int, width: int):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"array {name} must be a positive integer, not {value!r}")
        if width not in SUPPORTED_WIDTHS:
            raise ValueError(f"array width must be one of {SUPPORTED_WIDTHS}, not {width!r}")
        self.rows = rows
        self.cols = cols
        self.width = width
        self.acc_width = accumulator_width(width)
        self.latency = rows + cols + 1
        super().__init__({
            "x_in": In(rows * width),
            "swap_in": In(1),
            "w_in": In(cols * width),
            "w_shift": In(1),
            "sums": Out(cols * self.acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, w, a = self.rows, self.cols, self.width, self.acc_width
        pes = [[ProcessingElement(width=w, acc_width=a) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        for r in range(rows):
            # Input skew: lane r reaches column 0 r cycles after the pixel is presented.
            x_lane = delay(m, lane(self.x_in, r, w), r, name=f"skew_x{r}")
            swap_lane = delay(m, self.swap_in, r, name=f"skew_swap{r}", reset_less=False)
            for c in range(cols):
                pe = pes[r][c]
                left = pes[r][c - 1] if c else None
                above = pes[r - 1][c] if r else None
                m.d.comb += [
                    pe.x_in.eq(left.x_out if left else x_lane),
                    pe.swap_in.eq(left.swap_out if left else swap_lane),
                    pe.w_in.eq(above.w_out if above else lane(self.w_in, c, w)),
                    pe.w_shift.eq(self.w_shift),
                    pe.psum_in.eq(above.psum_out if above else Const(0, a)),
                ]

        # Output de-skew: column c leaves c cycles after column 0, so delay it cols-1-c cycles.
        sums = [delay(m, pes[rows - 1][c].psum_out, cols - 1 - c, name=f"deskew{c}")
                for c in range(cols)]
        m.d.comb += self.sums.eq(Cat(*sums))
        return m
