"""The two accumulator banks with their read-modify-write pipeline and the drain port."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from radix.engine_spec import EngineConfig

from .helpers import lane
from .layout import pixel_meta_layout

SHIFT_BITS = 8  # a data shift as carried by a bias word (radix.stream_format.SHIFT_BITS)


def acc_drain_signature(config: EngineConfig) -> wiring.Signature:
    """The output unit's view of a finished accumulator bank (``Out`` = driven by the reader).

    ``full[b]`` says bank ``b`` holds a finished tile. The reader selects ``bank``, reads with
    ``addr``/``en`` (``data`` follows one cycle after an enabled read and holds otherwise),
    takes the tile's clamped per-lane data shifts from ``shifts`` and pulses ``release`` to hand
    the bank back once it no longer needs its data.
    """
    return wiring.Signature({
        "bank": Out(1),
        "addr": Out(max(1, ceil_log2(config.acc_depth))),
        "en": Out(1),
        "release": Out(1),
        "data": In(config.cols * config.acc_width),
        "shifts": In(config.cols * SHIFT_BITS),
        "full": In(2),
    })


class Accumulator(wiring.Component):
    """Accumulator banks: ``bias + sum`` on a tile's first pass, ``acc + sum`` on later passes.

    Two banks of ``acc_depth x cols`` A-bit words (inferred block RAM). The compute side owns a
    bank from the tile's first pass until its last pixel is written (``full`` set), the output
    unit from then until it pulses ``drain.release``; the read port of each bank follows its
    owner.

    ``meta`` describes the pixel slot whose column sums arrive on ``sums`` exactly
    :attr:`META_LEAD` cycles later: the bank is read at the meta cycle, the read data is
    registered, and ``bias``/``acc`` + ``sums`` is written in the sums cycle. A later pass may
    read a pixel 3 or more cycles after the earlier pass read it (sequencer guarantee).

    ``acquire`` (with ``acquire_bank``) marks a tile's first pass starting: the tile's biases
    and data shifts (``bias``/``shifts``, one A-bit / 8-bit lane per column) are copied into
    per-bank registers, the shifts clamped to ``[-W, A]`` (docs/arithmetic.md §5), so the
    weight bank they came from can be reloaded while the tile is still computing or draining.
    """

    META_LEAD = 2

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
            "drain": In(acc_drain_signature(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        cols, width, acc_w = cfg.cols, cfg.width, cfg.acc_width
        meta_layout = pixel_meta_layout(cfg.acc_depth)

        bias = Signal(data.ArrayLayout(cols * acc_w, 2), reset_less=True)
        shifts = Signal(data.ArrayLayout(cols * SHIFT_BITS, 2), reset_less=True)
        full = Signal(2)

        with m.If(self.acquire):
            clamped = []
            for c in range(cols):
                s = lane(self.shifts, c, SHIFT_BITS)
                clamped.append(Mux(s < -width, -width, Mux(s > acc_w, acc_w, s))[:SHIFT_BITS])
            m.d.sync += [
                bias[self.acquire_bank].eq(self.bias),
                shifts[self.acquire_bank].eq(Cat(*clamped)),
            ]

        meta1 = Signal(meta_layout)
        meta2 = Signal(meta_layout)
        m.d.sync += [meta1.eq(self.meta), meta2.eq(meta1)]

        read_data = []
        write_ports = []
        for b in range(2):
            bank = Memory(shape=cols * acc_w, depth=cfg.acc_depth, init=[])
            m.submodules[f"bank{b}"] = bank
            rd = bank.read_port()
            wr = bank.write_port()
            compute_read = self.meta.valid & ~self.meta.first & (self.meta.bank == b)
            m.d.comb += [
                rd.addr.eq(Mux(full[b], self.drain.addr, self.meta.addr)),
                rd.en.eq(Mux(full[b], self.drain.en & (self.drain.bank == b), compute_read)),
            ]
            read_data.append(rd.data)
            write_ports.append(wr)

        # Read data of the pixel in meta1, registered so it lines up with meta2 and the sums.
        previous = Signal(cols * acc_w, reset_less=True)
        m.d.sync += previous.eq(Mux(meta1.bank, read_data[1], read_data[0]))

        base = Mux(meta2.first, bias[meta2.bank], previous)
        updated = Cat(*[(lane(base, c, acc_w) + lane(self.sums, c, acc_w))[:acc_w]
                        for c in range(cols)])
        for b, wr in enumerate(write_ports):
            m.d.comb += [
                wr.addr.eq(meta2.addr),
                wr.data.eq(updated),
                wr.en.eq(meta2.valid & (meta2.bank == b)),
            ]

        m.d.comb += [
            self.drain.data.eq(Mux(self.drain.bank, read_data[1], read_data[0])),
            self.drain.shifts.eq(shifts[self.drain.bank]),
            self.drain.full.eq(full),
        ]
        with m.If(self.start):
            m.d.sync += full.eq(0)
        with m.Else():
            with m.If(meta2.valid & meta2.last):
                m.d.sync += full.bit_select(meta2.bank, 1).eq(1)
            with m.If(self.drain.release):
                m.d.sync += full.bit_select(self.drain.bank, 1).eq(0)
        return m
