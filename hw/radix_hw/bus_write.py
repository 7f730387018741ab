"""The bus master's write side: the core's output words to memory, by write descriptors.

A *write descriptor* names where words go and which words they are. The address side writes
``runs`` runs of ``run_beats`` consecutive words, run ``j`` at byte ``addr + j * stride``; the
data side takes ``beats`` words from ``words``. With ``imm`` the one word ``imm_data`` is written
instead (the stats word, docs/engine.md).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from radix.engine_spec import BUS_ADDR_BITS, BUS_BYTES, MAX_BURST_BEATS

from .axi4 import DATA_BITS, bus_master_control_members
from .burst_cursor import BEATS_BITS, BURST_BITS, BurstCursor, IssueQueue
from .helpers import named_bits
from .bus_read import COUNT_BITS, STRIDE_BITS

WriteDescriptor = data.StructLayout({
    "addr": BUS_ADDR_BITS,
    "run_beats": BEATS_BITS,
    "runs": COUNT_BITS,
    "beats": BEATS_BITS,
    "stride": STRIDE_BITS,
    "imm": 1,
    "imm_data": DATA_BITS,
    "final": 1,
})

_AddressPart = data.StructLayout({"addr": BUS_ADDR_BITS, "beats": BEATS_BITS, "count": COUNT_BITS,
                                  "stride": STRIDE_BITS, "final": 1})
_DataPart = data.StructLayout({"beats": BEATS_BITS, "imm": 1, "imm_data": DATA_BITS})
# a burst waiting for its AW: first byte, end (first byte + bytes, 33 bits), beats and, in the issue
# slot, whether it is in the window
_Pending = data.StructLayout({"addr": BUS_ADDR_BITS, "end": BUS_ADDR_BITS + 1, "beats": BURST_BITS, "window_ok": 1,
                              "final": 1})
# an issued burst, until its response: its first byte (for a bus error), its end, and whether it is final
_Issued = data.StructLayout({"addr": BUS_ADDR_BITS, "end": BUS_ADDR_BITS + 1, "final": 1})


class WriteMaster(wiring.Component):
    """Writes the words write descriptors name, in bursts whose data is already held.

    Ports: ``desc`` (descriptors), ``words`` (the data), the AXI write channels (``aw_*``,
    ``w_*``, ``b_*``), the window, ``stop`` (issue no new burst), ``flush`` (take and drop incoming data),
    and the outcomes: ``window_error`` / ``bus_error`` with ``error_addr``, ``quiet`` (nothing
    planned, held or outstanding; registered, a cycle late), ``drained`` (stopped, with every issued burst
    complete), ``answered_end`` (the end of the last ``final`` burst whose response came, since
    ``answered_clear``). The core's output stream carries exactly the words the
    descriptors write (its last tile only the words holding channels, ``radix.stream_format``).

    An AW is issued only when the whole burst's data is in the FIFO, so once issued a burst always
    completes, even if the list stops: nothing is ever left half done on the bus. As in the read
    master, the address walk makes one burst a cycle into a register (slot 1, with its end
    address) and from there into a two-entry issue queue (with its window check).
    """

    def __init__(self, *, depth: int = 64, max_bursts: int = 16):
        for name, value in (("depth", depth), ("max_bursts", max_bursts)):
            if not isinstance(value, int) or value < MAX_BURST_BEATS:
                raise ValueError(f"WriteMaster {name}={value!r}: at least {MAX_BURST_BEATS}")
        self._depth, self._max_bursts = depth, max_bursts
        super().__init__({
            "desc": In(stream.Signature(WriteDescriptor)),
            "words": In(stream.Signature(DATA_BITS)),
            "aw_addr": Out(BUS_ADDR_BITS),
            "aw_len": Out(8),
            "aw_valid": Out(1),
            "aw_ready": In(1),
            "w_data": Out(DATA_BITS),
            "w_strb": Out(BUS_BYTES),
            "w_last": Out(1),
            "w_valid": Out(1),
            "w_ready": In(1),
            "b_resp": In(2),
            "b_valid": In(1),
            "b_ready": Out(1),
            **bus_master_control_members(),
            "drained": Out(1),
            "answered_end": Out(BUS_ADDR_BITS + 1),
            "answered_clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.addr_descs = addr_descs = SyncFIFOBuffered(width=_AddressPart.size, depth=4)
        m.submodules.data_descs = data_descs = SyncFIFOBuffered(width=_DataPart.size, depth=4)
        m.submodules.data_fifo = data_fifo = SyncFIFOBuffered(width=DATA_BITS, depth=self._depth)
        m.submodules.lengths = lengths = SyncFIFOBuffered(width=BURST_BITS, depth=self._max_bursts)
        m.submodules.bursts = bursts = SyncFIFOBuffered(width=_Issued.size, depth=self._max_bursts)

        p = self.desc.payload
        a_part, d_part = Signal(_AddressPart), Signal(_DataPart)
        m.d.comb += [
            a_part.addr.eq(p.addr), a_part.beats.eq(p.run_beats), a_part.count.eq(p.runs), a_part.stride.eq(p.stride),
            a_part.final.eq(p.final),
            d_part.beats.eq(p.beats), d_part.imm.eq(p.imm), d_part.imm_data.eq(p.imm_data),
            addr_descs.w_data.eq(a_part), data_descs.w_data.eq(d_part),
            self.desc.ready.eq(addr_descs.w_rdy & data_descs.w_rdy),
            addr_descs.w_en.eq(self.desc.valid & self.desc.ready),
            data_descs.w_en.eq(self.desc.valid & self.desc.ready),
        ]

        # -- data side: take `beats` words (or the one immediate word) into the FIFO ------------
        d_active = Signal()
        dd = Signal(_DataPart)
        d_left = Signal(BEATS_BITS)
        m.d.comb += data_descs.r_en.eq(~d_active)
        with m.If(data_descs.r_rdy & ~d_active):
            q = data.View(_DataPart, data_descs.r_data)
            m.d.sync += [dd.eq(q), d_active.eq(q.beats != 0), d_left.eq(q.beats)]
        m.d.comb += [
            data_fifo.w_data.eq(Mux(dd.imm, dd.imm_data, self.words.payload)),
            self.words.ready.eq(self.flush | (d_active & ~dd.imm & data_fifo.w_rdy)),
        ]
        moved = Signal()
        m.d.comb += [
            moved.eq(d_active & Mux(dd.imm, data_fifo.w_rdy, self.words.valid & self.words.ready)),
            data_fifo.w_en.eq(moved & ~self.flush),
        ]
        with m.If(moved & ~self.flush):
            m.d.sync += d_left.eq(d_left - 1)
            with m.If(d_left == 1):
                m.d.sync += d_active.eq(0)

        # -- address side: bursts, issued when their data is held ----------------------------
        a_active = Signal()
        ad = Signal(_AddressPart)
        # the next group's address, kept ahead so the next cursor starts from flip-flops
        a_groups, next_group = Signal(COUNT_BITS), Signal(BUS_ADDR_BITS, name="next_group")
        more_groups = Signal()  # a_groups > 1, registered with it
        cursor = BurstCursor("write")

        m.d.comb += addr_descs.r_en.eq(~a_active & ~self.stop)
        with m.If(addr_descs.r_rdy & ~a_active & ~self.stop):
            q = data.View(_AddressPart, addr_descs.r_data)
            m.d.sync += [ad.eq(q), a_active.eq((q.count != 0) & (q.beats != 0)), a_groups.eq(q.count),
                         more_groups.eq(q.count[1:] != 0), next_group.eq(q.addr + q.stride),
                         *cursor.move(q.addr, q.beats)]
        beats, last_burst, _, end, step = cursor.burst()  # a write run is never empty
        held = Signal(range(self._depth + 1))
        uncommitted = Signal(range(self._depth + 1))  # held words that belong to no issued burst yet

        # As in the read master: the walk makes one burst a cycle into slot 1, from where it enters
        # the two-entry issue queue with its window check while the queue's second entry is free.
        slot1, slot1_valid = Signal(_Pending, name="slot1"), Signal(name="slot1_valid")
        issue_q = IssueQueue(_Pending, name="write_issue")
        head = issue_q.head
        slot_free = Signal(name="slot_free", init=1)
        walk, advance, issue = named_bits("walk", "advance", "issue")
        halted = Signal()  # registered, as in the read master
        m.d.sync += halted.eq(self.stop | self.window_error | self.bus_error)
        aw_shown = Signal()  # as in the read master: a shown AW stays until taken
        m.d.sync += aw_shown.eq(self.aw_valid & ~self.aw_ready)
        # an issued burst's length and address enter their FIFOs, and its words leave the count
        # of uncommitted ones, the cycle after the issue: the handshake's path ends at registers.
        # The next AW waits that cycle (at most one every two cycles; a burst's W beats take as many)
        issued, issued_beats = Signal(name="issued"), Signal(BURST_BITS, name="issued_beats")
        issued_burst = Signal(_Issued, name="issued_burst")
        m.d.sync += [issued.eq(issue), issued_beats.eq(head.beats), issued_burst.addr.eq(head.addr),
                     issued_burst.end.eq(head.end), issued_burst.final.eq(head.final)]
        m.d.comb += [
            self.aw_addr.eq(head.addr),
            self.aw_len.eq(head.beats - 1),
            self.aw_valid.eq(issue_q.head_valid & ~issued & (uncommitted >= head.beats) & head.window_ok
                             & lengths.w_rdy & bursts.w_rdy & (~halted | aw_shown)),
            issue.eq(self.aw_valid & self.aw_ready),
            advance.eq(slot1_valid & issue_q.room),
            walk.eq(a_active & slot_free),
            lengths.w_data.eq(issued_beats),
            lengths.w_en.eq(issued),
            bursts.w_data.eq(issued_burst),
            bursts.w_en.eq(issued),
        ]
        with m.If(slot_free):  # as in the read master: whether or not the walk goes on
            m.d.sync += [slot1.addr.eq(cursor.addr), slot1.end.eq(end), slot1.beats.eq(beats), slot1.final.eq(ad.final)]
        issue_q.feed(m, slot=slot1, slot_valid=slot1_valid, slot_free=slot_free, walk=walk, advance=advance,
                     pop=issue, win_base=self.win_base, win_size=self.win_size)
        with m.If(issue_q.head_valid & ~head.window_ok & ~halted & ~self.window_error & ~self.bus_error):
            m.d.sync += [self.window_error.eq(1), self.error_addr.eq(head.addr)]
        with m.If(walk):
            with m.If(~last_burst):
                m.d.sync += step
            with m.Elif(more_groups):
                m.d.sync += [a_groups.eq(a_groups - 1), more_groups.eq(a_groups > 2),
                             next_group.eq(next_group + ad.stride), *cursor.move(next_group, ad.beats)]
            with m.Else():
                m.d.sync += a_active.eq(0)

        # -- W: the held words of each issued burst, WLAST on its last; the next burst's length is
        # taken in the cycle the current one's last beat goes, so bursts follow without a gap
        w_left = Signal(BURST_BITS)
        w_busy = Signal()
        w_take = Signal()
        m.d.comb += [
            self.w_data.eq(data_fifo.r_data),
            self.w_strb.eq((1 << BUS_BYTES) - 1),
            self.w_last.eq(w_left == 1),
            self.w_valid.eq(w_busy & data_fifo.r_rdy),
            w_take.eq(self.w_valid & self.w_ready),
            data_fifo.r_en.eq(w_take),
        ]
        w_free = ~w_busy | (w_take & (w_left == 1))
        m.d.comb += lengths.r_en.eq(w_free)
        with m.If(w_take):
            m.d.sync += w_left.eq(w_left - 1)
        with m.If(w_free):
            with m.If(lengths.r_rdy):
                m.d.sync += [w_busy.eq(1), w_left.eq(lengths.r_data)]
            with m.Else():
                m.d.sync += w_busy.eq(0)
        m.d.sync += [
            held.eq(held + data_fifo.w_en - w_take),
            uncommitted.eq(uncommitted + data_fifo.w_en - Mux(issued, issued_beats, 0)),
        ]

        # -- B: responses, in order -------------------------------------------------------
        outstanding = Signal(range(self._max_bursts + 1))
        b_take = self.b_valid & self.b_ready
        answered = data.View(_Issued, bursts.r_data)
        m.d.comb += [self.b_ready.eq(1), bursts.r_en.eq(b_take)]
        with m.If(b_take & self.b_resp[1] & ~self.window_error & ~self.bus_error):
            m.d.sync += [self.bus_error.eq(1), self.error_addr.eq(answered.addr)]
        with m.If(self.answered_clear):
            m.d.sync += self.answered_end.eq(0)
        with m.Elif(b_take & answered.final & ~self.b_resp[1]):
            m.d.sync += self.answered_end.eq(answered.end)
        m.d.sync += outstanding.eq(outstanding + issue - b_take)
        # a descriptor takes two cycles to show at a FIFO's output: quiet waits for them
        recent = Signal(2)
        m.d.sync += recent.eq(Cat(self.desc.valid & self.desc.ready, recent[0]))
        # drained once stopped (halted), no AW shown and every issued burst complete
        m.d.comb += self.drained.eq(halted & ~aw_shown & ~issued & (outstanding == 0) & ~w_busy & ~lengths.r_rdy)
        # registered: a cycle late, which the command unit allows (it waits for quiet only after
        # its last descriptor, whose valid, then `recent`, already clear quiet)
        m.d.sync += self.quiet.eq(~a_active & ~slot1_valid & issue_q.empty & ~addr_descs.r_rdy & ~d_active
                                  & ~data_descs.r_rdy & (held == 0) & (outstanding == 0) & ~w_busy
                                  & ~lengths.r_rdy & ~self.desc.valid & ~recent.any())
        return m
