"""The processing element of the weight-stationary systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def activation_width(width: int) -> int:
    """Bits of an activation as the array multiplies it: ``W + 1`` signed bits hold a W-bit value
    of either signedness, ``[-2^(W-1), 2^W - 1]`` (docs/arithmetic.md §12)."""
    return width + 1


def product_bound(width: int) -> int:
    """The largest ``|w * x|`` of a signed W-bit weight and a signed or unsigned W-bit activation:
    ``2^(W-1) * (2^W - 1)``, from ``w = -2^(W-1)`` and ``x = 2^W - 1`` (docs/arithmetic.md §3)."""
    return (1 << (width - 1)) * ((1 << width) - 1)


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
        Data width W of the (signed) weights; the input ``x`` has :func:`activation_width` bits,
        a signed or an unsigned W-bit activation extended by the array.
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
        x_width = activation_width(width)
        super().__init__({
            "x_in": In(signed(x_width)),
            "swap_in": In(1),
            "x_out": Out(signed(x_width)),
            "swap_out": Out(1),
            "w_in": In(signed(width)),
            "w_shift": In(1),
            "w_out": Out(signed(width)),
            "psum_in": In(signed(acc_width)),
            "psum_out": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        x = Signal.like(self.x_in, reset_less=True)
        swap = Signal()
        shadow = Signal(signed(self.width), reset_less=True)
        active = Signal(signed(self.width), reset_less=True)
        # |w * x| <= product_bound(W) < 2^(2W-1): 2W signed bits hold every product exactly.
        product = Signal(signed(product_bound(self.width).bit_length() + 1), reset_less=True)
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


# Lane offset of the packed weight pair: the low product of a W=8 weight and a signed or unsigned
# activation, |w0 * x| <= 128 * 255 = 32,640 < 2^15, fits the signed 16 bits below it
# (PackedPE's docstring and docs/arithmetic.md §12 have the bound).
PACK_SHIFT = 16


def lane_sum_width(rows: int, width: int) -> int:
    """Signed bits that hold any sum of ``rows`` products of a signed ``width``-bit weight and a
    signed or unsigned ``width``-bit activation.

    ``|w * x| <= B =`` :func:`product_bound` (``2^(W-1) * (2^W - 1)``), so a column sum obeys
    ``|s| <= rows * B``, which needs ``bit_length(rows * B) + 1`` signed bits.
    """
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive integer, not {rows!r}")
    return (rows * product_bound(width)).bit_length() + 1


class PackedPE(wiring.Component):
    """Two W=8 multiply-accumulate cells of adjacent output columns on one DSP48E1.

    Both columns see the same input ``x``, a 9-bit signed activation (a signed or an unsigned
    8-bit value, extended by the array: ``x`` in ``[-128, 255]``); their stationary weights
    ``w0`` (column ``2p``) and ``w1`` (column ``2p+1``) are combined once per pass, at the swap,
    into the 25-bit packed weight ``w1 * 2^16 + w0`` (the DSP48E1's A port), and the one 9x25
    signed multiply ``P = x * (w1 * 2^16 + w0) = (w1 * x) * 2^16 + w0 * x`` (the B port holds
    ``x``) gives both products. Each packed product is taken out of the DSP and split:

    * low lane ``p0 = sign_extend(P[15:0])``: exact because ``w0 * x`` lies in
      ``[-128 * 255, 127 * 255] = [-32640, 32385]``, inside the signed 16-bit range (``|w0 * x|
      <=`` :func:`product_bound` ``= 32640 < 2^15``), so ``P mod 2^16`` determines it;
    * high lane ``p1 = (P - p0) / 2^16 = (P >> 16) + P[15]`` (``>>`` arithmetic): exact, as
      ``P - p0 = (w1 * x) * 2^16``.

    The lanes are then summed in fabric, each in its own partial-sum cascade of ``sum_width``
    signed bits (``psum0_*``, ``psum1_*``), never in the DSP's P cascade, so no carry of one lane
    reaches the other whatever the number of rows; ``sum_width`` from :func:`lane_sum_width`
    holds every column sum exactly. This is exact for every value, every layer and every array
    height; it costs two ``sum_width``-bit fabric adders per DSP.

    Timing and weight handling are those of :class:`ProcessingElement` for both lanes: ``x_out``
    and ``swap_out`` at ``a + 1``, the packed product at ``a + 2`` (the M register), the sums at
    ``a + 3``; ``w_in``/``w_out`` carry both columns' weights (column ``2p`` in the low W bits).

    Parameters
    ----------
    width:
        Data width W; only 8 (two lanes of 16 bits fit the 25x18 multiplier).
    sum_width:
        Width of each lane's partial sum (signed), at least ``2 * width``.
    """

    WIDTH = 8

    def __init__(self, *, width: int, sum_width: int):
        if width != self.WIDTH:
            raise ValueError(f"PackedPE width must be {self.WIDTH}, not {width!r}")
        if not isinstance(sum_width, int) or sum_width < 2 * width:
            raise ValueError(f"PackedPE sum_width must be an integer >= 2*width, not {sum_width!r}")
        self.width = width
        self.sum_width = sum_width
        x_width = activation_width(width)
        super().__init__({
            "x_in": In(signed(x_width)),
            "swap_in": In(1),
            "x_out": Out(signed(x_width)),
            "swap_out": Out(1),
            "w_in": In(2 * width),
            "w_shift": In(1),
            "w_out": Out(2 * width),
            "psum0_in": In(signed(sum_width)),
            "psum1_in": In(signed(sum_width)),
            "psum0_out": Out(signed(sum_width)),
            "psum1_out": Out(signed(sum_width)),
        })

    def elaborate(self, platform):
        m = Module()
        w, s = self.width, self.sum_width
        x = Signal.like(self.x_in, reset_less=True)
        swap = Signal()
        shadow = Signal(2 * w, reset_less=True)
        active = Signal(signed(PACK_SHIFT + w + 1), reset_less=True)  # w1 * 2^16 + w0: 25 bits
        product = Signal(signed(len(active) + len(x)), reset_less=True)
        psum0 = Signal(signed(s), reset_less=True)
        psum1 = Signal(signed(s), reset_less=True)

        w0 = shadow[:w].as_signed()
        w1 = shadow[w:].as_signed()
        low = product[:PACK_SHIFT].as_signed()
        high = (product >> PACK_SHIFT) + product[PACK_SHIFT - 1]
        m.d.sync += [
            x.eq(self.x_in),
            swap.eq(self.swap_in),
            product.eq(x * active),
            psum0.eq(self.psum0_in + low),
            psum1.eq(self.psum1_in + high),
        ]
        with m.If(self.swap_in):
            m.d.sync += active.eq((w1 << PACK_SHIFT) + w0)
        with m.If(self.w_shift):
            m.d.sync += shadow.eq(self.w_in)

        m.d.comb += [
            self.x_out.eq(x),
            self.swap_out.eq(swap),
            self.w_out.eq(shadow),
            self.psum0_out.eq(psum0),
            self.psum1_out.eq(psum1),
        ]
        return m
