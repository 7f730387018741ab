"""Small gateware helpers shared by the engine modules: lanes, delay lines, cheap arithmetic."""

from amaranth.hdl import Const, Mux, Signal, Value


def lane(value, index: int, width: int, *, signed: bool = True) -> Value:
    """Lane ``index`` of a flat vector of ``width``-bit lanes (lane 0 in the lowest bits)."""
    part = value[index * width:(index + 1) * width]
    return part.as_signed() if signed else part


def delay(m, value, cycles: int, *, name: str, reset_less: bool = True, flop_out: bool = False) -> Value:
    """``value`` delayed by ``cycles`` clock cycles through a register chain.

    Data chains are reset-less so that synthesis can map them to shift-register LUTs; control
    bits that must not carry stale state across a reset keep their reset. With ``flop_out`` the
    last stage keeps a reset, so it stays a flip-flop after a shift-register LUT: the chain's
    output then starts a path a nanosecond later than an SRL's clock-to-out would.
    """
    for stage in range(cycles):
        last = stage == cycles - 1
        reg = Signal.like(value, name=f"{name}_d{stage + 1}", reset_less=reset_less and not (flop_out and last))
        m.d.sync += reg.eq(value)
        value = reg
    return value


def small_product(factor, value) -> Value:
    """``factor * value`` for a narrow unsigned ``factor``, as shift-and-add (never a DSP)."""
    total = Const(0, 1)
    for bit in range(len(factor)):
        total = total + Mux(factor[bit], value << bit, 0)
    return total


def popcount(bits) -> Value:
    """Number of set bits of ``bits``, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))] or [Const(0, 1)]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def computed_size(size, pool) -> Value:
    """Output rows or columns the engine computes: with pooling an odd last one is dropped
    before requantization, never computed nor counted (docs/arithmetic.md §5, §6)."""
    return Mux(pool, size & ~1, size)[:len(size)]


def named_bits(*names: str) -> tuple:
    """One-bit signals named ``names`` (Python 3.11 compiles a short tuple assignment without the
    tuple Amaranth's name tracer looks for, so such signals would be anonymous in the netlist)."""
    return tuple(Signal(name=name) for name in names)
