"""The output unit: data shift, ReLU, saturation, 2x2 max pooling and output packing."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from radix.engine_spec import STREAM_BITS, EngineConfig

from .accumulator import SHIFT_BITS, acc_drain_signature
from .helpers import computed_size, lane, popcount
from .layout import OUTPUT_WORD_LAYOUT, LayerConfigLayout

FIFO_DEPTH = 8
# The stall decides on the FIFO level of the cycle before: room for this many more words then
# guarantees room for one now, whatever was written since.
FIFO_ROOM = 2
STAGES = 6
# What travels with a pixel through the pipeline besides its lanes: ``words``, how many of the
# pixel's words carry channels (fewer in a layer's last tile).
TAG_LAYOUT = data.StructLayout({"valid": 1, "i": 16, "j": 16, "last": 1, "words": 5})


class OutputUnit(wiring.Component):
    """Drains finished accumulator banks into the output stream (docs/arithmetic.md §5, §6).

    Per output-channel tile, and in it per strip of ``layer.strip_rows`` computed rows (one strip
    when 0, docs/engine.md), it waits for the strip's bank in turn (``acc.full``, or the first
    finished pixel of the strip's last pass: ``acc.ready``), takes the tile's clamped data
    shifts, reads the strip in raster order (the rows continue across strips, so pooling pairs
    rows of two strips alike), one pixel of ``cols`` lanes per cycle as the pixels are
    finished and the bank's read port is free, and pushes the pixels through a pipeline that
    stalls as a whole (one enable, ``ce``) whenever the packer cannot hand its pixel on, or,
    while a tile is read, while the compute side takes the read port (``acc.taken``). ``ce``
    drives every stage's clock enable (thousands of loads on the default build), so it is one
    LUT of registers: the packer's word index, ``S6``'s valid bit, ``room`` (the FIFO's level of
    the previous cycle compared with its depth), ``reading`` and ``acc.taken``:

    ``S0`` address -> ``S1`` bank data -> ``S2`` registered -> ``S3`` shifted
    (``acc >> (s-1)`` or ``acc << -s``) -> ``S4`` rounded half up -> ``S5`` ReLU and
    saturation to the output's W-bit range (counted) -> ``S6`` pooled or plain pixel -> packer:
    the pixel's words that hold channels (``ceil(cols*W/64)``, fewer in a last tile of fewer
    channels: ``radix.stream_format``) into a small FIFO feeding ``m_out``. With
    ``layer.out_unsigned`` the range is ``[0, 2^W - 1]`` and pooling compares the W-bit codes as
    unsigned values, else ``[-2^(W-1), 2^(W-1) - 1]`` and signed (docs/arithmetic.md §5, §6).

    Pooling (2x2, stride 2) keeps the left pixel of a pair in a register and the horizontal
    maximum of an even row in a line buffer (block RAM, ``acc_depth/2`` pixels); an odd row's
    pair maximum is combined with it and emitted. With pooling the bank holds (and the unit
    reads and counts) only the even-cropped map: an odd last row or column of ``OUT_H x OUT_W``
    is never computed (docs/arithmetic.md §6).

    A tile ends once its last pixel has left ``S2``: no later stage needs the bank or the
    shifts, so the bank is released and the next tile may start while the pipeline drains.
    ``saturated`` counts saturated elements since ``start``; ``finished`` pulses once the job's
    last tile has drained and its last word was accepted. ``start`` is honoured while idle.
    """

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        super().__init__({
            "start": In(1),
            "layer": In(LayerConfigLayout),
            "acc": Out(acc_drain_signature(config)),
            "m_out": Out(stream.Signature(OUTPUT_WORD_LAYOUT)),
            "saturated": Out(32),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        cols, width, acc_w = cfg.cols, cfg.width, cfg.acc_width
        words = cfg.wt_words
        layer = self.layer
        unsigned = layer.out_unsigned

        m.submodules.fifo = fifo = SyncFIFOBuffered(width=STREAM_BITS + 1, depth=FIFO_DEPTH)
        m.d.comb += [
            self.m_out.valid.eq(fifo.r_rdy),
            self.m_out.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.m_out.ready),
        ]

        def lanes(name, shape):
            return [Signal(shape, name=f"{name}_{c}", reset_less=True) for c in range(cols)]

        tag = [Signal(TAG_LAYOUT, name=f"tag{k}") for k in range(STAGES + 1)]
        acc2 = Signal(cols * acc_w, reset_less=True)
        t3, pos3 = lanes("t3", signed(acc_w + width)), lanes("pos3", 1)
        r4 = lanes("r4", signed(acc_w + width + 1))
        # y5 and hold are W-bit codes, read as signed or unsigned by ``unsigned`` (see ordered)
        y5, sat5 = lanes("y5", width), Signal(cols, reset_less=True)
        y6 = Signal(cols * width, reset_less=True)
        hold = lanes("hold", width)
        word_index = Signal(range(max(words, 2)))

        # The tile's data shifts, decoded once when the tile starts (they are constant for it), so
        # that S3 is only the barrel shift: the right amount s-1, the left amount -s, s > 0.
        shift_bits_r, shift_bits_l = ceil_log2(acc_w), ceil_log2(width + 1)
        right_by, left_by = lanes("right_by", shift_bits_r), lanes("left_by", shift_bits_l)
        shift_right = lanes("shift_right", 1)
        bank = Signal()
        co = Signal(17)  # first output channel of the tile being read
        saturated = Signal(32)
        m.d.comb += self.saturated.eq(saturated)

        last_word = Signal(init=words == 1)
        room = Signal()  # the FIFO had room for FIFO_ROOM more words a cycle ago: it has one now
        m.d.sync += room.eq(fifo.level <= FIFO_DEPTH - FIFO_ROOM - 1)
        # While a tile is read, the pipeline also waits out the cycles the compute side takes the
        # bank's read port, so that S0's reads fall in the free ones (every other cycle during a
        # slow last pass) instead of leaving bubbles that cost the output stream a cycle each.
        reading = Signal()
        yielded = reading & self.acc.taken
        ce = ~yielded & (~tag[6].valid | (room & last_word))

        # Packer: one 64-bit word of the S6 pixel per cycle; a pixel's last word is written only
        # with ``room``, the cycle the pipeline moves on (``ce``), so no word is written twice.
        padded = Cat(y6, Const(0, words * STREAM_BITS - cols * width))
        write = tag[6].valid & Mux(last_word, room & ~yielded, fifo.w_rdy)
        m.d.comb += [
            fifo.w_data.eq(Cat(padded.word_select(word_index, STREAM_BITS),
                               tag[6].last & last_word)),
            fifo.w_en.eq(write),
        ]
        with m.If(ce):  # the next pixel (or none) enters S6
            m.d.sync += [word_index.eq(0), last_word.eq(tag[5].words == 1)]
        with m.Elif(write):  # a word of the S6 pixel before its last
            m.d.sync += [word_index.eq(word_index + 1), last_word.eq(word_index == tag[6].words - 2)]

        # S0: the next pixel; its valid/i/j are the tile sequencing's registers, its last flag
        # is derived here.
        # Per-job constants, registered at start (the layer is stable until finished).
        last_i, last_j = Signal(16), Signal(16)
        strip_last_i = Signal(16)  # the last computed row of the strip being read (docs/engine.md)
        # Strips: the first strip's last row (set in SETUP, a cycle after last_i), the next
        # strip's (its sum, then its clamp) and "more strips follow", as registers, so the
        # strip's end decides on flags rather than on adders and compares. strip_last_i and
        # last_i are stable while a strip is read and drained: its DRAIN waits for its last
        # pixel to leave S2, at least three cycles after strip_last_i was set.
        first_strip_last, strip_sum, next_strip_last = Signal(16), Signal(17), Signal(16)
        more_strips = Signal()
        first_strip_end = Mux((layer.strip_rows == 0) | (layer.strip_rows > last_i), last_i, layer.strip_rows - 1)
        m.d.sync += [
            first_strip_last.eq(first_strip_end),
            strip_sum.eq(strip_last_i + layer.strip_rows),
            next_strip_last.eq(Mux(strip_sum >= last_i, last_i, strip_sum)),
            more_strips.eq(strip_last_i != last_i),
        ]
        last_tile = Signal()  # co + cols >= out_ch, kept with co
        lanes_per_word = STREAM_BITS // width
        # words of the last tile's pixels: those holding its channels
        tile_words = ((layer.out_ch - co + lanes_per_word - 1) >> (lanes_per_word.bit_length() - 1))[:5]
        pixel = Signal(len(self.acc.addr))
        # S0 reads its pixel (``go``) once the pixel is finished and the bank's read port is free:
        # always once the bank is full, earlier during the tile's last pass (not a summed job's,
        # whose one pixel is a register the accumulator fills last); else a bubble moves on.
        # ``pixel_ready`` and ``begun`` look at ``acc.ready`` a cycle late, which only errs on the
        # safe side: during a tile it only grows, and ``pixel`` grows by at most one a cycle. A
        # release switches the bank, so the next cycle's ``begun`` is cleared (the other bank's
        # tile may not even have started: its shifts are not there yet).
        pixel_ready, begun = Signal(), Signal()
        m.d.sync += [pixel_ready.eq(pixel + 1 < self.acc.ready), begun.eq((self.acc.ready != 0) & ~self.acc.release)]
        go = ~self.acc.taken & (self.acc.full.bit_select(bank, 1) | (~layer.sum_pool & pixel_ready))
        m.d.comb += [
            self.acc.bank.eq(bank), self.acc.addr.eq(pixel), self.acc.en.eq(ce & go),
            tag[0].last.eq(last_tile & (tag[0].i == last_i) & (tag[0].j == last_j)),
        ]

        emit = Mux(layer.pool, tag[5].i[0] & tag[5].j[0], 1)
        with m.If(ce):
            m.d.sync += [tag[k].eq(tag[k - 1]) for k in range(2, STAGES)]
            m.d.sync += [tag[1].eq(tag[0]), tag[1].valid.eq(tag[0].valid & go)]
            m.d.sync += [tag[6].eq(tag[5]), tag[6].valid.eq(tag[5].valid & emit)]

        with m.If(ce):
            m.d.sync += acc2.eq(self.acc.data)
            for c in range(cols):
                # S3: right shift by s-1 (rounding finishes in S4) or exact left shift by -s.
                acc = lane(acc2, c, acc_w)
                right = acc >> right_by[c]
                left = (acc << left_by[c])[:acc_w + width].as_signed()
                m.d.sync += [t3[c].eq(Mux(shift_right[c], right, left)), pos3[c].eq(shift_right[c])]
                # S4: round half up, ((acc >> (s-1)) + 1) >> 1 = floor(acc/2^s + 1/2).
                m.d.sync += r4[c].eq(Mux(pos3[c], (t3[c] + 1) >> 1, t3[c]))
                # S5: ReLU, saturation and its flag. Above the range: non-negative with a bit set
                # at W or up (unsigned) or W-1 or up (signed). Below it: negative (unsigned), or
                # not all ones from bit W-1 up (signed). The ends' codes differ only in the top
                # bit: 0x7F/0xFF and 0x80/0x00 at W = 8.
                r = Mux(layer.relu & (r4[c] < 0), 0, r4[c])
                negative = r[-1]
                high = ~negative & (r[width:].any() | (r[width - 1] & ~unsigned))
                low = negative & (unsigned | ~r[width - 1:].all())
                y_max = Cat(Const((1 << (width - 1)) - 1, width - 1), unsigned)
                y_min = Cat(Const(0, width - 1), ~unsigned)
                m.d.sync += [y5[c].eq(Mux(high, y_max, Mux(low, y_min, r[:width]))),
                             sat5[c].eq(high | low)]

        # S6: pooling through the pair register and the line buffer; saturation count.
        line_depth = max(1, cfg.acc_depth // 2)
        m.submodules.line = line = Memory(shape=cols * width, depth=line_depth, init=[])
        line_rd = line.read_port()
        line_wr = line.write_port()
        line_bits = ceil_log2(line_depth)

        def ordered(code):
            """A W-bit output code as the value it stands for (W + 1 signed bits), to compare by."""
            return Cat(code, code[-1] & ~unsigned).as_signed()

        pair_max = [Mux(ordered(hold[c]) > ordered(y5[c]), hold[c], y5[c]) for c in range(cols)]
        pooled = []
        for c in range(cols):
            above = lane(line_rd.data, c, width, signed=False)
            pooled.append(Mux(ordered(above) > ordered(pair_max[c]), above, pair_max[c]))
        m.d.comb += [
            line_rd.addr.eq(tag[4].j[1:1 + line_bits]),
            line_rd.en.eq(ce),
            line_wr.addr.eq(tag[5].j[1:1 + line_bits]),
            line_wr.data.eq(Cat(*pair_max)),
            line_wr.en.eq(ce & tag[5].valid & layer.pool & tag[5].j[0] & ~tag[5].i[0]),
        ]
        with m.If(ce):
            m.d.sync += y6.eq(Mux(layer.pool, Cat(*pooled), Cat(*y5)))
            with m.If(tag[5].valid):
                with m.If(~tag[5].j[0]):
                    m.d.sync += [hold[c].eq(y5[c]) for c in range(cols)]

        # The count adds a pixel's saturated lanes a cycle after S5: the lane popcount and the
        # 32-bit add are two paths (the job's last pixel is counted long before the FIFO empties).
        pixel_saturated = Signal(range(cols + 1))
        m.d.sync += [pixel_saturated.eq(Mux(ce & tag[5].valid, popcount(sat5), 0)),
                     saturated.eq(saturated + pixel_saturated)]

        # Tile sequencing (S0).
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    # a summed job's tile is one pixel (the accumulator's sum, docs/engine.md)
                    height = Mux(layer.sum_pool, 1, computed_size(layer.out_h, layer.pool))
                    m.d.sync += [bank.eq(0), co.eq(0), last_tile.eq(cols >= layer.out_ch), saturated.eq(0),
                                 tag[0].i.eq(0),
                                 last_i.eq(height - 1),
                                 last_j.eq(Mux(layer.sum_pool, 0, computed_size(layer.out_w, layer.pool) - 1))]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.sync += strip_last_i.eq(first_strip_end)  # first_strip_last is a cycle behind last_i
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.acc.full.bit_select(bank, 1) | (~layer.sum_pool & begun)):
                    m.d.sync += [tag[0].valid.eq(1), pixel.eq(0), tag[0].j.eq(0),
                                 tag[0].words.eq(Mux(last_tile, tile_words, words)), reading.eq(1)]
                    for c in range(cols):
                        s = lane(self.acc.shifts, c, SHIFT_BITS)
                        m.d.sync += [right_by[c].eq((s - 1)[:shift_bits_r]),
                                     left_by[c].eq((-s)[:shift_bits_l]), shift_right[c].eq(s > 0)]
                    m.next = "READ"
            with m.State("READ"):
                with m.If(ce & go):
                    m.d.sync += pixel.eq(pixel + 1)
                    with m.If(tag[0].j == last_j):
                        m.d.sync += [tag[0].j.eq(0), tag[0].i.eq(tag[0].i + 1)]
                        with m.If(tag[0].i == strip_last_i):
                            m.d.sync += [tag[0].valid.eq(0), reading.eq(0)]
                            m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += tag[0].j.eq(tag[0].j + 1)
            with m.State("DRAIN"):
                with m.If(~tag[1].valid & ~tag[2].valid):
                    m.d.comb += self.acc.release.eq(1)
                    m.d.sync += bank.eq(~bank)
                    with m.If(more_strips):  # the tile's next strip
                        m.d.sync += strip_last_i.eq(next_strip_last)
                        m.next = "WAIT"
                    with m.Elif(last_tile):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += [co.eq(co + cols), last_tile.eq(co + 2 * cols >= layer.out_ch), tag[0].i.eq(0),
                                     strip_last_i.eq(first_strip_last)]
                        m.next = "WAIT"
            with m.State("FINISH"):
                busy = [tag[k].valid for k in range(1, STAGES + 1)]
                with m.If(~Cat(*busy).any() & (fifo.level == 0)):
                    m.d.comb += self.finished.eq(1)
                    m.next = "IDLE"
        return m
