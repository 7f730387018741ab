"""The input-stream loader: fills the input buffer and the weight (and skip) banks from one stream."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from radix.engine_spec import KERNEL_BITS, STREAM_BITS, EngineConfig
from radix.stream_format import BIAS_BITS, SHIFT_BITS, SKIP_SHIFT_OFFSET

from .accumulator import skip_address_bits
from .helpers import computed_size
from .input_buffer import InputBuffer
from .layout import LayerConfigLayout, input_address_bits, weight_address_bits


# Where the loader goes after an input tile: back to the tile's weight rows, or, when the tap
# before it was the first output tile's last (a 1x1 kernel), on to the tile's end.
RESUME = ("WEIGHTS", "TILE_END")


def skip_count_bits(config: EngineConfig) -> int:
    """Width of a count of skip pixels in one bank (0 .. acc_depth)."""
    return max(1, ceil_log2(config.acc_depth + 1))


def weight_rows_bits(config: EngineConfig) -> int:
    """Width of a count of weight rows in one bank (0 .. wt_depth)."""
    return max(1, ceil_log2(config.wt_depth + 1))


class Loader(wiring.Component):
    """Consumes one job's input stream (radix.stream_format) and fills the on-chip buffers.

    The parts arrive in the order of radix.stream_format: the first output tile's bias words,
    then for each input tile the first output tile's weight rows of its first tap (of all its
    taps in a striped job, ``layer.strip_rows`` set), the input tile, and the rest of that tile's
    weight rows, then the first output tile's skip pixels, then the other output tiles whole.

    * An input tile: ``in_words`` words per pixel group (one for a narrow input,
      ``layer.narrow_in``: the group's other lanes zero), written to the input buffer at
      consecutive addresses (``t*IN_H*IN_W + y*IN_W + x``, mirrored with ``layer.in_mirror``);
      ``in_tiles_done`` counts the job's input tiles written and ``in_rows_done`` the rows of the
      next one (while the loader is a job ahead of the core: every tile, the core's job's), a
      cycle after their last writes (the sequencer's first pass on a tile trails them). ``hw``
      is set to ``IN_H*IN_W`` as the first input-channel tile is counted (no multiplier
      needed), and ``hw_valid`` rises a cycle later.
    * Per output-channel tile ``j``, into the weight bank after the previous tile's once it is free: the
      ``cols`` bias words (bias, data shift and skip shift shift into per-bank lane registers
       ``bias``, ``shifts`` and ``skip_shifts``, lane 0 first); then the weight rows (per input
       tile, ``rows`` per tap ``(u, v)`` of the ``KH x KW`` kernel in raster order), each the
       words holding the tile's channels (``wt_words``, fewer in a last tile of fewer channels;
       the rest of the row stored as zeros), written to ``bank*wt_depth + row``; then, with
       ``layer.add``, the tile's skip pixels, as many words per computed output pixel, written to skip
       bank of the same index at ``bank*acc_depth + pixel`` (the accumulator address of the pixel) once
       that skip bank is free. ``wt_avail[b]`` counts the rows written so far, so compute may
       start on a bank before it is complete; ``wt_release`` (one bit per bank) returns a bank,
       clearing its count. ``skip_ready[b]`` rises when the tile's skip pixels are all in and
       ``skip_avail[b]`` counts those written so far; both fall with the bank's ``wt_release``,
       which the sequencer pulses as it takes the tile's last pass: a strip's last pass, the
       only one that reads the strip's skip pixels, waits for them (the last strip's for all). Since input tile
       ``t`` precedes the first output tile's weight rows of ``t`` but the first tap's, every
       input tile a pass reads is complete but for the first pass on it, which waits for each
       input row.

    A skip bank is free after a reset and again once ``skip_release`` pulses for it: the
    accumulator pulses it when the tile that used the bank has its last pixel written, so its
    last pass is over. The pulse is remembered, so a release that comes while the loader is
    still busy with the other bank is not lost. The loader waits for it only after the weight
    bank was freed, i.e. once that tile's last pass has started, so the wait is at most one
    pass plus the array latency, whatever the output stream does.

    ``s_in`` is ready only while a word can be stored: never before ``start``, while waiting
    for a bank, at the job's input before ``job_start`` (unless ``layer.input_ahead``: the input
    then goes to the buffer's other end), or after the job's last word. TLAST is
    ignored. ``start`` (with the job's fields in ``layer``, read then) must come only while
    ``idle``, which the loader is again after the job's last word: it may then start on the next
    job while the core still computes this one (docs/engine.md, "The next job loads ahead"). The
    banks carry over between jobs (a job's first tile takes the bank after the previous job's
    last, ``first_bank``); ``job_start``, the core's start of the job, lets the job's input in,
    once the previous job's passes no longer read the input buffer.
    """

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        cols, rows, width = config.cols, config.rows, config.width
        self.in_addr_bits = input_address_bits(config)
        self.wt_addr_bits = weight_address_bits(config)
        self.skip_addr_bits = skip_address_bits(config)
        super().__init__({
            "start": In(1),
            "layer": In(LayerConfigLayout),
            "job_start": In(1),
            "idle": Out(1),
            "first_bank": Out(1),
            "s_in": In(stream.Signature(STREAM_BITS)),
            "in_wr": In(WritePort.Signature(addr_width=self.in_addr_bits, shape=rows * width)),
            "wt_wr": In(WritePort.Signature(addr_width=self.wt_addr_bits, shape=cols * width)),
            "skip_wr": In(WritePort.Signature(addr_width=self.skip_addr_bits, shape=cols * width)),
            "hw": Out(self.in_addr_bits),
            "hw_valid": Out(1),
            "in_tiles_done": Out(16),
            "in_rows_done": Out(16),
            "wt_avail": Out(data.ArrayLayout(weight_rows_bits(config), 2)),
            "wt_release": In(2),
            "bias": Out(data.ArrayLayout(cols * config.acc_width, 2)),
            "shifts": Out(data.ArrayLayout(cols * SHIFT_BITS, 2)),
            "skip_shifts": Out(data.ArrayLayout(cols * SHIFT_BITS, 2)),
            "skip_release": In(2),
            "skip_ready": Out(2),
            "skip_avail": Out(data.ArrayLayout(skip_count_bits(config), 2)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols, width, acc_w = cfg.rows, cfg.cols, cfg.width, cfg.acc_width
        layer = self.layer
        word = self.s_in.payload
        take = self.s_in.valid & self.s_in.ready

        # Words of a multi-word group collect here; the group is stored with its last word.
        group_words = max(cfg.in_words, cfg.wt_words)
        gather = Signal(max(1, (group_words - 1) * STREAM_BITS), reset_less=True)
        word_index = Signal(range(max(group_words, 2)))

        def group(words: int, bits: int):
            return Cat(gather[:(words - 1) * STREAM_BITS], word)[:bits]

        def group_done(words: int):
            return word_index == words - 1

        # The output tile's weight rows and skip pixels carry the words holding its channels
        # (radix.stream_format.tile_out_words): ``row_last`` is the last word's index, set as the
        # tile begins; the group's other words are stored as zeros.
        row_last = Signal(range(max(cfg.wt_words, 2)))
        next_row_last = Signal.like(row_last)  # the next output tile's, from co (which moves at a tile's end)
        # "the next word ends the row" (word_index == row_last) kept as a register, set wherever
        # either moves: the compare into the buffers' write enables was the default build's
        # slowest path (7.55 ns, 8 LUT levels).
        row_done = Signal(init=1)

        def tile_group():
            if cfg.wt_words == 1:
                return word[:cols * width]
            parts = []
            for j in range(cfg.wt_words):
                earlier = gather.word_select(j, STREAM_BITS) if j < cfg.wt_words - 1 else 0
                parts.append(Mux(j == row_last, word, Mux(j < row_last, earlier, 0)))
            return Cat(*parts)[:cols * width]

        def tile_words_last(lanes_minus_one):
            """``min(wt_words, ceil(lanes / lanes_per_word)) - 1`` of a tile's ``lanes`` (at least 1)."""
            last = lanes_minus_one >> (cfg.lanes_per_word.bit_length() - 1)
            return Mux(last >= cfg.wt_words - 1, cfg.wt_words - 1, last)

        def next_word(words: int, done=None):
            """Count a word of a ``words``-word group (ending early where ``done`` says so)."""
            done = group_done(words) if done is None else done
            m.d.sync += [word_index.eq(Mux(done, 0, word_index + 1)),
                         row_done.eq(Mux(done, row_last == 0, word_index + 1 == row_last))]
            if words > 1:
                with m.If(~done):
                    m.d.sync += gather.word_select(word_index, STREAM_BITS).eq(word)

        x, y = Signal(16), Signal(16)
        u, v = Signal(KERNEL_BITS), Signal(KERNEL_BITS)
        r = Signal(range(rows))
        ch, co = Signal(17), Signal(17)  # first channel of the input / output tile
        # a weights-first job's input tile being streamed (its first channel), and whether it is the last
        input_ch, last_input_tile = Signal(17), Signal()
        in_addr = Signal(self.in_addr_bits)
        lane_count = Signal(range(cols))
        bank = Signal()
        free = Signal(2, init=0b11)
        skip_free = Signal(2, init=0b11)
        skip_addr = Signal(self.skip_addr_bits)
        # The fields read after ``start``, kept from it: the core may start the job before or
        # after this one, and its ``layer`` then holds that job.
        job = Signal(data.StructLayout({"in_ch": 16, "out_ch": 16, "narrow_in": 1, "add": 1, "weights_first": 1,
                                        "input_ahead": 1, "in_mirror": 1}))

        def mirror(addr):
            """The input buffer's address of ``addr`` in a mirrored job (InputBuffer.physical)."""
            return InputBuffer.physical(cfg, addr, 1)[:self.in_addr_bits]
        # The job's input waits for the core's start of the job (``job_start``): until then the
        # previous job's passes may still read the input buffer. The loader's and the core's
        # starts each flip a bit; the input is open while they agree (a register: it falls a
        # cycle after a load's start, which is then waiting for its bank), or always for an input
        # loaded ahead into the other half of the buffer (``input_ahead``).
        load_epoch, core_epoch, input_open = Signal(), Signal(), Signal()
        with m.If(self.job_start):
            m.d.sync += core_epoch.eq(~core_epoch)
        m.d.sync += input_open.eq(load_epoch == core_epoch)
        # The input counts and ``hw`` are the loaded job's; while the loader is a job ahead of the
        # core, the core's job has all its input in: the sequencer sees every tile done and the
        # job's ``hw`` held.
        loader_ahead = Signal()
        m.d.comb += loader_ahead.eq(load_epoch != core_epoch)
        tiles_done, rows_done, hw_load = Signal(16), Signal(16), Signal(self.in_addr_bits)
        m.d.comb += [self.in_tiles_done.eq(Mux(loader_ahead, (1 << 16) - 1, tiles_done)),
                     self.in_rows_done.eq(Mux(loader_ahead, 0, rows_done))]
        # The weight write address bank*wt_depth + wt_avail[bank], kept as a register: formed from
        # ``bank`` (over a thousand loads: the bias lane registers) it was the default build's
        # slowest path, into the weight memory's write enables.
        wt_addr = Signal(self.wt_addr_bits)
        # The first output tile streams each input tile after that tile's first tap of weight rows
        # (``input_due``: the tap being written is one; ``input_due_tile``: one is due after the
        # input tile's last tap, in a striped job there only), or, with ``weights_first``, all
        # input tiles after the last input tile's last tap (``input_due_last``: due there), then
        # returns to ``resume``. Registers, so no test adds a LUT level to the tap's end.
        first_cotile = Signal()
        input_due, input_due_tile, input_due_last = Signal(), Signal(), Signal()
        resume = Signal(range(len(RESUME)))
        hw_set = Signal()  # the first input tile is in (``hw_load`` holds IN_H*IN_W)
        # ``hw`` is the job's as soon as it is set (the sequencer's next tile base follows it a
        # cycle later, when ``hw_valid`` rises); while the loader is ahead, the value it had then
        hw_held = Signal(self.in_addr_bits)
        with m.If(~loader_ahead):
            m.d.sync += [hw_held.eq(hw_load), self.hw_valid.eq(hw_set)]
        m.d.comb += self.hw.eq(Mux(loader_ahead, hw_held, hw_load))
        # An input row / tile has been written (pulses): the counts the sequencer reads follow a
        # cycle later, off the stream's handshake logic (a late count only makes a pass wait).
        # ``in_addr`` then holds IN_H*IN_W after the first tile: the next input word is at
        # least a tap of weight rows away.
        row_written, tile_written = Signal(), Signal()
        m.d.sync += [row_written.eq(0), tile_written.eq(0)]
        with m.If(self.start):
            m.d.sync += [tiles_done.eq(0), rows_done.eq(0), hw_set.eq(0)]
        with m.Elif(tile_written):
            m.d.sync += [rows_done.eq(0), tiles_done.eq(tiles_done + 1)]
            with m.If(~hw_set):
                m.d.sync += [hw_load.eq(in_addr), hw_set.eq(1)]
        with m.Elif(row_written):
            m.d.sync += rows_done.eq(rows_done + 1)
        # Per-job sizes registered at start and "last tile" flags kept with ch and co, so the
        # stream parsing compares counters with registers instead of sums of layer fields.
        in_w_last, in_h_last = Signal(16, name="in_w_last"), Signal(16, name="in_h_last")
        # "x is the input row's last pixel", "y is the input tile's last row", kept with x and y
        # (which leave INPUT at 0) so the input's counting compares no counters
        in_x_last, in_y_last = Signal(name="in_x_last"), Signal(name="in_y_last")
        skip_w_last, skip_h_last = Signal(16, name="skip_w_last"), Signal(16, name="skip_h_last")
        kh_last, kw_last = Signal(KERNEL_BITS, name="kh_last"), Signal(KERNEL_BITS, name="kw_last")
        last_tap = Signal(name="last_tap")  # (u, v) == (kh_last, kw_last), kept with u and v
        one_tap = (kh_last == 0) & (kw_last == 0)
        last_ch_tile, last_cotile = Signal(name="last_ch_tile"), Signal(name="last_cotile")
        # "ch is the last input tile" is read only at an input tile's last weight word, where ch
        # moves on. Registered from ch every cycle, it stays off the stream's handshake logic (that
        # update's enable was the default build's slowest path, 7.16 ns): the next read is a tap
        # of rows * wt_words words later at the least, so a cycle late is in time unless a tap is
        # one word; there the flag follows ch's updates as before.
        flag_from_ch = rows * cfg.wt_words > 1
        if flag_from_ch:
            m.d.sync += last_ch_tile.eq(ch + rows >= job.in_ch)
        last_skip_x = x == skip_w_last
        last_skip_y = y == skip_h_last

        # A narrow input's pixel group is one word, its other lanes zero (layer.narrow_in).
        in_group_done = job.narrow_in | group_done(cfg.in_words)
        # Every buffer write leaves from registers, a cycle after its group's last word: the
        # memories' write enables then start at a flip-flop, not at the stream's handshake (the
        # weight and input buffers' were the default build's slowest paths, 7.25 and 7.04 ns).
        # Each reader waits on a count that follows the write: the sequencer sees ``wt_avail``
        # a cycle after the row's last word and reads the row a cycle later still; the input
        # counts follow their last writes by a cycle (above), and the skip pixels are read only
        # by a last pass that takes ``skip_ready`` first.
        in_write, wt_write, skip_write = Signal(), Signal(), Signal()
        m.d.sync += [
            self.in_wr.en.eq(in_write), self.in_wr.addr.eq(Mux(job.in_mirror, mirror(in_addr), in_addr)),
            self.in_wr.data.eq(Mux(job.narrow_in, word[:min(rows * width, STREAM_BITS)],
                                   group(cfg.in_words, rows * width))),
            self.wt_wr.en.eq(wt_write), self.wt_wr.addr.eq(wt_addr),
            self.wt_wr.data.eq(tile_group()),
            self.skip_wr.en.eq(skip_write), self.skip_wr.addr.eq(skip_addr),
            self.skip_wr.data.eq(tile_group()),
        ]

        # The skip bank's free bit a cycle late, off the high fan-out ``bank``: within SKIP it
        # only rises (a release), and it falls only as SKIP ends, so a late view only waits.
        skip_bank_free = Signal()
        m.d.sync += skip_bank_free.eq(skip_free.bit_select(bank, 1))

        # skip_avail counts a bank's skip pixels as they are written (from the registered write)
        skip_wr_bank = Signal()
        m.d.sync += skip_wr_bank.eq(bank)
        for b in range(2):
            with m.If(self.wt_release[b]):
                m.d.sync += [self.wt_avail[b].eq(0), free[b].eq(1), self.skip_ready[b].eq(0),
                             self.skip_avail[b].eq(0)]
            with m.Elif(self.skip_wr.en & (skip_wr_bank == b)):
                m.d.sync += self.skip_avail[b].eq(self.skip_avail[b] + 1)
            with m.If(self.skip_release[b]):
                m.d.sync += skip_free[b].eq(1)

        # two registers from co, which moves only at a tile's end: the next tile's lanes less one,
        # then its last word (a negative count past the last tile is never used)
        next_lanes_m1 = Signal(signed(18))
        m.d.sync += [next_lanes_m1.eq(job.out_ch - co - (cols + 1)), next_row_last.eq(tile_words_last(next_lanes_m1))]

        # A striped job's input tile follows all of the tile's taps, else its first tap.
        striped = Signal()

        def interleave_input():
            """Where the first output tile's next input tile goes (set as its weight rows begin)."""
            interleaved = first_cotile & ~job.weights_first
            return [input_due.eq(interleaved & ~striped), input_due_tile.eq(interleaved),
                    input_due_last.eq(first_cotile & job.weights_first)]

        def goto(state: str, *, due):
            """The state after a tap's weight rows: first the input if it is ``due`` after it."""
            with m.If(due):
                m.d.sync += [resume.eq(RESUME.index(state)), input_due.eq(0), input_due_tile.eq(0),
                             input_due_last.eq(0)]
                m.next = "INPUT"
            with m.Else():
                m.next = state

        def end_tile():
            """The tile's last part is in: the next tile goes to the other bank, or the job ends."""
            m.d.sync += [co.eq(co + cols), bank.eq(~bank), first_cotile.eq(0),
                         last_cotile.eq(co + 2 * cols >= job.out_ch), row_last.eq(next_row_last),
                         row_done.eq(next_row_last == 0)]  # word_index is 0 at a tile's end
            with m.If(last_cotile):
                m.next = "IDLE"
            with m.Else():
                m.next = "WAIT_BANK"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    # the banks carry on from the previous job: its last tiles may still compute
                    # (x, y, ch, r, u and v are 0 here: each returns to 0 at the end of its tile)
                    m.d.sync += [co.eq(0), in_addr.eq(0), first_cotile.eq(1),
                                 word_index.eq(0),
                                 # the first tile's row_last is 0: one word a row, or channels in one word
                                 row_done.eq((layer.out_ch <= cfg.lanes_per_word) | (cfg.wt_words == 1))]
                    m.next = "WAIT_BANK"

            with m.State("INPUT"):
                m.d.comb += self.s_in.ready.eq(input_open | job.input_ahead)
                with m.If(take):
                    next_word(cfg.in_words, in_group_done)
                    with m.If(in_group_done):
                        m.d.comb += in_write.eq(1)
                        m.d.sync += [in_addr.eq(in_addr + 1), x.eq(x + 1), in_x_last.eq(x + 1 == in_w_last)]
                        with m.If(in_x_last):
                            m.d.sync += [x.eq(0), y.eq(y + 1), row_written.eq(1),
                                         in_x_last.eq(in_w_last == 0), in_y_last.eq(y + 1 == in_h_last)]
                            with m.If(in_y_last):
                                m.d.sync += [y.eq(0), in_y_last.eq(in_h_last == 0), tile_written.eq(1)]
                                with m.If(job.weights_first & ~last_input_tile):
                                    # the next input tile follows
                                    m.d.sync += [input_ch.eq(input_ch + rows),
                                                 last_input_tile.eq(input_ch + 2 * rows >= job.in_ch)]
                                with m.Else():
                                    with m.Switch(resume):
                                        for index, state in enumerate(RESUME):
                                            with m.Case(index):
                                                m.next = state

            with m.State("WAIT_BANK"):
                with m.If(free.bit_select(bank, 1)):
                    # A free bank's wt_avail is 0 (a release clears both).
                    m.d.sync += [free.bit_select(bank, 1).eq(0), lane_count.eq(0),
                                 wt_addr.eq(Mux(bank, cfg.wt_depth, 0))]
                    m.next = "BIAS"

            with m.State("BIAS"):
                m.d.comb += self.s_in.ready.eq(1)
                with m.If(take):
                    skip_shift = word[SKIP_SHIFT_OFFSET:SKIP_SHIFT_OFFSET + SHIFT_BITS]
                    # Lane 0 arrives first: shift down from the top lane.
                    m.d.sync += [
                        self.bias[bank].eq(Cat(self.bias[bank][acc_w:], word[:acc_w])),
                        self.shifts[bank].eq(Cat(self.shifts[bank][SHIFT_BITS:],
                                                 word[BIAS_BITS:BIAS_BITS + SHIFT_BITS])),
                        self.skip_shifts[bank].eq(Cat(self.skip_shifts[bank][SHIFT_BITS:], skip_shift)),
                        lane_count.eq(lane_count + 1),
                    ]
                    with m.If(lane_count == cols - 1):
                        m.d.sync += [skip_addr.eq(Mux(bank, cfg.acc_depth, 0)), *interleave_input()]
                        if not flag_from_ch:
                            m.d.sync += last_ch_tile.eq(rows >= job.in_ch)
                        m.next = "WEIGHTS"

            with m.State("SKIP"):
                # Held off until the tile that last used this skip bank has been accumulated.
                m.d.comb += self.s_in.ready.eq(skip_bank_free)
                with m.If(take):
                    next_word(cfg.wt_words, row_done)
                    with m.If(row_done):
                        m.d.comb += skip_write.eq(1)
                        m.d.sync += [skip_addr.eq(skip_addr + 1), x.eq(x + 1)]
                        with m.If(last_skip_x):
                            m.d.sync += [x.eq(0), y.eq(y + 1)]
                            with m.If(last_skip_y):
                                m.d.sync += [y.eq(0), skip_free.bit_select(bank, 1).eq(0),
                                             self.skip_ready.bit_select(bank, 1).eq(1)]
                                m.next = "SKIP_END"

            with m.State("SKIP_END"):
                # the tile's end a cycle after its last skip pixel: from the stream's handshake,
                # end_tile's enables were the default build's slowest path (7.51 ns)
                end_tile()

            with m.State("WEIGHTS"):
                m.d.comb += self.s_in.ready.eq(1)
                with m.If(take):
                    next_word(cfg.wt_words, row_done)
                    with m.If(row_done):
                        m.d.comb += wt_write.eq(1)
                        m.d.sync += [self.wt_avail[bank].eq(self.wt_avail[bank] + 1), wt_addr.eq(wt_addr + 1),
                                     r.eq(r + 1)]
                        with m.If(r == rows - 1):
                            # taps in raster order: v over the KW columns, then u over the KH rows
                            m.d.sync += [r.eq(0), v.eq(v + 1),
                                         last_tap.eq((v + 1 == kw_last) & (u == kh_last))]
                            with m.If(v == kw_last):
                                m.d.sync += [v.eq(0), u.eq(u + 1),
                                             last_tap.eq((kw_last == 0) & (u + 1 == kh_last))]
                            with m.If(last_tap):
                                m.d.sync += [u.eq(0), last_tap.eq(one_tap), ch.eq(ch + rows)]
                                if not flag_from_ch:
                                    m.d.sync += last_ch_tile.eq(ch + 2 * rows >= job.in_ch)
                                with m.If(last_ch_tile):
                                    m.d.sync += ch.eq(0)
                                    goto("TILE_END", due=input_due_tile | input_due_last)
                                with m.Else():
                                    goto("WEIGHTS", due=input_due_tile)
                                    # the next input tile follows its first tap (after goto: wins)
                                    m.d.sync += interleave_input()
                            with m.Else():
                                goto("WEIGHTS", due=input_due)

            with m.State("TILE_END"):
                # the tile's weight rows are in (a state of its own keeps the choice below off
                # the weight rows' counting logic)
                with m.If(job.add):
                    m.next = "SKIP"
                with m.Else():
                    end_tile()
        # The job's sizes and fields, latched at ``start`` (which comes only while idle): off the
        # state's decode, whose AND with ``start`` into a hundred enables was a slow path.
        with m.If(self.start):
            m.d.sync += [in_w_last.eq(layer.in_w - 1), in_h_last.eq(layer.in_h - 1),
                         in_x_last.eq(layer.in_w == 1), in_y_last.eq(layer.in_h == 1),
                         skip_w_last.eq(computed_size(layer.out_w, layer.pool) - 1),
                         skip_h_last.eq(computed_size(layer.out_h, layer.pool) - 1),
                         kh_last.eq(layer.kernel_h - 1), kw_last.eq(layer.kernel_w - 1),
                         last_tap.eq((layer.kernel_h == 1) & (layer.kernel_w == 1)),
                         input_ch.eq(0), last_input_tile.eq(layer.in_ch <= rows),
                         last_cotile.eq(cols >= layer.out_ch), row_last.eq(tile_words_last(layer.out_ch - 1))]
            m.d.sync += [job.in_ch.eq(layer.in_ch), job.out_ch.eq(layer.out_ch), job.narrow_in.eq(layer.narrow_in),
                         job.add.eq(layer.add), job.weights_first.eq(layer.weights_first),
                         job.input_ahead.eq(layer.input_ahead), job.in_mirror.eq(layer.in_mirror),
                         self.first_bank.eq(bank), striped.eq(layer.strip_rows != 0),
                         load_epoch.eq(~load_epoch)]
        return m
