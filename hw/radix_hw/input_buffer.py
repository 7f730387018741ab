"""The input buffer: one block RAM per lane, so a folded job can write each lane at its own address."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from radix.engine_spec import CORE_LAYER_FIELDS, EngineConfig

from .helpers import lane
from .layout import input_address_bits

def lane_offset_bits(config: EngineConfig) -> int:
    """Width of a lane's column offset ``g`` in a folded job (``0 .. rows - 1``)."""
    return max(1, ceil_log2(config.rows))


def fold_lane_map(rows: int, fold_lanes: int) -> list[tuple[int, int]]:
    """``(g, c)`` for each of the ``rows`` lanes of a job folded over ``fold_lanes`` channels:
    lane ``l = g * fold_lanes + c`` holds channel ``c`` of the pixel ``g`` columns to the right.
    Without a fold (0, or more than half the rows, which the command's checks refuse) every lane
    is its own channel at offset 0."""
    if not 1 <= fold_lanes <= rows // 2:
        return [(0, lane_index) for lane_index in range(rows)]
    return [divmod(lane_index, fold_lanes) for lane_index in range(rows)]


class InputBuffer(wiring.Component):
    """``in_depth`` pixel groups of ``rows`` W-bit lanes, written by the loader and read by the
    sequencer (docs/engine.md, "Few-channel layers").

    Each lane is a memory of its own. Without a fold (``fold_lanes == 0``) a write stores the
    group at ``wr.addr`` and a read returns the group at ``rd.addr``: one memory of ``rows``
    lanes. In a folded job (``fold_lanes = C``, ``fold_taps = F``) lane ``l = g*C + c`` of the
    pixel written at ``a`` takes channel ``c`` of the incoming group and is stored at
    ``a + F - 1 - g``: the group read at ``p + F - 1`` then holds, in lanes ``g*C .. g*C + C - 1``,
    the pixel ``g`` columns right of pixel ``p``. (The ``F - 1`` keeps every write address at or
    above zero; the sequencer reads from the same ``base``.) Lanes with ``g >= F`` are not written;
    ``lane_offset`` gives each lane's ``g`` and ``lane_unused`` marks those lanes, so the
    sequencer can zero what lies outside the map and what no lane of the fold holds.

    A job with ``in_mirror`` (an input loaded ahead, docs/engine.md) has its addresses mirrored,
    ``a -> in_depth - 1 - a``: its input fills the buffer from the top while the job before's
    fills it from the bottom. The loader writes such a job's input at mirrored addresses itself
    (a register: neither that job nor the core's is folded, so nothing is added to them here);
    the reads take the core's job's mirror (``rd_mirror``).

    ``fold_lanes`` and ``fold_taps`` must be stable from a job's start: the lane map and
    ``base`` (``F - 1``, or 0 without a fold) follow them a cycle later, long before the job's
    first input word (its bias words come first) and in time for the sequencer's SETUP.
    """

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        rows, width = config.rows, config.width
        addr_bits = input_address_bits(config)
        super().__init__({
            "fold_lanes": In(CORE_LAYER_FIELDS["fold_lanes"]),
            "fold_taps": In(CORE_LAYER_FIELDS["fold_taps"]),
            "rd_mirror": In(1),
            "wr": Out(WritePort.Signature(addr_width=addr_bits, shape=rows * width)),
            "rd": Out(ReadPort.Signature(addr_width=addr_bits, shape=rows * width)),
            "lane_offset": Out(rows * lane_offset_bits(config)),
            "lane_unused": Out(rows),
            "base": Out(CORE_LAYER_FIELDS["fold_taps"]),
        })

    @staticmethod
    def physical(config: EngineConfig, addr, mirror):
        """The memory address of buffer address ``addr`` in a job mirrored (``mirror``) or not:
        ``in_depth - 1 - addr`` or ``addr``, the complement on a power-of-two buffer (no adder)."""
        addr_bits = input_address_bits(config)
        top = config.in_depth - 1
        if config.in_depth == 1 << addr_bits:
            return addr ^ Mux(mirror, top, 0)
        return Mux(mirror, top - addr, addr)[:addr_bits]

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, width = cfg.rows, cfg.width
        offset_bits = lane_offset_bits(cfg)
        addr_bits = input_address_bits(cfg)

        # The lane map of the job's fold_lanes, a table (registered: one LUT level from the
        # command's field), and each lane's write offset F - 1 - g (folded) or 0.
        offsets = [Signal(offset_bits, name=f"offset_{index}") for index in range(rows)]
        sources = [Signal(range(rows), name=f"source_{index}") for index in range(rows)]
        with m.Switch(self.fold_lanes):
            for fold_lanes in range(1, rows // 2 + 1):
                with m.Case(fold_lanes):
                    for index, (g, c) in enumerate(fold_lane_map(rows, fold_lanes)):
                        m.d.sync += [offsets[index].eq(g), sources[index].eq(c)]
            with m.Default():
                for index in range(rows):
                    m.d.sync += [offsets[index].eq(0), sources[index].eq(index)]
        folded = Signal()
        base = self.base  # F - 1 in a folded job, else 0
        unused = Signal(rows)
        m.d.sync += [folded.eq(self.fold_lanes != 0), base.eq(Mux(self.fold_lanes != 0, self.fold_taps - 1, 0))]
        m.d.comb += [unused[index].eq(folded & (offsets[index] >= self.fold_taps)) for index in range(rows)]
        m.d.comb += [self.lane_offset.eq(Cat(*offsets)), self.lane_unused.eq(unused)]

        read_lanes = []
        for index in range(rows):
            memory = Memory(shape=width, depth=cfg.in_depth, init=[])
            m.submodules[f"lane{index}"] = memory
            wr, rd = memory.write_port(), memory.read_port()
            # a folded lane takes channel sources[index] <= min(index, rows // 2 - 1) of the group,
            # an unfolded lane its own (the table's default)
            own = lane(self.wr.data, index, width, signed=False)
            source = Signal(width, name=f"source_data_{index}")
            with m.Switch(sources[index]):
                for c in range(min(index, rows // 2 - 1) + 1):
                    with m.Case(c):
                        m.d.comb += source.eq(lane(self.wr.data, c, width, signed=False))
                with m.Default():
                    m.d.comb += source.eq(own)
            m.d.comb += [
                wr.addr.eq((self.wr.addr + base - offsets[index])[:addr_bits]),
                wr.data.eq(source),
                wr.en.eq(self.wr.en & ~unused[index]),
                rd.addr.eq(self.physical(cfg, self.rd.addr, self.rd_mirror)),
                rd.en.eq(self.rd.en),
            ]
            read_lanes.append(rd.data)
        m.d.comb += self.rd.data.eq(Cat(*read_lanes))
        return m
