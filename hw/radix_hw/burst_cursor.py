"""Splitting a run of consecutive 64-bit words into AXI bursts, one burst a cycle.

Both bus masters walk runs (``beats`` words from an 8-byte aligned byte address; the command
unit refuses other addresses) and cut them into bursts of at most 16 beats that never cross a
4 KB boundary (the Zynq HP ports are AXI3 inside). Bursts end at 128-byte boundaries (16 beats):
such a burst never crosses 4 KB, and after a run's first burst every burst starts on one, so
the longest next burst is always 16 beats. The walk is a loop through one cycle (this burst's
length decides whether the next address is this burst's end or the next run's start), so
:class:`BurstCursor` keeps what the decision needs in registers beside the address and count.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal

from radix.engine_spec import BURST_BOUNDARY, BUS_ADDR_BITS, BUS_BYTES, MAX_BURST_BEATS

BEATS_BITS = 20  # beats in one run

_BEAT_SHIFT = (BUS_BYTES - 1).bit_length()
_MAX_SHIFT = (MAX_BURST_BEATS - 1).bit_length()
_BLOCK_SHIFT = _BEAT_SHIFT + _MAX_SHIFT  # the 128-byte blocks bursts keep to
BURST_BITS = _MAX_SHIFT + 1  # a burst's beats, 1..16
if (1 << _BEAT_SHIFT, 1 << _MAX_SHIFT) != (BUS_BYTES, MAX_BURST_BEATS) or BURST_BOUNDARY % (1 << _BLOCK_SHIFT):
    raise ValueError("the bus width and longest burst must be powers of two, their product dividing 4 KB")


def _to_block_end(addr):
    """Beats from 8-byte aligned ``addr`` to the end of its 128-byte block: 1..16."""
    return MAX_BURST_BEATS - addr[_BEAT_SHIFT:_BLOCK_SHIFT]


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
        self._limit = Signal(BURST_BITS, name=f"{name}_limit")  # beats to the block's end
        self._last = Signal(name=f"{name}_last")  # remaining <= limit: the burst ends the run
        self._empty = Signal(name=f"{name}_empty")  # remaining == 0

    def move(self, addr, beats) -> list:
        """Statements that set the cursor to byte address ``addr`` with ``beats`` beats left."""
        limit = _to_block_end(addr)
        return [self.addr.eq(addr), self.remaining.eq(beats), self._limit.eq(limit),
                self._last.eq(beats <= limit), self._empty.eq(beats == 0)]

    def burst(self) -> tuple:
        """The burst at the cursor: ``(beats, last, empty, end, step)``.

        ``beats`` is ``min(remaining, beats to the 128-byte block's end)``; ``last`` when it
        takes all ``remaining`` beats; ``empty`` when none are left; ``end`` its end
        (``addr + 8 * beats``, 33 bits: a burst that wraps past 2^32 is outside any window);
        ``step`` the statements that move the cursor past it (when not ``last``: to the next
        block, 16 beats long).
        """
        addr, remaining, low = self.addr, self.remaining, self.remaining[:BURST_BITS]
        beats = Mux(self._last, low, self._limit)
        next_block = Cat(Const(0, _BLOCK_SHIFT), addr[_BLOCK_SHIFT:] + 1)  # 33 bits
        end = Mux(self._last, addr + (low << _BEAT_SHIFT), next_block)
        # after the step `limit` is 16, so the step's `last` is remaining - limit <= 16
        step = [self.addr.eq(next_block[:BUS_ADDR_BITS]), self.remaining.eq(remaining - self._limit),
                self._limit.eq(MAX_BURST_BEATS), self._last.eq(remaining <= self._limit + MAX_BURST_BEATS),
                self._empty.eq(0)]
        return beats, self._last, self._empty, end, step


class IssueQueue:
    """Two entries between a walk and an address channel; the head is a register.

    The address channel's payload and the facts its valid depends on come straight from
    flip-flops (no pointer multiplexer on the handshake's path); the second entry takes a burst
    while the head waits. :meth:`update` adds the logic: ``push`` (only while :attr:`room`)
    enters ``entry``, ``pop`` takes the head.
    """

    def __init__(self, layout, *, name: str):
        self._layout, self._name = layout, name
        self.head = Signal(layout, name=f"{name}_head")
        self.head_valid = Signal(name=f"{name}_head_valid")
        self._second = Signal(layout, name=f"{name}_second")
        self._second_valid = Signal(name=f"{name}_second_valid")
        self.room = ~self._second_valid
        self.empty = ~self.head_valid & ~self._second_valid

    def feed(self, m, *, slot, slot_valid, slot_free, walk, advance, pop, win_base, win_size) -> None:
        """Add the logic between a walk's slot 1 and this queue to module ``m``: ``slot`` (a
        register of the queue's layout, ``addr`` and ``end`` set, ``window_ok`` not) enters with
        its window check ``[win_base, win_base + win_size)`` when ``advance``; ``slot_valid``
        follows ``walk`` and ``advance``; ``slot_free`` (slot 1 empty or moving on) is registered,
        computed from the next state so the walk's decision starts at flip-flops."""
        checked = Signal(self._layout, name=f"{self._name}_checked")
        win_end = Signal(BUS_ADDR_BITS + 1)  # registered: the window is set before START
        m.d.sync += win_end.eq(win_base + win_size)
        m.d.comb += [checked.eq(slot), checked.window_ok.eq((slot.addr >= win_base) & (slot.end <= win_end))]
        self.update(m, push=advance, entry=checked, pop=pop)
        slot_next = walk | (slot_valid & ~advance)
        m.d.sync += [slot_valid.eq(slot_next), slot_free.eq(~slot_next | self.room_after(push=advance, pop=pop))]

    def room_after(self, *, push, pop):
        """Whether :attr:`room` holds in the next cycle, given this cycle's ``push`` and ``pop``."""
        return pop | ~(self._second_valid | (self.head_valid & push))

    def update(self, m, *, push, entry, pop) -> None:
        """Add the queue's logic to module ``m``."""
        # a free second entry takes `entry` every cycle, so `push` (often a deep decision) only
        # sets its flag
        with m.If(~self._second_valid):
            m.d.sync += self._second.eq(entry)
        with m.If(pop & self._second_valid):
            m.d.sync += [self.head.eq(self._second), self._second_valid.eq(0)]
        with m.Elif(pop | ~self.head_valid):
            m.d.sync += [self.head.eq(entry), self.head_valid.eq(push)]
        with m.Elif(push):
            m.d.sync += self._second_valid.eq(1)
