"""The processing element of the weight-stationary systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell: ``psum_out = psum_in + x * w_active``.

    Timing (cycle numbers relative to the cycle ``a`` in which a pixel's ``x_in`` is presented):

    * ``x_out``/``swap_out`` repeat ``x_in``/``swap_in`` at ``a + 1`` (the input travels right);
    * the product ``x * w`` is registered at ``a + 2`` (the DSP48E1's M register);
    * ``psum_in`` must carry the partial sum of the same pixel at ``a + 2``, and ``psum_out``
      holds ``psum_in + product`` at ``a + 3`` (the P register), so a PE below, whose input is
      one cycle later, receives it exactly in time.

    The PE holds two weights. ``w_shift`` shifts ``w_in`` into the *shadow* weight (``w_out``
    feeds the shadow of the PE below: a per-column shift chain). ``swap_in``, which travels with
    the first pixel of a pass, copies the shadow into the *active* weight at ``a``, so that pixel
    and all later ones use the new weight. A shift in the swap's own cycle is allowed: the active
    weight takes the shadow's value from before the shift.

    Parameters
    ----------
    width:
        Data width W of inputs and weights (signed).
    acc_width:
        Partial-sum width A (signed); no overflow handling, the contract keeps sums exact.
    """

    def __init__(self, *, width: int, acc_width: int):
        if not isinstance(width, int) or width < 2:
            raise ValueError(f"PE width must be an integer >= 2, not {width!r}")
        if not isinstance(acc_width, int) or acc_width < 2 * width:
            raise ValueError(f"PE acc_width must be an integer >= 2*width, not {acc_width!r}")
        self.width = width
        self.acc_width = acc_width
        super().__init__({
            "x_in": In(signed(width)),
            "swap_in": In(1),
            "x_out": Out(signed(width)),
            "swap_out": Out(1),
            "w_in": In(signed(width)),
            "w_shift": In(1),
            "w_out": Out(signed(width)),
            "psum_in": In(signed(acc_width)),
            "psum_out": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        x = Signal(signed(self.width), reset_less=True)
        swap = Signal()
        shadow = Signal(signed(self.width), reset_less=True)
        active = Signal(signed(self.width), reset_less=True)
        product = Signal(signed(2 * self.width), reset_less=True)
        psum = Signal(signed(self.acc_width), reset_less=True)

        m.d.sync += [
            x.eq(self.x_in),
            swap.eq(self.swap_in),
            product.eq(x * active),
            psum.eq(self.psum_in + product),
        ]
        with m.If(self.swap_in):
            m.d.sync += active.eq(shadow)
        with m.If(self.w_shift):
            m.d.sync += shadow.eq(self.w_in)

        m.d.comb += [
            self.x_out.eq(x),
            self.swap_out.eq(swap),
            self.w_out.eq(shadow),
            self.psum_out.eq(psum),
        ]
        return m
