"""The two accumulator banks with their read-modify-write pipeline, the residual-add skip path
and the drain port."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from radix.engine_spec import EngineConfig, skip_shift_range

from .helpers import lane
from .layout import pixel_meta_layout

SHIFT_BITS = 8  # a data or skip shift as carried by a bias word (radix.stream_format.SHIFT_BITS)


def skip_address_bits(config: EngineConfig) -> int:
    """Address width of the skip buffer, two banks of ``acc_depth`` pixels (``cols`` lanes of W
    bits) at ``bank*acc_depth + pixel``: written by the loader, read by the accumulator."""
    return max(1, ceil_log2(2 * config.acc_depth))


def acc_drain_signature(config: EngineConfig) -> wiring.Signature:
    """The output unit's view of the accumulator banks (``Out`` = driven by the reader).

    ``full[b]`` says bank ``b`` holds a finished tile. The reader selects ``bank``, reads with
    ``addr``/``en`` (``data`` follows one cycle after a read that took place and holds
    otherwise), takes the tile's clamped per-lane data shifts from ``shifts`` and pulses
    ``release`` to hand the bank back once it no longer needs its data. While the selected
    bank's tile is in its last pass, its pixels below ``ready`` are finished and may be read
    early, in cycles the compute side leaves the bank's read port free: a read while ``taken``
    does not take place.
    """
    return wiring.Signature({
        "bank": Out(1),
        "addr": Out(max(1, ceil_log2(config.acc_depth))),
        "en": Out(1),
        "release": Out(1),
        "data": In(config.cols * config.acc_width),
        "shifts": In(config.cols * SHIFT_BITS),
        "full": In(2),
        "ready": In(ceil_log2(config.acc_depth + 1)),
        "taken": In(1),
    })


class Accumulator(wiring.Component):
    """Accumulator banks: ``bias + sum`` on a tile's first pass, ``acc + sum`` on later passes;
    with ``add`` the tile's last pass adds the aligned skip too (a single pass: ``bias + aligned
    skip + sum``).

    Two banks of ``acc_depth x cols`` A-bit words (inferred block RAM). The compute side owns a
    bank from the tile's first pass until its last pixel is written (``full`` set), the output
    unit from then until it pulses ``drain.release``. A bank's read port serves the compute side's
    later passes first; the output unit reads in the cycles they leave free, during the tile's
    last pass the pixels that pass has written (``drain.ready``), then the rest.

    ``meta`` describes the pixel slot whose column sums arrive on ``sums`` exactly
    :attr:`META_LEAD` cycles later. Five stages:

    * meta cycle: the metadata is registered;
    * next cycle: a later pass reads the pixel's accumulator word, and a last pass
      (``meta.final``) of a job with ``add`` the pixel's skip lanes (``skip_rd``, skip bank =
      the output tile's weight bank, address = the pixel's place in the tile's computed map,
      ``meta.skip_bank``/``meta.skip_addr``, W bits per lane);
    * next cycle: the accumulator word read or, on a first pass, the bias is registered, and
      the skip lanes read are aligned and registered (zero but on a last pass with ``add``);
    * next cycle: the base of the write, their sum, ``start + round_shift(skip, t)`` per lane
      (docs/arithmetic.md §9), is registered. Both directions of the alignment are one right
      shift of the skip placed at the top of an (A-2)-bit word (extended to A-1 bits by its
      sign, or by a zero when ``skip_unsigned``), rounded half up as ``floor(x / 2^u) + bit
      u-1 of x``, so alignment and addition take one shifter and one adder, each starting from
      flip-flops;
    * sums cycle: ``base + sums`` is written, one A-bit adder per lane as without the add.

    The skip joins the tile's last pass rather than its first so that its pixels can stream
    in while the earlier passes run; the A-bit sum is the same integer in any order. A later
    pass may read a pixel ``ACC_RMW_CYCLES`` or more cycles after the earlier pass read it
    (sequencer guarantee: the write is three cycles after the read). An accumulator bank holds
    one strip of rows of a tile (docs/engine.md, "Strips of rows"; the whole map with one strip),
    the "tile" below. ``skip_release`` pulses for a skip bank when the output tile's last strip
    has its last pixel written: its last pass, the last that reads skip data, is then over,
    so the loader may refill that skip bank.

    With ``sum_pool`` (the layer's SUM_POOL, a summed job) the sums cycle forms each pixel's
    contribution (its sums; the bias too for the tile's first pixel, that of the first pass at
    address 0: a job's pixels are at most ``acc_depth``), a fifth stage adds it to a running
    sum in registers, restarted by the tile's first pixel, and keeps the tile's total in a
    register of its bank, which the drain reads at every address: the tile's one pixel, the sum
    over the whole map (docs/engine.md). The banks themselves are not written.

    ``busy[b]`` is set as a tile's first pass acquires bank ``b`` and cleared as the output unit
    releases it: the compute side may acquire only a bank that is not busy. (``full`` alone
    would not do: a bank is not full while its tile's last pixels are still in the array, and
    two short tiles, single-pass strips of a few pixels on a small build, may take less than
    the array's latency.)

    ``acquire`` (with ``acquire_bank``) marks a tile's first pass starting (its registers are
    written one cycle later): the tile's biases,
    data shifts and skip shifts (``bias``/``shifts``/``skip_shifts``, one A-bit / 8-bit / 8-bit
    lane per column) are copied into per-bank registers, the data shifts clamped to ``[-W, A]``
    (docs/arithmetic.md §5) and the skip shifts to ``[-(A-W-2), W+1]``, or ``[-(A-W-3), W+1]``
    for an unsigned skip (§9: the driver sends them in range; the clamp keeps a stray value from
    wrapping the accumulator) and held as right-shift amounts ``t + A-W-2``, so the weight bank
    they came from can be reloaded while the tile is still computing or draining.
    ``add`` and ``skip_unsigned`` (the layer's FLAGS.ADD and FLAGS.SKIP_UNSIGNED) must stay
    stable during a job.
    """

    META_LEAD = 4
    # Cycles from a tile's acquire to its first meta at the earliest: the constants are written
    # one cycle after acquire and the bank's biases and shift amounts read at meta1. The core's
    # metadata delay (X_LATENCY + array latency - META_LEAD) must not be shorter.
    ACQUIRE_TO_META = 1

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        cols, acc_w = config.cols, config.acc_width
        super().__init__({
            "start": In(1),
            "meta": In(pixel_meta_layout(config.acc_depth)),
            "sums": In(cols * acc_w),
            "acquire": In(1),
            "acquire_bank": In(1),
            "bias": In(cols * acc_w),
            "shifts": In(cols * SHIFT_BITS),
            "add": In(1),
            "skip_unsigned": In(1),
            "sum_pool": In(1),
            "skip_shifts": In(cols * SHIFT_BITS),
            "skip_rd": In(ReadPort.Signature(addr_width=skip_address_bits(config),
                                             shape=cols * config.width)),
            "skip_release": Out(2),
            "busy": Out(2),
            "drain": In(acc_drain_signature(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        cols, width, acc_w = cfg.cols, cfg.width, cfg.acc_width
        meta_layout = pixel_meta_layout(cfg.acc_depth)

        # A skip lane b placed at the top of an (A-2)-bit word, b << (A-W-2), is aligned by one
        # right shift of u = t + (A-W-2) in [0, A-1] bits: u <= A-W-2 drops only zeros (the
        # exact left shift by -t), a larger u is b >> t. The registers hold u; an unsigned skip
        # has u >= 1 (its shift range starts one higher, §9).
        skip_lo, skip_hi = skip_shift_range(cfg.width)
        skip_top = -skip_lo
        amount_bits = ceil_log2(skip_hi - skip_lo + 1)

        bias = Signal(data.ArrayLayout(cols * acc_w, 2), reset_less=True)
        shifts = Signal(data.ArrayLayout(cols * SHIFT_BITS, 2), reset_less=True)
        skip_amounts = Signal(data.ArrayLayout(cols * amount_bits, 2), reset_less=True)
        full = Signal(2)

        def clamp(value, lo, hi):
            return Mux(value < lo, lo, Mux(value > hi, hi, value))

        data_shifts = [clamp(lane(self.shifts, c, SHIFT_BITS), -width, acc_w)[:SHIFT_BITS]
                       for c in range(cols)]
        amounts = [(clamp(lane(self.skip_shifts, c, SHIFT_BITS), skip_lo, skip_hi) + skip_top)[:amount_bits]
                   for c in range(cols)]
        # The tile's constants are captured unconditionally in the acquire cycle and written to
        # their bank one cycle later: the sequencer's deep ``take`` logic then drives one flip-flop,
        # not the enables of every bank register (the first pixel's sums come rows + cols cycles
        # later, and the loader refills the source registers two cycles after a release at the
        # earliest).
        acquire_q, bank_q = Signal(), Signal()
        bias_q = Signal(cols * acc_w, reset_less=True)
        shifts_q = Signal(cols * SHIFT_BITS, reset_less=True)
        amounts_q = Signal(cols * amount_bits, reset_less=True)
        m.d.sync += [acquire_q.eq(self.acquire), bank_q.eq(self.acquire_bank), bias_q.eq(self.bias),
                     shifts_q.eq(Cat(*data_shifts)), amounts_q.eq(Cat(*amounts))]
        # An unsigned skip's shifts start one higher (§9): its lowest amount is raised to 1 here,
        # after the register, so the clamp's compare-and-add path from the loader's bank select
        # gains no LUT level.
        banked_amounts = Cat(*(Mux(self.skip_unsigned & (amount == 0), 1, amount)
                               for amount in (amounts_q[c * amount_bits:(c + 1) * amount_bits] for c in range(cols))))
        with m.If(acquire_q):
            m.d.sync += [bias[bank_q].eq(bias_q), shifts[bank_q].eq(shifts_q), skip_amounts[bank_q].eq(banked_amounts)]

        meta1 = Signal(meta_layout)
        meta2 = Signal(meta_layout)
        meta3 = Signal(meta_layout)
        meta4 = Signal(meta_layout)
        m.d.sync += [meta1.eq(self.meta), meta2.eq(meta1), meta3.eq(meta2), meta4.eq(meta3)]

        # A bank's read port serves the compute side's later passes first and the drain in the
        # cycles they leave free (all of them once the tile is finished).
        read_data = []
        write_ports = []
        compute_reads = []
        for b in range(2):
            bank = Memory(shape=cols * acc_w, depth=cfg.acc_depth, init=[])
            m.submodules[f"bank{b}"] = bank
            rd = bank.read_port()
            wr = bank.write_port()
            compute_read = meta1.valid & ~meta1.first & (meta1.bank == b)
            m.d.comb += [
                rd.addr.eq(Mux(compute_read, meta1.addr, self.drain.addr)),
                rd.en.eq(compute_read | (self.drain.en & (self.drain.bank == b))),
            ]
            read_data.append(rd.data)
            write_ports.append(wr)
            compute_reads.append(compute_read)
        taken = Mux(self.drain.bank, compute_reads[1], compute_reads[0])
        # ``taken`` for the reader, from a register: meta1 is the metadata input a cycle late
        taken_q = Signal()
        m.d.sync += taken_q.eq(self.meta.valid & ~self.meta.first & (self.meta.bank == self.drain.bank))
        # The drain's data is the bank's output in the cycle after its read and a copy of it
        # afterwards, as the compute side may read the bank again before the reader takes it.
        drained_q = Signal()
        bank_data = Mux(self.drain.bank, read_data[1], read_data[0])
        held = Signal(cols * acc_w, reset_less=True)
        m.d.sync += drained_q.eq(self.drain.en & ~taken)
        with m.If(drained_q):
            m.d.sync += held.eq(bank_data)

        m.d.comb += [
            self.skip_rd.addr.eq(Mux(meta1.skip_bank, cfg.acc_depth, 0) + meta1.skip_addr),
            self.skip_rd.en.eq(meta1.valid & meta1.final & self.add),
        ]

        # The skip lanes read at meta1 are aligned in the next cycle (meta2), while the start value
        # (the accumulator word read at meta1, or the bias) is registered; the base adds them in
        # the cycle after (meta3). Each stage starts from flip-flops or the block RAM: the shift
        # amounts and biases of the pixel's bank are selected a cycle ahead of their stage.
        # Alignment: floor(x / 2^u) + bit u-1 of x = (x + 2^(u-1)) >> u, round half up (zero for
        # u = 0); the rounding bit joins the addition as a carry.
        bank_amounts = Signal(cols * amount_bits, reset_less=True)
        bank_bias = Signal(cols * acc_w, reset_less=True)
        m.d.sync += [bank_amounts.eq(skip_amounts[meta1.bank]), bank_bias.eq(bias[meta1.bank])]
        shifted = [Signal(signed(acc_w - 1), name=f"skip_shifted_{c}", reset_less=True) for c in range(cols)]
        rounding = Signal(cols, reset_less=True)
        skip_here = self.add & meta2.final
        for c in range(cols):
            skip = lane(self.skip_rd.data, c, width)
            placed = Cat(Const(0, skip_top), skip, skip[-1] & ~self.skip_unsigned).as_signed()
            u = lane(bank_amounts, c, amount_bits, signed=False)
            m.d.sync += [shifted[c].eq(Mux(skip_here, placed >> u, 0)),
                         rounding[c].eq(skip_here & Cat(Const(0, 1), placed).bit_select(u, 1))]

        def tile_start(meta):
            """The slot is a tile's first pixel: its first pass's pixel 0."""
            return meta.first & (meta.addr == 0)

        # The start value in meta2: the accumulator word read, the bias on a first pass, or
        # nothing for a summed job's pixels but the tile's first (their sums alone add up).
        start_value = Signal(cols * acc_w, reset_less=True)
        read_word = Mux(meta2.bank, read_data[1], read_data[0])
        zero_start = Signal()
        m.d.sync += zero_start.eq(self.sum_pool & ~tile_start(meta1))
        m.d.sync += start_value.eq(Mux(zero_start, 0, Mux(meta2.first, bank_bias, read_word)))
        base = Signal(cols * acc_w, reset_less=True)
        m.d.sync += base.eq(Cat(*((lane(start_value, c, acc_w) + shifted[c] + rounding[c])[:acc_w]
                                  for c in range(cols))))

        updated = Cat(*[(lane(base, c, acc_w) + lane(self.sums, c, acc_w))[:acc_w] for c in range(cols)])

        # A summed job: the running sum is a stage after the sums cycle, its choice between
        # restarting and adding follows its adder, and its result waits in a register per bank
        # (the drain reads that instead of the bank), so the bank's write data stays ``updated``
        # alone: its path from the array's column sums has no multiplexer.
        meta5 = Signal(meta_layout)
        contribution = Signal(cols * acc_w, reset_less=True)
        running = Signal(cols * acc_w, reset_less=True)
        restart5 = Signal()
        m.d.sync += [meta5.eq(meta4), contribution.eq(updated), restart5.eq(tile_start(meta4))]
        summed = Cat(*[Mux(restart5, lane(contribution, c, acc_w),
                           lane(running, c, acc_w) + lane(contribution, c, acc_w))[:acc_w] for c in range(cols)])
        sum_results = Signal(data.ArrayLayout(cols * acc_w, 2), reset_less=True)
        with m.If(meta5.valid):
            m.d.sync += running.eq(summed)
            with m.If(meta5.last):
                m.d.sync += sum_results[meta5.bank].eq(summed)
        for b, wr in enumerate(write_ports):
            m.d.comb += [
                wr.addr.eq(meta4.addr),
                wr.data.eq(updated),
                wr.en.eq(meta4.valid & (meta4.bank == b) & ~self.sum_pool),
            ]
        # the pixel that completes a tile: meta4's, or a summed job's meta5
        write = Signal(meta_layout)
        m.d.comb += write.eq(Mux(self.sum_pool, meta5.as_value(), meta4.as_value()))

        tile_done = write.valid & write.last
        # Pixels of a tile's last pass written so far, per bank: the drain may read below it. A
        # summed job's bank is not written (its sum is ready when the bank is full).
        ready = Signal(data.ArrayLayout(len(self.drain.ready), 2))
        m.d.comb += [
            self.drain.data.eq(Mux(self.sum_pool, sum_results[self.drain.bank], Mux(drained_q, bank_data, held))),
            self.drain.shifts.eq(shifts[self.drain.bank]),
            self.drain.full.eq(full),
            self.drain.ready.eq(ready[self.drain.bank]),
            self.drain.taken.eq(taken_q),
            self.skip_release.eq(Mux(tile_done & write.tile_end, 1 << write.skip_bank, 0)),
        ]
        busy = Signal(2)
        m.d.comb += self.busy.eq(busy)
        with m.If(self.start):
            m.d.sync += [full.eq(0), busy.eq(0), ready[0].eq(0), ready[1].eq(0)]
        with m.Else():
            with m.If(self.acquire):
                m.d.sync += busy.bit_select(self.acquire_bank, 1).eq(1)
            with m.If(self.drain.release):
                m.d.sync += busy.bit_select(self.drain.bank, 1).eq(0)
            with m.If(tile_done):
                m.d.sync += full.bit_select(write.bank, 1).eq(1)
            for b in range(2):
                with m.If(self.drain.release & (self.drain.bank == b)):
                    m.d.sync += [full[b].eq(0), ready[b].eq(0)]
                with m.Elif(meta4.valid & meta4.final & (meta4.bank == b) & ~self.sum_pool):
                    m.d.sync += ready[b].eq(meta4.addr + 1)
        return m
