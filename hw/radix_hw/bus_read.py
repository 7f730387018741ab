"""The bus master's read side: descriptors in, AXI4 read bursts out, data words back in order.

A *read descriptor* names ``outer_count`` rows of ``count`` groups of ``beats`` consecutive 64-bit
words: group ``(i, j)`` starts at ``addr + i * outer_stride + j * stride`` (bytes). After each
group ``fill`` zero words follow in the output (a skip tile beyond its tensor's pixel words,
docs/engine.md). ``dest`` travels with every word, so command words and job data share one path.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from radix.engine_spec import BUS_ADDR_BITS, MAX_BURST_BEATS

from .axi4 import DATA_BITS, bus_master_control_members
from .burst_cursor import BEATS_BITS, BURST_BITS, BurstCursor, IssueQueue
from .helpers import named_bits

COUNT_BITS = 20
FILL_BITS = 8
STRIDE_BITS = BUS_ADDR_BITS

ReadDescriptor = data.StructLayout({
    "addr": BUS_ADDR_BITS,
    "beats": BEATS_BITS,
    "fill": FILL_BITS,
    "count": COUNT_BITS,
    "stride": STRIDE_BITS,
    "outer_count": 16,
    "outer_stride": STRIDE_BITS,
    "dest": 1,
    "tag": 16,  # the command the read belongs to, reported with an error
})

ReadWord = data.StructLayout({"data": DATA_BITS, "dest": 1})

_Record = data.StructLayout({"beats": BURST_BITS, "fill": FILL_BITS, "dest": 1})
_Burst = data.StructLayout({"addr": BUS_ADDR_BITS, "tag": 16})
# a burst waiting to be issued: its record, first byte, end (first byte + bytes, 33 bits), whether
# it is an empty group (a record and no burst) and, in the issue slot, whether it is in the window
_Pending = data.StructLayout({"record": _Record, "addr": BUS_ADDR_BITS, "end": BUS_ADDR_BITS + 1, "empty": 1,
                              "tag": 16, "window_ok": 1})

class ReadMaster(wiring.Component):
    """Reads the words read descriptors name, in order, with many bursts outstanding.

    Ports: ``desc`` (descriptors), ``words`` (the data, in descriptor order, fill included),
    the AXI read channels (``ar_*``, ``r_*``; one ID, INCR, 8-byte beats), the window
    (``win_base``, ``win_size``), ``stop`` (issue no new burst), ``flush`` (drop data instead of
    passing it on), and the outcomes: ``window_error`` / ``bus_error`` with ``error_addr`` (the
    burst's first byte; the first error wins), ``quiet`` (stopped, with no read shown or outstanding).

    A burst is issued only when the data FIFO has room for it (``depth`` words; the check is
    registered, so it asks for room for two bursts), so R never waits on the consumer; several
    bursts are outstanding, enough to cover the memory's latency.
    The walk over a descriptor makes one burst (or empty group) a cycle into a register (slot 1,
    with its end address) and from there into a two-entry issue queue (with its window check),
    so the AR channel's handshake, the FIFO checks and the next burst's address never share a path.
    """

    def __init__(self, *, depth: int = 128, max_bursts: int = 32):
        for name, value in (("depth", depth), ("max_bursts", max_bursts)):
            if not isinstance(value, int) or value < MAX_BURST_BEATS:
                raise ValueError(f"ReadMaster {name}={value!r}: at least {MAX_BURST_BEATS}")
        self._depth, self._max_bursts = depth, max_bursts
        super().__init__({
            "desc": In(stream.Signature(ReadDescriptor)),
            "words": Out(stream.Signature(ReadWord)),
            "ar_addr": Out(BUS_ADDR_BITS),
            "ar_len": Out(8),
            "ar_valid": Out(1),
            "ar_ready": In(1),
            "r_data": In(DATA_BITS),
            "r_resp": In(2),
            "r_last": In(1),
            "r_valid": In(1),
            "r_ready": Out(1),
            **bus_master_control_members(),
            "error_tag": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.data_fifo = data_fifo = SyncFIFOBuffered(width=DATA_BITS, depth=self._depth)
        m.submodules.records = records = SyncFIFOBuffered(width=_Record.size, depth=self._max_bursts)
        # the issued bursts' addresses and tags, for an error response: a ring written at the AR
        # handshake (R may follow a cycle later) and read at the oldest outstanding burst, with
        # no FIFO level on the handshake's path (the bursts outstanding are counted anyway)
        m.submodules.burst_addrs = burst_addrs = Memory(shape=_Burst, depth=self._max_bursts, init=[])
        burst_write, burst_read = burst_addrs.write_port(), burst_addrs.read_port(domain="comb")
        burst_in, burst_out = Signal(range(self._max_bursts)), Signal(range(self._max_bursts))

        # -- walking a descriptor: rows, groups, bursts ------------------------------------
        active = Signal()
        d = Signal(ReadDescriptor)
        # the next row's and the next group's addresses, kept ahead in registers so the walk's
        # next cursor starts from flip-flops, not from an address adder
        next_row, next_group = Signal(BUS_ADDR_BITS, name="next_row"), Signal(BUS_ADDR_BITS, name="next_group")
        rows_left, groups_left = Signal(16), Signal(COUNT_BITS)
        # more than one row / group left, registered with the counts so the walk's decision is short
        more_rows, more_groups = named_bits("more_rows", "more_groups")
        cursor = BurstCursor("read")

        # descriptors wait in a two-entry queue whose head is a register, so the walker takes the
        # next one without a multiplexer on its ~200 loads, and the command unit's paths end at
        # the queue's registers
        desc_q = IssueQueue(ReadDescriptor, name="desc")
        take = Signal(name="take_desc")
        # taken regardless of stop (off its fan-out): a descriptor taken then is never walked
        m.d.comb += self.desc.ready.eq(desc_q.room)
        desc_q.update(m, push=self.desc.valid & self.desc.ready, entry=self.desc.payload, pop=take)
        next_desc, next_valid = desc_q.head, desc_q.head_valid

        beats, last_burst, empty_group, end, step = cursor.burst()

        # The walk makes one burst (or empty group) a cycle into slot 1; from there it enters the
        # issue queue (two entries, the head a register) with its window check. Neither step waits
        # on this cycle's issue: slot 1 moves on while the queue's second entry is free.
        slot1, slot1_valid = Signal(_Pending, name="slot1"), Signal(name="slot1_valid")
        issue_q = IssueQueue(_Pending, name="read_issue")
        head = issue_q.head
        slot_free = Signal(name="slot_free", init=1)
        walk, advance, issue, record_only, pop = named_bits("walk", "advance", "issue",
                                                                        "record_only", "pop")
        unreserved = Signal(range(self._depth + 1), init=self._depth)  # data words no issued burst holds
        # room for any burst, registered: unreserved drops by at most one burst (16) a cycle, so
        # room for two a cycle ago is room for one now
        room = Signal()
        m.d.sync += room.eq(unreserved >= 2 * MAX_BURST_BEATS)
        # a burst's record enters its FIFO the cycle after the issue (the words wait in the data
        # FIFO meanwhile), so the handshake's path ends at a register; room is kept for that entry
        record_push, record_q = Signal(name="record_push"), Signal(_Record, name="record_q")
        m.d.sync += [record_push.eq(pop), record_q.eq(head.record)]
        # room for a record and a burst address, registered: each gains at most one entry a
        # cycle, and the records FIFO one more from the pending push
        outstanding = Signal(range(self._max_bursts + 1))
        record_room, burst_room = named_bits("record_room", "burst_room")
        m.d.sync += [record_room.eq(records.level < self._max_bursts - 3),
                     burst_room.eq(outstanding < self._max_bursts - 1)]
        can_record = record_room & burst_room
        # registered: a stop or an error holds the next burst back a cycle late; a burst issued
        # meanwhile completes like any other (its data is dropped under flush)
        halted = Signal()
        m.d.sync += halted.eq(self.stop | self.window_error | self.bus_error)
        # an AR shown and not yet taken stays (AXI forbids withdrawing a VALID); nothing else it
        # waits on can fall meanwhile
        ar_shown = Signal()
        m.d.sync += ar_shown.eq(self.ar_valid & ~self.ar_ready)
        m.d.comb += [
            self.ar_addr.eq(head.addr),
            self.ar_len.eq(head.record.beats - 1),
            self.ar_valid.eq(issue_q.head_valid & ~head.empty & room & head.window_ok & can_record
                             & (~halted | ar_shown)),
            issue.eq(self.ar_valid & self.ar_ready),
            record_only.eq(issue_q.head_valid & head.empty & record_room & ~halted),
            pop.eq(issue | record_only),
            advance.eq(slot1_valid & issue_q.room),
            walk.eq(active & slot_free),
            records.w_data.eq(record_q),
            records.w_en.eq(record_push),
            burst_write.addr.eq(burst_in),
            burst_write.data.eq(Cat(head.addr, head.tag)),
            burst_write.en.eq(issue),
            burst_read.addr.eq(burst_out),
        ]
        # slot 1 loads whenever it is free, so the walk's many loads leave the walk's decision
        with m.If(slot_free):
            m.d.sync += [
                slot1.record.beats.eq(Mux(empty_group, 0, beats)),
                slot1.record.fill.eq(Mux(empty_group | last_burst, d.fill, 0)),
                slot1.record.dest.eq(d.dest),
                slot1.addr.eq(cursor.addr), slot1.end.eq(end), slot1.empty.eq(empty_group), slot1.tag.eq(d.tag),
            ]
        issue_q.feed(m, slot=slot1, slot_valid=slot1_valid, slot_free=slot_free, walk=walk, advance=advance,
                     pop=pop, win_base=self.win_base, win_size=self.win_size)
        with m.If(issue_q.head_valid & ~head.empty & ~head.window_ok & ~halted & ~self.window_error
                  & ~self.bus_error):
            m.d.sync += [self.window_error.eq(1), self.error_addr.eq(head.addr), self.error_tag.eq(head.tag)]

        group_done = Signal()
        m.d.comb += group_done.eq(walk & (empty_group | last_burst))
        with m.If(walk & ~empty_group & ~last_burst):
            m.d.sync += step
        with m.If(group_done):
            with m.If(more_groups):
                m.d.sync += [groups_left.eq(groups_left - 1), more_groups.eq(groups_left > 2),
                             next_group.eq(next_group + d.stride), *cursor.move(next_group, d.beats)]
            with m.Elif(more_rows):
                m.d.sync += [rows_left.eq(rows_left - 1), more_rows.eq(rows_left > 2),
                             groups_left.eq(d.count), more_groups.eq(d.count[1:] != 0),
                             next_row.eq(next_row + d.outer_stride), next_group.eq(next_row + d.stride),
                             *cursor.move(next_row, d.beats)]
            with m.Else():
                m.d.sync += active.eq(0)
        # the next descriptor is taken the cycle after the walk finishes one: its ~200 loads are
        # then enabled from flip-flops, not from the walk's decision (a cycle per descriptor)
        m.d.comb += take.eq(next_valid & ~active & ~self.stop)
        with m.If(take):
            p = next_desc
            m.d.sync += [d.eq(p), active.eq((p.count != 0) & (p.outer_count != 0)),
                         next_row.eq(p.addr + p.outer_stride), next_group.eq(p.addr + p.stride),
                         *cursor.move(p.addr, p.beats), rows_left.eq(p.outer_count),
                         more_rows.eq(p.outer_count[1:] != 0), groups_left.eq(p.count),
                         more_groups.eq(p.count[1:] != 0)]

        # -- the read data ---------------------------------------------------------------
        r_take = self.r_valid & self.r_ready
        # RREADY from a register: the FIFO takes a word now if it held at most depth - 3 a cycle
        # ago (it gains at most one a cycle; its write side holds depth - 1). Bursts are issued
        # only with room for their data, so this holds R back at most when the FIFO is all but full.
        m.d.sync += self.r_ready.eq(data_fifo.level < self._depth - 2)
        m.d.comb += [
            data_fifo.w_data.eq(self.r_data),
            data_fifo.w_en.eq(r_take),
        ]
        with m.If(r_take & self.r_resp[1] & ~self.window_error & ~self.bus_error):
            burst = burst_read.data
            m.d.sync += [self.bus_error.eq(1), self.error_addr.eq(burst.addr), self.error_tag.eq(burst.tag)]
        m.d.sync += outstanding.eq(outstanding + issue - (r_take & self.r_last))

        def ring_next(pointer):
            return Mux(pointer == self._max_bursts - 1, 0, pointer + 1)

        with m.If(issue):
            m.d.sync += burst_in.eq(ring_next(burst_in))
        with m.If(r_take & self.r_last):
            m.d.sync += burst_out.eq(ring_next(burst_out))
        # quiet once stopped (halted), no AR shown (none can be shown then) and no read outstanding
        m.d.comb += self.quiet.eq(halted & ~ar_shown & (outstanding == 0))

        # -- words out: each record's beats from the FIFO, then its fill; the next record is taken
        # in the cycle the current one's last word goes, so records follow without a gap
        current = Signal(_Record)
        have = Signal()
        beats_left, fill_left = Signal(BURST_BITS, name="beats_left"), Signal(FILL_BITS, name="fill_left")
        # registered with the counts, so a word's hand-over decides from flip-flops
        from_fifo, one_left, none_left = named_bits("from_fifo", "one_left", "none_left")
        word_ready = Mux(from_fifo, data_fifo.r_rdy, 1)
        out_valid = have & ~none_left & word_ready
        pass_on = Signal()
        word = Signal(ReadWord)
        m.d.comb += [
            word.data.eq(Mux(from_fifo, data_fifo.r_data, 0)),
            word.dest.eq(current.dest),
            data_fifo.r_en.eq(pass_on & from_fifo),
        ]
        # The words leave through a register and a skid register (two entries), so neither the
        # consumer's valid nor this side's ready is a path between the two: a word is passed on
        # while the skid register is empty; with flush it is dropped, and so are the two entries
        # (a cycle on: ``valid`` comes from the register alone, off flush's fan-out, so a word may
        # still leave in flush's first cycle; the engine resets its consumers once the masters are quiet).
        out, out_valid_r, skid, skid_valid = Signal(ReadWord), Signal(), Signal(ReadWord), Signal()
        leaves = out_valid_r & self.words.ready
        m.d.comb += [
            pass_on.eq(out_valid & ~skid_valid),  # under flush the skid register empties a cycle on
            self.words.payload.eq(out),
            self.words.valid.eq(out_valid_r),
        ]
        with m.If(self.flush):
            m.d.sync += [out_valid_r.eq(0), skid_valid.eq(0)]
        with m.Elif(~out_valid_r | leaves):
            with m.If(skid_valid):
                m.d.sync += [out.eq(skid), out_valid_r.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.eq(word), out_valid_r.eq(pass_on)]
        with m.Elif(pass_on):
            m.d.sync += [skid.eq(word), skid_valid.eq(1)]
        last_word = pass_on & one_left
        finished = have & none_left  # an empty record
        free = ~have | last_word | finished
        m.d.comb += records.r_en.eq(free)

        def count(beats, fill):
            return [beats_left.eq(beats), fill_left.eq(fill), from_fifo.eq(beats != 0),
                    one_left.eq(beats + fill == 1), none_left.eq((beats == 0) & (fill == 0))]

        with m.If(free):
            with m.If(records.r_rdy):
                fields = data.View(_Record, records.r_data)
                m.d.sync += [have.eq(1), current.eq(fields), *count(fields.beats, fields.fill)]
            with m.Else():
                m.d.sync += have.eq(0)
        with m.Elif(pass_on & from_fifo):
            m.d.sync += count(beats_left - 1, fill_left)
        with m.Elif(pass_on):
            m.d.sync += count(beats_left, fill_left - 1)
        m.d.sync += unreserved.eq(unreserved - Mux(issue, head.record.beats, 0) + (pass_on & from_fifo))
        return m
