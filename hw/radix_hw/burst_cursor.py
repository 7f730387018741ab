"""Splitting a run of consecutive 64-bit words into AXI bursts, one burst a cycle.

Both bus masters walk runs (``beats`` words from a byte address) and cut them into bursts of at
most 16 beats that never cross a 4 KB boundary (the Zynq HP ports are AXI3 inside). The walk
is a loop through one cycle: this burst's length decides whether the next address is this
burst's end or the next run's start. :class:`BurstCursor` keeps everything that loop needs
from the current address and count in registers beside them, so the decision is a few LUT
levels and the sums (next address, beats left) run beside it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal

from radix.engine_spec import BURST_BOUNDARY, BUS_ADDR_BITS, BUS_BYTES, MAX_BURST_BEATS

BEATS_BITS = 20  # beats in one run

_BEAT_SHIFT = (BUS_BYTES - 1).bit_length()
_BOUNDARY_SHIFT = (BURST_BOUNDARY - 1).bit_length()
_MAX_SHIFT = (MAX_BURST_BEATS - 1).bit_length()
BURST_BITS = _MAX_SHIFT + 1  # a burst's beats, 1..16
if (1 << _BEAT_SHIFT, 1 << _BOUNDARY_SHIFT, 1 << _MAX_SHIFT) != (BUS_BYTES, BURST_BOUNDARY, MAX_BURST_BEATS):
    raise ValueError("the bus width, burst boundary and longest burst must be powers of two")


def _page_limit(addr) -> tuple:
    """``(near, limit)`` of byte address ``addr``: ``near`` when fewer than 16 beats are left to
    the next 4 KB boundary, ``limit`` the longest burst from ``addr``: ``min(16, beats to it)``
    (an unaligned address loses its first partial beat)."""
    q = addr[_BEAT_SHIFT:_BOUNDARY_SHIFT]  # the beat within the page
    c = addr[:_BEAT_SHIFT] != 0
    near = q[_MAX_SHIFT:].all() & ((q[:_MAX_SHIFT] != 0) | c)
    to_boundary = Mux(c, ~q[:_MAX_SHIFT], ~q[:_MAX_SHIFT] + 1)[:_MAX_SHIFT]
    return near, Mux(near, to_boundary, MAX_BURST_BEATS)[:BURST_BITS]


class BurstCursor:
    """A run's current byte address and beats left, registered with what splitting them needs.

    Assign through :meth:`move` (an address and a count of beats); read the current burst from
    :meth:`burst`. ``name`` prefixes the registers' names.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"BurstCursor name must be an identifier, not {name!r}")
        self.addr = Signal(BUS_ADDR_BITS, name=f"{name}_addr")
        self.remaining = Signal(BEATS_BITS, name=f"{name}_remaining")
        self._near = Signal(name=f"{name}_near")  # within 16 beats of a 4 KB boundary
        self._limit = Signal(BURST_BITS, name=f"{name}_limit")  # the longest burst from addr
        self._last = Signal(name=f"{name}_last")  # remaining <= limit: the burst ends the run
        self._empty = Signal(name=f"{name}_empty")  # remaining == 0

    def move(self, addr, beats) -> list:
        """Statements that set the cursor to byte address ``addr`` with ``beats`` beats left."""
        near, limit = _page_limit(addr)
        return [self.addr.eq(addr), self.remaining.eq(beats), self._near.eq(near), self._limit.eq(limit),
                self._last.eq((beats[BURST_BITS:] == 0) & (beats[:BURST_BITS] <= limit)),
                self._empty.eq(beats == 0)]

    def burst(self) -> tuple:
        """The burst at the cursor: ``(beats, last, empty, end, step)``.

        ``beats`` is ``min(remaining, 16, beats to the next 4 KB boundary)``; ``last`` when it
        takes all ``remaining`` beats; ``empty`` when none are left; ``end`` its end
        (``addr + 8 * beats``, 33 bits: a burst that wraps past 2^32 is outside any window);
        ``step`` the statements that move the cursor past it (when not ``last``). ``last`` and
        ``empty`` are registers, ``end`` comes from incrementers of ``addr`` and a sum with
        ``remaining``, not from ``beats``, and the step from the incrementers alone, so that the
        walk's decision and the next burst's address are short paths.
        """
        addr, remaining, low = self.addr, self.remaining, self.remaining[:BURST_BITS]
        beats = Mux(self._last, low, self._limit)
        c = addr[:_BEAT_SHIFT] != 0
        # addr + 8 * limit: 16 beats on, the next boundary, or (unaligned) the boundary's last beat
        full = Mux(self._near,
                   Mux(c, Cat(addr[:_BEAT_SHIFT], Const(-1, _BOUNDARY_SHIFT - _BEAT_SHIFT), addr[_BOUNDARY_SHIFT:]),
                       Cat(Const(0, _BOUNDARY_SHIFT), addr[_BOUNDARY_SHIFT:] + 1)),
                   Cat(addr[:_BEAT_SHIFT + _MAX_SHIFT], addr[_BEAT_SHIFT + _MAX_SHIFT:] + 1))
        end = Mux(self._last, addr + (low << _BEAT_SHIFT), full)
        # a step follows a burst of `limit` beats, so `last` decides only whether it is taken
        step = self.move(full[:BUS_ADDR_BITS], (remaining - self._limit)[:BEATS_BITS])
        return beats, self._last, self._empty, end, step


class IssueQueue:
    """Two entries between a walk and an address channel; the head is a register.

    The address channel's payload and the facts its valid depends on come straight from
    flip-flops (no pointer multiplexer on the handshake's path); the second entry takes a burst
    while the head waits. :meth:`update` adds the logic: ``push`` (only while :attr:`room`)
    enters ``entry``, ``pop`` takes the head.
    """

    def __init__(self, layout, *, name: str):
        self.head = Signal(layout, name=f"{name}_head")
        self.head_valid = Signal(name=f"{name}_head_valid")
        self._second = Signal(layout, name=f"{name}_second")
        self._second_valid = Signal(name=f"{name}_second_valid")
        self.room = ~self._second_valid
        self.empty = ~self.head_valid & ~self._second_valid

    def update(self, m, *, push, entry, pop) -> None:
        with m.If(pop & self._second_valid):
            m.d.sync += [self.head.eq(self._second), self._second_valid.eq(0)]
        with m.Elif(pop | ~self.head_valid):
            m.d.sync += [self.head.eq(entry), self.head_valid.eq(push)]
        with m.Elif(push):
            m.d.sync += [self._second.eq(entry), self._second_valid.eq(1)]
