"""The bus master's read side: descriptors in, AXI4 read bursts out, data words back in order.

A *read descriptor* names ``outer_count`` rows of ``count`` groups of ``beats`` consecutive 64-bit
words: group ``(i, j)`` starts at ``addr + i * outer_stride + j * stride`` (bytes). After each
group ``fill`` zero words follow in the output (a skip tile beyond its tensor's pixel words,
docs/engine.md). ``dest`` travels with every word, so command words and job data share one path.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from radix.engine_spec import BURST_BOUNDARY, BUS_ADDR_BITS, BUS_BYTES, MAX_BURST_BEATS

from .axi4 import DATA_BITS

BEATS_BITS = 20
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

_Record = data.StructLayout({"beats": 5, "fill": FILL_BITS, "dest": 1})
_Burst = data.StructLayout({"addr": BUS_ADDR_BITS, "tag": 16})
# a burst waiting to be issued: its record, first byte, end (first byte + bytes, 33 bits), whether
# it is an empty group (a record and no burst) and, in the issue slot, whether it is in the window
_Pending = data.StructLayout({"record": _Record, "addr": BUS_ADDR_BITS, "end": BUS_ADDR_BITS + 1, "empty": 1,
                              "tag": 16, "window_ok": 1})

_BEAT_SHIFT = (BUS_BYTES - 1).bit_length()
_BOUNDARY_SHIFT = (BURST_BOUNDARY - 1).bit_length()
_MAX_SHIFT = (MAX_BURST_BEATS - 1).bit_length()
assert (1 << _BEAT_SHIFT, 1 << _BOUNDARY_SHIFT, 1 << _MAX_SHIFT) == (BUS_BYTES, BURST_BOUNDARY, MAX_BURST_BEATS)


def page_limit(addr) -> tuple:
    """``(near, to_boundary)`` of byte address ``addr``: ``near`` when fewer than 16 beats are left
    to the next 4 KB boundary, ``to_boundary`` (4 bits) those beats, ``(4096 - addr % 4096) // 8``.
    A walker keeps them in registers beside its address (see :func:`burst_beats`)."""
    q = addr[_BEAT_SHIFT:_BOUNDARY_SHIFT]  # the beat within the page
    c = addr[:_BEAT_SHIFT] != 0  # an unaligned address loses its first partial beat
    near = q[_MAX_SHIFT:].all() & ((q[:_MAX_SHIFT] != 0) | c)
    return near, Mux(c, ~q[:_MAX_SHIFT], ~q[:_MAX_SHIFT] + 1)[:_MAX_SHIFT]


def burst_beats(addr, remaining, near, to_boundary) -> tuple:
    """The next burst of a run at byte ``addr`` with ``remaining`` beats: at most 16 beats and
    never across a 4 KB boundary; ``near`` and ``to_boundary`` are :func:`page_limit` of ``addr``.
    Returns ``(beats, last, end, rest)`` as Amaranth values: ``last`` when the burst takes all
    ``remaining`` beats, ``end`` its end (``addr + 8 * beats``, 33 bits: a burst that wraps past
    2^32 is outside any window) and ``rest`` the beats after it (``remaining - beats`` when not
    ``last``).

    ``beats`` is ``min(remaining, 16, (4096 - addr % 4096) // 8)`` in a few LUT levels (the
    boundary limits a burst only in the last 16 beats of a page), and ``end`` comes from
    incrementers of ``addr`` and a sum with ``remaining``, not from ``beats``, so that the next
    burst's address is a short path.
    """
    c = addr[:_BEAT_SHIFT] != 0
    limit = Mux(near, to_boundary, MAX_BURST_BEATS)
    last = (remaining[_MAX_SHIFT + 1:] == 0) & (remaining[:_MAX_SHIFT + 1] <= limit)
    beats = Mux(last, remaining[:_MAX_SHIFT + 1], limit)[:_MAX_SHIFT + 1]
    # addr + 8 * limit: 16 beats on, the next boundary, or (unaligned) the boundary's last beat
    full = Mux(near,
               Mux(c, Cat(addr[:_BEAT_SHIFT], Const(-1, _BOUNDARY_SHIFT - _BEAT_SHIFT), addr[_BOUNDARY_SHIFT:]),
                   Cat(Const(0, _BOUNDARY_SHIFT), addr[_BOUNDARY_SHIFT:] + 1)),
               Cat(addr[:_BEAT_SHIFT + _MAX_SHIFT], addr[_BEAT_SHIFT + _MAX_SHIFT:] + 1))
    end = Mux(last, addr + (remaining[:_MAX_SHIFT + 1] << _BEAT_SHIFT), full)
    return beats, last, end, remaining - limit


class ReadMaster(wiring.Component):
    """Reads the words read descriptors name, in order, with many bursts outstanding.

    Ports: ``desc`` (descriptors), ``words`` (the data, in descriptor order, fill included),
    the AXI read channels (``ar_*``, ``r_*``; one ID, INCR, 8-byte beats), the window
    (``win_base``, ``win_size``), ``stop`` (issue no new burst), ``flush`` (drop data instead of
    passing it on), and the outcomes: ``window_error`` / ``bus_error`` with ``error_addr`` (the
    burst's first byte; the first error wins), ``quiet`` (no read outstanding), ``beats_read``.

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
            "win_base": In(BUS_ADDR_BITS),
            "win_size": In(BUS_ADDR_BITS),
            "stop": In(1),
            "flush": In(1),
            "window_error": Out(1),
            "bus_error": Out(1),
            "error_addr": Out(BUS_ADDR_BITS),
            "error_tag": Out(16),
            "quiet": Out(1),
            "beats_read": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.data_fifo = data_fifo = SyncFIFOBuffered(width=DATA_BITS, depth=self._depth)
        m.submodules.records = records = SyncFIFOBuffered(width=_Record.size, depth=self._max_bursts)
        m.submodules.burst_addrs = burst_addrs = SyncFIFOBuffered(width=_Burst.size, depth=self._max_bursts)

        # -- walking a descriptor: rows, groups, bursts ------------------------------------
        active = Signal()
        d = Signal(ReadDescriptor)
        row_addr, group_addr, addr = Signal(BUS_ADDR_BITS), Signal(BUS_ADDR_BITS), Signal(BUS_ADDR_BITS)
        rows_left, groups_left = Signal(16), Signal(COUNT_BITS)
        remaining = Signal(BEATS_BITS)
        near, to_boundary = Signal(), Signal(_MAX_SHIFT)  # page_limit(addr), registered with it

        def goto(value):
            near_value, to_boundary_value = page_limit(value)
            return [addr.eq(value), near.eq(near_value), to_boundary.eq(to_boundary_value)]

        # descriptors wait in a small queue, so the walker takes the next one in the cycle it
        # finishes the current one (a command's many short reads follow without gaps). The queue
        # is two registers: a free one takes the payload every cycle, and an accepted descriptor
        # only sets its flag, so the command unit's paths end at a few flip-flops.
        queue = [Signal(ReadDescriptor, name=f"desc{i}") for i in range(2)]
        queued_desc = [Signal(name=f"desc{i}_valid") for i in range(2)]
        desc_write, desc_read = Signal(), Signal()
        m.d.comb += self.desc.ready.eq(~Mux(desc_write, queued_desc[1], queued_desc[0]) & ~self.stop)
        for entry, held in zip(queue, queued_desc):
            with m.If(~held):
                m.d.sync += entry.eq(self.desc.payload)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += desc_write.eq(~desc_write)
            with m.If(desc_write):
                m.d.sync += queued_desc[1].eq(1)
            with m.Else():
                m.d.sync += queued_desc[0].eq(1)
        next_desc = Signal(ReadDescriptor)
        next_valid = Mux(desc_read, queued_desc[1], queued_desc[0])
        m.d.comb += next_desc.eq(Mux(desc_read, queue[1], queue[0]))

        beats, last_burst, end, rest = burst_beats(addr, remaining, near, to_boundary)
        empty_group = remaining == 0

        # The walk makes one burst (or empty group) a cycle into slot 1; from there it enters the
        # issue queue (two entries, the head issues) with its window check. Neither step waits on
        # this cycle's issue: slot 1 moves on while the queue has a free entry (a register). The
        # queue's entries stay in place (read and write pointers), so an issue moves no data.
        slot1, slot1_valid = Signal(_Pending), Signal()
        issue_q, queued = [Signal(_Pending, name=f"issue_q{i}") for i in range(2)], Signal(range(3))
        q_read, q_write = Signal(), Signal()
        head = Signal(_Pending)
        m.d.comb += head.eq(Mux(q_read, issue_q[1], issue_q[0]))
        walk, advance, issue, record_only, pop = Signal(), Signal(), Signal(), Signal(), Signal()
        unreserved = Signal(range(self._depth + 1), init=self._depth)  # data words no issued burst holds
        # room for any burst, registered: unreserved drops by at most one burst (16) a cycle, so
        # room for two a cycle ago is room for one now
        room = Signal()
        m.d.sync += room.eq(unreserved >= 2 * MAX_BURST_BEATS)
        can_record = records.w_rdy & burst_addrs.w_rdy
        halted = self.stop | self.window_error | self.bus_error
        m.d.comb += [
            self.ar_addr.eq(head.addr),
            self.ar_len.eq(head.record.beats - 1),
            self.ar_valid.eq((queued != 0) & ~head.empty & room & head.window_ok
                             & can_record & ~halted),
            issue.eq(self.ar_valid & self.ar_ready),
            record_only.eq((queued != 0) & head.empty & records.w_rdy & ~halted),
            pop.eq(issue | record_only),
            advance.eq(slot1_valid & (queued != 2)),
            walk.eq(active & (~slot1_valid | advance)),
            records.w_data.eq(head.record),
            records.w_en.eq(pop),
            burst_addrs.w_data.eq(Cat(head.addr, head.tag)),
            burst_addrs.w_en.eq(issue),
        ]
        with m.If(walk):
            m.d.sync += [
                slot1.record.beats.eq(Mux(empty_group, 0, beats)),
                slot1.record.fill.eq(Mux(empty_group | last_burst, d.fill, 0)),
                slot1.record.dest.eq(d.dest),
                slot1.addr.eq(addr), slot1.end.eq(end), slot1.empty.eq(empty_group), slot1.tag.eq(d.tag),
            ]
        checked = Signal(_Pending)
        win_end = Signal(BUS_ADDR_BITS + 1)  # WIN_BASE + WIN_SIZE, registered (the window is set before START)
        m.d.sync += win_end.eq(self.win_base + self.win_size)
        m.d.comb += [checked.eq(slot1),
                     checked.window_ok.eq((slot1.addr >= self.win_base) & (slot1.end <= win_end))]
        with m.If(advance):
            with m.If(q_write):
                m.d.sync += issue_q[1].eq(checked)
            with m.Else():
                m.d.sync += issue_q[0].eq(checked)
            m.d.sync += q_write.eq(~q_write)
        with m.If(pop):
            m.d.sync += q_read.eq(~q_read)
        m.d.sync += [slot1_valid.eq(walk | (slot1_valid & ~advance)), queued.eq(queued + advance - pop)]
        with m.If((queued != 0) & ~head.empty & ~head.window_ok & ~halted):
            m.d.sync += [self.window_error.eq(1), self.error_addr.eq(head.addr), self.error_tag.eq(head.tag)]

        group_done = Signal()
        m.d.comb += group_done.eq(walk & (empty_group | last_burst))
        with m.If(walk & ~empty_group & ~last_burst):
            m.d.sync += [*goto(end), remaining.eq(rest)]
        with m.If(group_done):
            with m.If(groups_left[1:] != 0):  # more than one group left
                m.d.sync += [groups_left.eq(groups_left - 1), group_addr.eq(group_addr + d.stride),
                             *goto(group_addr + d.stride), remaining.eq(d.beats)]
            with m.Elif(rows_left[1:] != 0):
                next_row = row_addr + d.outer_stride
                m.d.sync += [rows_left.eq(rows_left - 1), groups_left.eq(d.count), row_addr.eq(next_row),
                             group_addr.eq(next_row), *goto(next_row), remaining.eq(d.beats)]
            with m.Else():
                m.d.sync += active.eq(0)
        finishing = group_done & (groups_left[1:] == 0) & (rows_left[1:] == 0)
        with m.If(next_valid & (~active | finishing) & ~self.stop):
            p = next_desc
            m.d.sync += desc_read.eq(~desc_read)
            with m.If(desc_read):
                m.d.sync += queued_desc[1].eq(0)
            with m.Else():
                m.d.sync += queued_desc[0].eq(0)
            m.d.sync += [d.eq(p), active.eq((p.count != 0) & (p.outer_count != 0)), row_addr.eq(p.addr),
                         group_addr.eq(p.addr), *goto(p.addr), rows_left.eq(p.outer_count),
                         groups_left.eq(p.count), remaining.eq(p.beats)]

        # -- the read data ---------------------------------------------------------------
        outstanding = Signal(range(self._max_bursts + 1))
        r_take = self.r_valid & self.r_ready
        # RREADY from a register: the FIFO takes a word now if it held at most depth - 3 a cycle
        # ago (it gains at most one a cycle; its write side holds depth - 1). Bursts are issued
        # only with room for their data, so this holds R back at most when the FIFO is all but full.
        m.d.sync += self.r_ready.eq(data_fifo.level < self._depth - 2)
        m.d.comb += [
            data_fifo.w_data.eq(self.r_data),
            data_fifo.w_en.eq(r_take),
            burst_addrs.r_en.eq(r_take & self.r_last),
        ]
        with m.If(r_take):
            m.d.sync += self.beats_read.eq(self.beats_read + 1)
            with m.If(self.r_resp[1] & ~self.window_error & ~self.bus_error):
                burst = data.View(_Burst, burst_addrs.r_data)
                m.d.sync += [self.bus_error.eq(1), self.error_addr.eq(burst.addr), self.error_tag.eq(burst.tag)]
        m.d.sync += outstanding.eq(outstanding + issue - (r_take & self.r_last))
        m.d.comb += self.quiet.eq((outstanding == 0) & ~issue)

        # -- words out: each record's beats from the FIFO, then its fill; the next record is taken
        # in the cycle the current one's last word goes, so records follow without a gap
        current = Signal(_Record)
        have = Signal()
        beats_left, fill_left = Signal(5), Signal(FILL_BITS)
        from_fifo = beats_left != 0
        word_ready = Mux(from_fifo, data_fifo.r_rdy, 1)
        out_valid = have & ((beats_left != 0) | (fill_left != 0)) & word_ready
        pass_on = Signal()
        word = Signal(ReadWord)
        m.d.comb += [
            word.data.eq(Mux(from_fifo, data_fifo.r_data, 0)),
            word.dest.eq(current.dest),
            data_fifo.r_en.eq(pass_on & from_fifo),
        ]
        # The words leave through a register and a skid register (two entries), so neither the
        # consumer's valid nor this side's ready is a path between the two: a word is passed on
        # while the skid register is empty; with flush it is dropped, and so are the two entries.
        out, out_valid_r, skid, skid_valid = Signal(ReadWord), Signal(), Signal(ReadWord), Signal()
        leaves = out_valid_r & self.words.ready
        m.d.comb += [
            pass_on.eq(out_valid & (~skid_valid | self.flush)),
            self.words.payload.eq(out),
            self.words.valid.eq(out_valid_r & ~self.flush),
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
        last_word = pass_on & (((beats_left == 1) & (fill_left == 0)) | ((beats_left == 0) & (fill_left == 1)))
        finished = have & (beats_left == 0) & (fill_left == 0)  # an empty record
        free = ~have | last_word | finished
        m.d.comb += records.r_en.eq(free)
        with m.If(pass_on):
            with m.If(from_fifo):
                m.d.sync += beats_left.eq(beats_left - 1)
            with m.Else():
                m.d.sync += fill_left.eq(fill_left - 1)
        with m.If(free):
            with m.If(records.r_rdy):
                fields = data.View(_Record, records.r_data)
                m.d.sync += [have.eq(1), current.eq(fields), beats_left.eq(fields.beats), fill_left.eq(fields.fill)]
            with m.Else():
                m.d.sync += have.eq(0)
        m.d.sync += unreserved.eq(unreserved - Mux(issue, head.record.beats, 0) + (pass_on & from_fifo))
        return m
