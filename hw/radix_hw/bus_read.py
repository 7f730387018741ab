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


def burst_beats(addr, remaining) -> tuple:
    """Beats of the next burst of a run at byte ``addr`` with ``remaining`` beats: at most 16 and
    never across a 4 KB boundary. Returns ``(beats, to_boundary)`` as Amaranth values."""
    offset = addr[:12]
    to_boundary = (BURST_BOUNDARY - offset) >> 3  # beats up to the boundary, 1..512
    limit = Mux(to_boundary < MAX_BURST_BEATS, to_boundary, MAX_BURST_BEATS)
    return Mux(remaining < limit, remaining, limit)[:5], to_boundary


def in_window(addr, beats, win_base, win_size):
    """Whether ``beats`` words from byte ``addr`` lie inside ``[win_base, win_base + win_size)``."""
    end = addr + (beats << 3)  # 33 bits: a burst that wraps past 2^32 is outside any window
    return (addr >= win_base) & (end <= win_base + win_size)


class ReadMaster(wiring.Component):
    """Reads the words read descriptors name, in order, with many bursts outstanding.

    Ports: ``desc`` (descriptors), ``words`` (the data, in descriptor order, fill included),
    the AXI read channels (``ar_*``, ``r_*``; one ID, INCR, 8-byte beats), the window
    (``win_base``, ``win_size``), ``stop`` (issue no new burst), ``flush`` (drop data instead of
    passing it on), and the outcomes: ``window_error`` / ``bus_error`` with ``error_addr`` (the
    burst's first byte; the first error wins), ``quiet`` (no read outstanding), ``beats_read``.

    A burst is issued only when the data FIFO has room for it (``depth`` words), so R never
    waits on the consumer; several bursts are outstanding, enough to cover the memory's latency.
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
        # descriptors wait in a small queue, so the walker takes the next one in the cycle it
        # finishes the current one (a command's many short reads follow without gaps)
        m.submodules.queue = queue = SyncFIFOBuffered(width=ReadDescriptor.size, depth=2)
        m.d.comb += [queue.w_data.eq(self.desc.payload), queue.w_en.eq(self.desc.valid & ~self.stop),
                     self.desc.ready.eq(queue.w_rdy & ~self.stop)]

        beats, _ = burst_beats(addr, remaining)
        last_burst = beats == remaining
        reserved = Signal(range(self._depth + 1))  # data words issued or held, not yet passed on
        room = (reserved + beats) <= self._depth
        window_ok = in_window(addr, beats, self.win_base, self.win_size)
        empty_group = remaining == 0
        can_record = records.w_rdy & burst_addrs.w_rdy
        issue = Signal()
        record_only = Signal()
        m.d.comb += [
            self.ar_addr.eq(addr),
            self.ar_len.eq(beats - 1),
            self.ar_valid.eq(active & ~empty_group & room & window_ok & can_record & ~self.stop
                             & ~self.window_error & ~self.bus_error),
            issue.eq(self.ar_valid & self.ar_ready),
            record_only.eq(active & empty_group & records.w_rdy & ~self.stop & ~self.window_error & ~self.bus_error),
        ]
        record = Signal(_Record)
        m.d.comb += [
            record.beats.eq(Mux(empty_group, 0, beats)),
            record.fill.eq(Mux(empty_group | last_burst, d.fill, 0)),
            record.dest.eq(d.dest),
            records.w_data.eq(record),
            records.w_en.eq(issue | record_only),
            burst_addrs.w_data.eq(Cat(addr, d.tag)),
            burst_addrs.w_en.eq(issue),
        ]
        with m.If(active & ~empty_group & ~window_ok & ~self.stop & ~self.window_error & ~self.bus_error):
            m.d.sync += [self.window_error.eq(1), self.error_addr.eq(addr), self.error_tag.eq(d.tag)]

        group_done = Signal()
        m.d.comb += group_done.eq(record_only | (issue & last_burst))
        with m.If(issue & ~last_burst):
            m.d.sync += [addr.eq(addr + (beats << 3)), remaining.eq(remaining - beats)]
        with m.If(group_done):
            with m.If(groups_left > 1):
                m.d.sync += [groups_left.eq(groups_left - 1), group_addr.eq(group_addr + d.stride),
                             addr.eq(group_addr + d.stride), remaining.eq(d.beats)]
            with m.Elif(rows_left > 1):
                next_row = row_addr + d.outer_stride
                m.d.sync += [rows_left.eq(rows_left - 1), groups_left.eq(d.count), row_addr.eq(next_row),
                             group_addr.eq(next_row), addr.eq(next_row), remaining.eq(d.beats)]
            with m.Else():
                m.d.sync += active.eq(0)
        finishing = group_done & (groups_left <= 1) & (rows_left <= 1)
        m.d.comb += queue.r_en.eq((~active | finishing) & ~self.stop)
        with m.If(queue.r_en & queue.r_rdy):
            p = data.View(ReadDescriptor, queue.r_data)
            m.d.sync += [d.eq(p), active.eq((p.count != 0) & (p.outer_count != 0)), row_addr.eq(p.addr),
                         group_addr.eq(p.addr), addr.eq(p.addr), rows_left.eq(p.outer_count),
                         groups_left.eq(p.count), remaining.eq(p.beats)]

        # -- the read data ---------------------------------------------------------------
        outstanding = Signal(range(self._max_bursts + 1))
        r_take = self.r_valid & self.r_ready
        m.d.comb += [
            self.r_ready.eq(data_fifo.w_rdy),
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
        m.d.comb += [
            self.words.payload.data.eq(Mux(from_fifo, data_fifo.r_data, 0)),
            self.words.payload.dest.eq(current.dest),
            self.words.valid.eq(out_valid & ~self.flush),
            pass_on.eq(out_valid & (self.words.ready | self.flush)),
            data_fifo.r_en.eq(pass_on & from_fifo),
        ]
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
        m.d.sync += reserved.eq(reserved + Mux(issue, beats, 0) - (pass_on & from_fifo))
        return m
