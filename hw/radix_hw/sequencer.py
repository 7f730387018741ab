"""The compute sequencer: pass order, shadow-weight loading and pixel issue."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from radix.engine_spec import ACC_RMW_CYCLES, KERNEL_BITS, EngineConfig

from .helpers import computed_size, small_product
from .input_buffer import lane_offset_bits
from .layout import LayerConfigLayout, input_address_bits, pixel_meta_layout, weight_address_bits
from .loader import skip_count_bits, weight_rows_bits

COORD = signed(21)  # an input coordinate i*SH + u - PAD_TOP (or j*SW + v - PAD_LEFT): |value| < 2^19
TAP_OFFSET = signed(KERNEL_BITS + 1)  # a tap's offset u - PAD_TOP (or v - PAD_LEFT): both below the kernel


class Sequencer(wiring.Component):
    """Runs a job's passes back to back through the array.

    Pass order: for each output-channel tile (weight banks alternating from ``first_wbank``,
    the loader's bank for the job's first tile), for each strip of
    ``layer.strip_rows`` computed rows (all of them when 0; accumulator bank: the strip's index
    over the job, modulo 2), for each input-channel tile ``t``, for each tap ``(u, v)`` of the
    ``KH x KW`` kernel in raster order (``u`` the kernel row, ``v`` the column): one pass
    streams the strip's output pixels in raster order (with pooling, an odd last row or column
    is not computed), pixel ``(i, j)`` reading input ``(i*SH + u - PAD_TOP, j*SW + v -
    PAD_LEFT)`` of tile ``t`` (zero outside the tile: padding and edges are formed here), at
    accumulator address ``(i - i0) * OUT_W + j`` for the strip's first row ``i0``. In a folded
    job (``layer.fold_lanes``, docs/engine.md) tap column ``v`` reads column ``j*SW + v*fold_taps
    - PAD_LEFT`` from the input buffer's base (``in_base``, ``fold_taps - 1``), and lane ``l``
    the column ``lane_offset[l]`` further right: each lane is zeroed outside the tile by its own
    column bounds, an unused lane (``lane_unused``) always. Addresses are built incrementally
    modulo the buffer size; the only products, ``PAD_TOP*IN_W``, ``SH*IN_W`` and the strip's
    steps (``strip_rows`` times ``SH*IN_W``, ``SH`` and ``OUT_W``), are shift-and-add of 4- and
    3-bit factors.

    Two cooperating parts:

    * the **pass generator** walks the pass loops. For the next pass it reads that pass's
      ``rows`` weight rows from the weight bank, last row first, into the array's shadow chain
      (``w_row``/``w_shift``, :attr:`W_LATENCY` cycles after the read), then publishes the
      pass in a one-entry descriptor. It starts only when the rows are in the bank
      (``wt_avail``), with its first shift ``rows`` cycles after the running pass's first
      pixel was issued, when that pass's swap wave has passed the array's bottom row (the array
      skews each column's weights like its swaps, :class:`~radix_hw.array.SystolicArray`);
    * the **pixel issuer** takes the descriptor as its running pass issues its last pixel,
      once a strip's first pass finds its accumulator bank free (``acc_busy`` clear; then it pulses
      ``acquire``), a strip's last pass in a job with ``layer.add`` finds the skip pixels up
      to the strip's end in (``skip_avail``; the tile's last strip: all, ``skip_ready``), and
      at least ``ACC_RMW_CYCLES`` cycles after the previous pass began (accumulator
      read-modify-write distance). Taking a tile's last pass (its last strip's) releases its
      weight bank (a cycle later). A pixel whose input row the loader has not yet written
      (``in_tiles_done``, ``in_rows_done``: a first pass on an input tile, or in a striped job
      any pass of the first output tile, whose weight rows precede the tile) waits: the slot
      goes out as a bubble (``meta.valid`` clear).

    With data ready, passes follow each other without gaps and last ``max(P, 2*rows,
    ACC_RMW_CYCLES)`` cycles (``P`` output pixels, ``EngineConfig.min_pass``): ``rows - 1``
    cycles of swap wave down the rows, ``rows`` shifts and the descriptor hand-over; this needs
    ``X_LATENCY == W_LATENCY``. The
    job's last pass, if it is not its tile's first and the tile writes two or more words per
    pixel, issues every other cycle, leaving the accumulator's read port to the output unit,
    which drains the tile's finished pixels meanwhile. Each issue cycle reads the input buffer;
    ``x``/``swap`` reach the array :attr:`X_LATENCY` cycles after the issue cycle, while
    ``meta`` describes the slot in the issue cycle itself. ``start`` is honoured while idle.
    """

    X_LATENCY = 2
    W_LATENCY = 2
    MIN_PASS = ACC_RMW_CYCLES

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        rows, cols, width = config.rows, config.cols, config.width
        self.in_addr_bits = input_address_bits(config)
        self.wt_addr_bits = weight_address_bits(config)
        super().__init__({
            "start": In(1),
            "layer": In(LayerConfigLayout),
            "first_wbank": In(1),
            "hw": In(self.in_addr_bits),
            "hw_valid": In(1),
            "in_tiles_done": In(16),
            "in_rows_done": In(16),
            "wt_avail": In(data.ArrayLayout(weight_rows_bits(config), 2)),
            "wt_release": Out(2),
            "wt_rd": In(ReadPort.Signature(addr_width=self.wt_addr_bits, shape=cols * width)),
            "in_rd": In(ReadPort.Signature(addr_width=self.in_addr_bits, shape=rows * width)),
            "lane_offset": In(rows * lane_offset_bits(config)),
            "lane_unused": In(rows),
            "in_base": In(KERNEL_BITS),
            "acc_busy": In(2),
            "skip_ready": In(2),
            "skip_avail": In(data.ArrayLayout(skip_count_bits(config), 2)),
            "acquire": Out(1),
            "acquire_bank": Out(1),
            "bias_bank": Out(1),
            "x": Out(rows * width),
            "swap": Out(1),
            "w_row": Out(cols * width),
            "w_shift": Out(1),
            "meta": Out(pixel_meta_layout(config.acc_depth)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.rows, cfg.cols
        layer = self.layer
        addr_bits = self.in_addr_bits

        # Cycles from a pass's first pixel until the next pass's rows may enter the shadow chain.
        gap = cfg.shift_gap + self.X_LATENCY - self.W_LATENCY
        since_max = max(gap, self.MIN_PASS - 1)
        since = Signal(range(since_max + 1), init=since_max)

        pad_row_offset = Signal(addr_bits)  # PAD_TOP * IN_W
        first_tile_base = Signal(addr_bits)  # in_base - PAD_TOP * IN_W, from pad_row_offset in SETUP
        stride_row = Signal(addr_bits)      # SH * IN_W
        # Strips of computed rows: a strip's first row and its input address step, row step and
        # first pixel (for the skip pixels) from the one before, all from the 4-bit strip_rows.
        comp_h, comp_w = Signal(16), Signal(16)
        strip_addr_step = Signal(addr_bits)   # strip_rows * SH * IN_W
        strip_y_step = Signal(COORD)          # strip_rows * SH
        strip_px_step = Signal(16)            # strip_rows * OUT_W (computed)

        # Pass generator state: the pass whose weights load next.
        co, ch = Signal(17), Signal(17)
        abank = Signal()  # the accumulator bank of the strip being loaded
        rows_left = Signal(16)  # computed rows from the strip being loaded to the map's end
        last_strip = Signal()
        strip_tile_base = Signal(addr_bits)  # the strip's tile_base for input tile 0
        strip_y = Signal(COORD)  # the strip's first row times SH
        strip_px = Signal(16)  # the strip's first pixel in the computed map
        u, v = Signal(KERNEL_BITS), Signal(KERNEL_BITS)
        v_column = Signal(KERNEL_BITS)  # the tap's first kernel column: v, or v * fold_taps folded
        column_step = Signal(KERNEL_BITS)  # 1, or fold_taps in a folded job
        wbank = Signal()
        row = Signal(weight_rows_bits(cfg))
        row_end = Signal(weight_rows_bits(cfg) + 1)  # row + rows, kept so WAIT only compares
        row_step = Signal(range(rows))
        tile_base = Signal(addr_bits)  # t*IN_H*IN_W - PAD_TOP*IN_W
        # the next input tile's base waits for ``hw`` (the loader knows IN_H*IN_W once input tile
        # 0 is in, which a 1x1 kernel's tile 0 passes need not wait for)
        tile_pending = Signal()
        t_index = Signal(16)  # the input tile of the pass whose weights load next
        tap_base = Signal(addr_bits)   # tile_base + u*IN_W: row address of input row u - PAD_TOP

        # The one-entry pass descriptor.
        d_valid = Signal()
        d_bank, d_wbank, d_first, d_last, d_end, d_slow = (
            Signal(name=name) for name in ("d_bank", "d_wbank", "d_first", "d_last", "d_end", "d_slow"))
        d_tile = Signal(16)
        d_base = Signal(addr_bits)
        d_y0, d_x0 = Signal(COORD), Signal(TAP_OFFSET)
        d_y1 = Signal(COORD)  # d_y0 + SH: the pass's second row, so the take loads no adder
        d_rows_last = Signal(16)  # the strip's computed rows - 1
        d_px0, d_px_end = Signal(16), Signal(16)  # the strip's first pixel in the map, and its end

        # "the last tap column / row", "the last input-channel tile", "the last output-channel
        # tile" and "the last row of the load", kept as registers updated with v, u, ch, co and
        # row_step, so no compare lies on the pass generator's paths; the next tap and tile
        # base addresses likewise (one cycle behind tap_base and tile_base, which change at
        # most every other cycle: a LOAD is followed by at least one cycle of WAIT).
        last_v, last_u, last_step = Signal(name="last_v"), Signal(name="last_u"), Signal(name="last_step")
        last_t, last_co = Signal(name="last_t"), Signal(name="last_co")
        next_tap_base, next_tile_base = Signal(addr_bits), Signal(addr_bits)
        m.d.sync += [next_tap_base.eq(tap_base + layer.in_w), next_tile_base.eq(tile_base + self.hw)]
        # the output tile being loaded writes two or more words per pixel (more than one word's lanes)
        wide_tile = Signal()
        m.d.sync += wide_tile.eq(layer.out_ch > co + cfg.lanes_per_word)
        single_column, single_row = layer.kernel_w == 1, layer.kernel_h == 1

        loading = Signal()
        m.d.comb += [
            self.wt_rd.addr.eq(Mux(wbank, cfg.wt_depth, 0) + row + row_step),
            self.wt_rd.en.eq(loading),
        ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    offset = small_product(layer.pad_top, layer.in_w)[:addr_bits]
                    height = computed_size(layer.out_h, layer.pool)
                    m.d.sync += [
                        co.eq(0), ch.eq(0), t_index.eq(0), tile_pending.eq(0), u.eq(0), v.eq(0), v_column.eq(0),
                        wbank.eq(self.first_wbank), abank.eq(0), row.eq(0),
                        comp_h.eq(height), comp_w.eq(computed_size(layer.out_w, layer.pool)),
                        rows_left.eq(height), last_strip.eq((layer.strip_rows == 0) | (layer.strip_rows >= height)),
                        strip_y.eq(0), strip_px.eq(0),
                        strip_y_step.eq(small_product(layer.strip_rows, layer.stride_h)),
                        row_end.eq(rows),
                        column_step.eq(Mux(layer.fold_lanes != 0, layer.fold_taps, 1)),
                        last_step.eq(0),
                        last_v.eq(single_column), last_u.eq(single_row),
                        last_t.eq(rows >= layer.in_ch), last_co.eq(cols >= layer.out_ch),
                        pad_row_offset.eq(offset),
                        stride_row.eq(small_product(layer.stride_h, layer.in_w)[:addr_bits]),
                    ]
                    m.next = "SETUP"
            with m.State("SETUP"):
                # A cycle apart from START, so the product above and this negation are two
                # paths; the first weight rows are many cycles away.
                base = self.in_base - pad_row_offset
                m.d.sync += [first_tile_base.eq(base), tile_base.eq(base), tap_base.eq(base), strip_tile_base.eq(base),
                             strip_addr_step.eq(small_product(layer.strip_rows, stride_row)[:addr_bits]),
                             strip_px_step.eq(small_product(layer.strip_rows, comp_w)[:16])]
                m.next = "WAIT"
            with m.State("WAIT"):
                rows_ready = self.wt_avail[wbank] >= row_end
                with m.If(tile_pending):
                    with m.If(self.hw_valid):
                        m.d.sync += [tile_base.eq(next_tile_base), tap_base.eq(next_tile_base), tile_pending.eq(0)]
                # The first read follows one cycle after leaving WAIT.
                with m.Elif(~d_valid & (since >= max(gap - 1, 0)) & rows_ready):
                    m.d.sync += [row_step.eq(rows - 1), last_step.eq(rows == 1)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += loading.eq(1)
                m.d.sync += [row_step.eq(row_step - 1), last_step.eq(row_step == 1)]
                with m.If(last_step):
                    with m.If(last_v & last_u & last_t & last_co & last_strip):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "WAIT"

        # the pass being loaded is its strip's first, its last
        tile_first, tile_last = (ch == 0) & (u == 0) & (v == 0), last_t & last_u & last_v
        tile_last_r = Signal()
        m.d.sync += tile_last_r.eq(tile_last)
        next_strip_base = Signal(addr_bits)
        # "the next strip is the map's last" for a tile's first strip and for the strip after the
        # one being loaded, as registers (rows_left moves only at a strip's end, passes apart)
        one_strip, next_last_strip = Signal(), Signal()
        m.d.sync += [next_strip_base.eq(strip_tile_base + strip_addr_step),
                     one_strip.eq((layer.strip_rows == 0) | (layer.strip_rows >= comp_h)),
                     next_last_strip.eq(layer.strip_rows >= rows_left - layer.strip_rows)]
        # The end of a LOAD, outside the FSM: ``last_step`` is set only in a LOAD's last cycle,
        # so these updates need not decode the state (whose fan-out would lengthen the path).
        with m.If(last_step):
            m.d.sync += [
                d_valid.eq(1), d_bank.eq(abank), d_wbank.eq(wbank), d_base.eq(tap_base), d_tile.eq(t_index),
                d_y0.eq(strip_y + u - layer.pad_top), d_y1.eq(strip_y + u - layer.pad_top + layer.stride_h),
                d_x0.eq(v_column - layer.pad_left),
                d_first.eq(tile_first),
                d_last.eq(tile_last),
                d_end.eq(tile_last & last_strip),
                d_slow.eq(tile_last & last_strip & last_co & ~tile_first & wide_tile),
                d_rows_last.eq(Mux(last_strip, rows_left, layer.strip_rows) - 1), d_px0.eq(strip_px),
                d_px_end.eq(strip_px + strip_px_step),
                row.eq(row_end), row_end.eq(row_end + rows), v.eq(v + 1), last_v.eq(v + 2 == layer.kernel_w),
                v_column.eq(v_column + column_step),
            ]
            with m.If(last_v):
                m.d.sync += [v.eq(0), v_column.eq(0), last_v.eq(single_column), u.eq(u + 1),
                             last_u.eq(u + 2 == layer.kernel_h),
                             tap_base.eq(next_tap_base)]
                with m.If(last_u):
                    m.d.sync += [u.eq(0), last_u.eq(single_row), ch.eq(ch + rows), t_index.eq(t_index + 1),
                                 last_t.eq(ch + 2 * rows >= layer.in_ch), tile_pending.eq(1)]
        # The tile's (or strip's) last pass: ``tile_last`` a cycle late, as a register (it
        # changes only at a LOAD's end, and the next one is two cycles away at least), so the
        # strip's updates start from one flag (the AND of three was the 2x4 build's slowest path).
        with m.If(last_step & tile_last_r):
            m.d.sync += [ch.eq(0), t_index.eq(0), tile_pending.eq(0), row.eq(0), row_end.eq(rows),
                         abank.eq(~abank), last_t.eq(rows >= layer.in_ch)]
            with m.If(last_strip):  # the output tile's last strip: the next tile's first
                m.d.sync += [wbank.eq(~wbank),
                             co.eq(co + cols), last_co.eq(co + 2 * cols >= layer.out_ch),
                             tile_base.eq(first_tile_base), tap_base.eq(first_tile_base),
                             strip_tile_base.eq(first_tile_base),
                             rows_left.eq(comp_h),
                             last_strip.eq(one_strip),
                             strip_y.eq(0), strip_px.eq(0)]
            with m.Else():  # the next strip of the same output tile: its weights stay
                m.d.sync += [tile_base.eq(next_strip_base), tap_base.eq(next_strip_base),
                             strip_tile_base.eq(next_strip_base),
                             rows_left.eq(rows_left - layer.strip_rows),
                             last_strip.eq(next_last_strip),
                             strip_y.eq(strip_y + strip_y_step), strip_px.eq(strip_px + strip_px_step)]

        # Weight rows reach the shadow chain W_LATENCY cycles after the read.
        read_en = Signal()
        m.d.sync += [read_en.eq(loading), self.w_shift.eq(read_en),
                     self.w_row.eq(self.wt_rd.data)]

        # Pixel issuer state: the running pass.
        active = Signal()
        i, j = Signal(16), Signal(16)
        y, x = Signal(COORD), Signal(COORD)
        x0 = Signal(TAP_OFFSET)
        row_base = Signal(addr_bits)  # address of input row y (modulo the buffer size)
        pixel = Signal(len(self.meta.addr))
        skip_pixel = Signal(len(self.meta.skip_addr))  # the pixel's address in the tile's skip bank
        first_pixel = Signal()
        p_bank, p_wbank, p_first, p_last, p_end, p_slow = (
            Signal(name=name) for name in ("p_bank", "p_wbank", "p_first", "p_last", "p_end", "p_slow"))

        # Per-job constants registered at START (the layer is stable until done), and the
        # last-column/last-row conditions kept as registers one cycle ahead, so that the
        # hand-over below (take -> acquire, wt_release) sees two flags instead of the
        # pool -> size -> compare chain.
        strip_rows_last, out_w_last = Signal(16), Signal(16)
        j_last, i_last = Signal(), Signal()
        with m.If(self.start):
            m.d.sync += out_w_last.eq(computed_size(layer.out_w, layer.pool) - 1)
        last_pixel = j_last & i_last
        # The first pass on an input tile may start before the tile is in (its weight rows come
        # first): a pixel waits while its input row y is still streaming in. Later passes never
        # wait (their rows follow the tile). ``since`` counts only the cycles that issue or idle,
        # so consecutive passes still read a pixel at least MIN_PASS cycles apart and the next
        # pass's weights still shift in behind this one's swap wave.
        # ``waiting`` is registered: it is formed for each row the next cycle may issue from (this
        # pass's row, its next row, or the next pass's first row) from the loader's progress of
        # this cycle, which only grows, so a late view of it only waits longer.
        p_tile = Signal(16)
        y_next = Signal(COORD)  # y + SH, kept with y

        def row_missing(row, tile):
            """Input row ``row`` of input tile ``tile`` is in the map and not yet written."""
            return ((row >= 0) & (row < layer.in_h)
                    & ((tile > self.in_tiles_done) | ((tile == self.in_tiles_done) & (row >= self.in_rows_done))))

        # The job's last pass, when it reads the accumulator and its tile writes two or more words
        # per pixel, issues every other cycle (``yielding`` in between): the output unit reads
        # the finished pixels in the free cycles of the bank's read port, so the tile's drain
        # overlaps its last pass instead of following it.
        waiting, yielding = Signal(), Signal()
        stall = active & (waiting | yielding)
        # What a descriptor waits for besides the running pass, as a register: a strip's first
        # pass its accumulator bank free, a strip's last pass with an add the skip pixels up to
        # the strip's end (the last strip's: all of them, skip_ready). It is formed from the
        # descriptor, or, in the cycle one is written (``last_step``; the descriptor is empty
        # then), from the values being written, so it is there when the descriptor is. A bank
        # only becomes free and skip pixels only arrive while a descriptor waits, so a cycle's
        # lateness only waits longer, and ``take`` stays off the descriptor's banks, whose other
        # load is the biases' selection (over a thousand loads on the default build).
        def waits_done(first, last, end, acc_bank, weight_bank, px_end):
            skip_in = (self.skip_ready.bit_select(weight_bank, 1)
                       | (~end & (self.skip_avail[weight_bank] >= px_end)))
            return (~first | ~self.acc_busy.bit_select(acc_bank, 1)) & (~last | ~layer.add | skip_in)

        ready = Signal()
        m.d.sync += ready.eq(Mux(last_step,
                                 waits_done(tile_first, tile_last, tile_last & last_strip, abank, wbank,
                                            strip_px + strip_px_step),
                                 waits_done(d_first, d_last, d_end, d_bank, d_wbank, d_px_end)))
        take = d_valid & (~active | (last_pixel & ~stall)) & (since >= self.MIN_PASS - 1) & ready

        # The descriptor's banks, registers: they select the biases to acquire (those of the
        # weight bank, into the accumulator bank's registers) without waiting for ``take``
        # (``acquire_bank`` and ``bias_bank`` matter only while ``acquire`` is set).
        m.d.comb += [self.acquire_bank.eq(d_bank), self.bias_bank.eq(d_wbank)]
        # The weight bank's release, registered: d_bank drives the bias selection (a thousand
        # loads on the default build), so the loader's bank bookkeeping starts from a register.
        release = Signal(2)
        m.d.sync += release.eq(0)
        m.d.comb += self.wt_release.eq(release)
        missing_here, missing_next, missing_first = (Signal(name=name) for name in (
            "missing_here", "missing_next", "missing_first"))
        m.d.comb += [missing_here.eq(row_missing(y, p_tile)), missing_next.eq(row_missing(y_next, p_tile)),
                     missing_first.eq(row_missing(d_y0, d_tile))]
        m.d.sync += waiting.eq(missing_here)
        m.d.sync += yielding.eq(p_slow & active & ~yielding)
        with m.If(self.start):
            m.d.sync += [active.eq(0), d_valid.eq(0), since.eq(since_max), waiting.eq(0), yielding.eq(0)]
        with m.Elif(take):
            m.d.sync += [
                waiting.eq(missing_first), d_valid.eq(0), since.eq(0), active.eq(1), first_pixel.eq(1),
                i.eq(0), j.eq(0), y.eq(d_y0), y_next.eq(d_y1), x.eq(d_x0), x0.eq(d_x0),
                row_base.eq(d_base),
                j_last.eq(out_w_last == 0), i_last.eq(d_rows_last == 0), strip_rows_last.eq(d_rows_last),
                pixel.eq(0), skip_pixel.eq(d_px0), p_bank.eq(d_bank), p_wbank.eq(d_wbank), p_first.eq(d_first),
                p_last.eq(d_last), p_end.eq(d_end), p_tile.eq(d_tile), p_slow.eq(d_slow), yielding.eq(0),
            ]
            m.d.comb += self.acquire.eq(d_first)
            # the output tile's last pass (its last strip's) releases the weight bank
            m.d.sync += release.eq(Mux(d_end, 1 << d_wbank, 0))
        with m.Else():
            with m.If((since != since_max) & ~stall):
                m.d.sync += since.eq(since + 1)
            with m.If(active & ~stall):
                m.d.sync += [pixel.eq(pixel + 1), skip_pixel.eq(skip_pixel + 1), first_pixel.eq(0)]
                with m.If(j_last):
                    m.d.sync += [waiting.eq(missing_next),
                                 j.eq(0), i.eq(i + 1), x.eq(x0), y.eq(y_next), y_next.eq(y_next + layer.stride_h),
                                 row_base.eq(row_base + stride_row),
                                 j_last.eq(out_w_last == 0), i_last.eq(i + 1 == strip_rows_last)]
                    with m.If(i_last):
                        m.d.sync += active.eq(0)
                with m.Else():
                    m.d.sync += [j.eq(j + 1), x.eq(x + layer.stride_w), j_last.eq(j + 1 == out_w_last)]

        # Lane l reads the pixel lane_offset[l] columns right of x (a folded job; else 0): its
        # column bounds, registered per job, are -offset <= x < IN_W - offset; an unused lane's
        # range is empty.
        offset_bits = lane_offset_bits(cfg)
        column_lo = [Signal(COORD, name=f"column_lo_{l}") for l in range(rows)]
        column_hi = [Signal(COORD, name=f"column_hi_{l}") for l in range(rows)]
        for l in range(rows):
            offset = self.lane_offset[l * offset_bits:(l + 1) * offset_bits]
            m.d.sync += [column_lo[l].eq(-offset),
                         column_hi[l].eq(Mux(self.lane_unused[l], -offset, layer.in_w - offset))]
        row_inside = active & (y >= 0) & (y < layer.in_h)
        inside = Cat(*(row_inside & (x >= column_lo[l]) & (x < column_hi[l]) for l in range(rows)))
        inside_d = Signal(rows)
        swap_d = Signal()
        m.d.comb += [
            self.in_rd.addr.eq((row_base + x)[:addr_bits]),
            self.meta.valid.eq(active & ~stall),
            self.meta.addr.eq(pixel),
            self.meta.first.eq(p_first),
            self.meta.final.eq(p_last),
            self.meta.last.eq(p_last & last_pixel),
            self.meta.bank.eq(p_bank),
            self.meta.tile_end.eq(p_end),
            self.meta.skip_bank.eq(p_wbank),
            self.meta.skip_addr.eq(skip_pixel),
        ]
        m.d.sync += [
            inside_d.eq(inside),
            swap_d.eq(active & first_pixel & ~stall),
            self.x.eq(Cat(*(Mux(inside_d[l], self.in_rd.data[l * cfg.width:(l + 1) * cfg.width], 0)
                            for l in range(rows)))),
            self.swap.eq(swap_d),
        ]
        return m
