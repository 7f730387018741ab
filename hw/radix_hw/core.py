"""ConvCore: the convolution engine behind the shell's register file and DMA streams."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from radix.engine_spec import STREAM_BITS, EngineConfig

from .accumulator import Accumulator
from .array import SystolicArray
from .helpers import delay
from .input_buffer import InputBuffer
from .layout import OUTPUT_WORD_LAYOUT, LayerConfigLayout
from .loader import Loader
from .output_unit import OutputUnit
from .sequencer import Sequencer


class ConvCore(wiring.Component):
    """One convolution job (docs/engine.md): input stream in, output stream out.

    ``load_start`` (a one-cycle pulse while ``load_idle``) begins loading a job with the layer
    in ``load_layer`` (read at the pulse): while the core still computes the job before, the
    loader takes the job's bias words and weight rows into the free weight bank and stops at
    its input (or, with ``input_ahead``, takes it too, into the input buffer's other end,
    mirrored with ``in_mirror``). ``start`` (a one-cycle pulse, ignored while ``busy``) then begins the job's
    compute with the same layer in ``layer``, which must stay stable until ``done``; a job's
    ``load_start`` comes before its ``start``, and the next job's after it. The job's words arrive on ``s_in``
    (radix.stream_format: input map, then per output-channel tile its bias words, its weight
    rows and, with ``layer.add``, its skip pixels; TLAST ignored) and its output words
    leave on ``m_out`` with ``last`` on the final word; ``done`` pulses once that word has been
    accepted and ``busy`` falls with it. ``saturated`` counts saturated outputs of the current
    or last job (docs/arithmetic.md §5).

    Datapath: :class:`Loader` -> :class:`InputBuffer` (one memory per lane; a folded job's
    lanes hold neighbouring pixels, docs/engine.md), double-buffered weight banks and double-buffered
    skip banks (block RAM) -> :class:`Sequencer` (pass loops, shadow-weight loads, pixel
    addresses with on-chip padding) -> :class:`SystolicArray` -> :class:`Accumulator` (two
    banks, read-modify-write; a first pass adds bias and, with ``layer.add``, a last pass the
    aligned skip pixel, docs/arithmetic.md §9) -> :class:`OutputUnit` (shift, ReLU, saturation,
    pooling, packing). The pixel metadata is delayed alongside the array so it meets the column sums at
    the accumulator. ``layer.in_unsigned``, ``layer.skip_unsigned`` and ``layer.out_unsigned``
    give the signedness of the input, skip and output tensors (docs/arithmetic.md §1, §12). The
    skip buffer holds ``2 * acc_depth`` pixels of ``cols`` W-bit lanes, one bank per weight
    bank; the accumulator hands a skip bank back to the loader once the tile that read it has
    its last pixel written. With ``layer.strip_rows`` the passes run strip by strip (docs/engine.md,
    "Strips of rows"), and the two accumulator banks alternate between strips.

    The layer must be one the driver accepts: nonzero sizes, a ``KH x KW`` kernel with
    ``1 <= KH, KW <= 15``, strides ``1 <= SH, SW <= 4`` (rows, columns), ``PAD_TOP < KH`` and
    ``PAD_LEFT < KW``, ``T_in*IN_H*IN_W <= in_depth``, ``T_in*KH*KW*rows <= wt_depth``, a
    computed map (``OUT_H x OUT_W``, with pooling cropped to even sizes) of at most
    ``acc_depth`` pixels (with ``layer.add`` the skip pixels of one tile fill at most one skip
    bank), with pooling an output of at least 2x2, with ``layer.sum_pool`` a 1x1 kernel of
    stride 1 without pooling, add or fold, with ``layer.fold_lanes`` (a folded job, docs/engine.md)
    one input tile, ``2 <= fold_taps``, ``fold_lanes * fold_taps <= rows``, ``kernel_w * fold_taps
    <= 16``, ``PAD_LEFT < kernel_w * fold_taps`` and ``IN_H*IN_W + fold_taps - 1 <= in_depth``,
    and with ``layer.add``
    skip shifts in ``[-(A-W-2), W+1]``, or ``[-(A-W-3), W+1]`` for an unsigned skip (larger
    ones are clamped, which changes nothing).
    """

    def __init__(self, *, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        self.config = config
        super().__init__({
            "layer": In(LayerConfigLayout),
            "start": In(1),
            "load_layer": In(LayerConfigLayout),
            "load_start": In(1),
            "load_idle": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "saturated": Out(32),
            "s_in": In(stream.Signature(STREAM_BITS)),
            "m_out": Out(stream.Signature(OUTPUT_WORD_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.loader = loader = Loader(config=cfg)
        m.submodules.sequencer = sequencer = Sequencer(config=cfg)
        m.submodules.array = array = SystolicArray(
            rows=cfg.rows, cols=cfg.cols, width=cfg.width, macs_per_dsp=cfg.macs_per_dsp)
        m.submodules.accumulator = accumulator = Accumulator(config=cfg)
        m.submodules.output = output = OutputUnit(config=cfg)
        m.submodules.input_buffer = input_buffer = InputBuffer(config=cfg)
        m.submodules.weight_banks = weight_banks = Memory(
            shape=cfg.cols * cfg.width, depth=2 * cfg.wt_depth, init=[])
        m.submodules.skip_banks = skip_banks = Memory(
            shape=cfg.cols * cfg.width, depth=2 * cfg.acc_depth, init=[])

        job_start = Signal()
        m.d.comb += job_start.eq(self.start & ~self.busy)
        with m.If(job_start):
            m.d.sync += self.busy.eq(1)
        with m.Elif(output.finished):
            m.d.sync += self.busy.eq(0)
        m.d.comb += self.done.eq(output.finished)

        for unit in (sequencer, accumulator, output):
            m.d.comb += unit.start.eq(job_start)
        for unit in (sequencer, output):
            m.d.comb += unit.layer.eq(self.layer)
        # The loader runs a job ahead: started on a job while the core still computes the one
        # before, it fills the free weight bank and stops at the job's input until its start
        # (an input loaded ahead goes to the input buffer's other end meanwhile).
        m.d.comb += [loader.start.eq(self.load_start), loader.layer.eq(self.load_layer),
                     loader.job_start.eq(job_start), self.load_idle.eq(loader.idle)]
        # The job's signedness (docs/arithmetic.md §12): the array extends input pixels, the
        # accumulator skip pixels, and the output unit reads ``layer.out_unsigned`` itself.
        m.d.comb += [accumulator.add.eq(self.layer.add), accumulator.skip_unsigned.eq(self.layer.skip_unsigned),
                     accumulator.sum_pool.eq(self.layer.sum_pool),
                     array.x_unsigned.eq(self.layer.in_unsigned)]

        wiring.connect(m, wiring.flipped(self.s_in), loader.s_in)
        wiring.connect(m, loader.in_wr, input_buffer.wr)
        wiring.connect(m, loader.wt_wr, weight_banks.write_port())
        wiring.connect(m, loader.skip_wr, skip_banks.write_port())
        wiring.connect(m, accumulator.skip_rd, skip_banks.read_port())
        wiring.connect(m, sequencer.in_rd, input_buffer.rd)
        wiring.connect(m, sequencer.wt_rd, weight_banks.read_port())
        wiring.connect(m, output.acc, accumulator.drain)
        wiring.connect(m, output.m_out, wiring.flipped(self.m_out))

        m.d.comb += [
            sequencer.first_wbank.eq(loader.first_bank),
            sequencer.hw.eq(loader.hw),
            sequencer.hw_valid.eq(loader.hw_valid),
            sequencer.in_tiles_done.eq(loader.in_tiles_done),
            sequencer.in_rows_done.eq(loader.in_rows_done),
            input_buffer.fold_lanes.eq(self.layer.fold_lanes),
            input_buffer.fold_taps.eq(self.layer.fold_taps),
            input_buffer.rd_mirror.eq(self.layer.in_mirror),
            sequencer.lane_offset.eq(input_buffer.lane_offset),
            sequencer.lane_unused.eq(input_buffer.lane_unused),
            sequencer.in_base.eq(input_buffer.base),
            sequencer.wt_avail.eq(loader.wt_avail),
            loader.wt_release.eq(sequencer.wt_release),
            sequencer.acc_busy.eq(accumulator.busy),
            accumulator.acquire.eq(sequencer.acquire),
            accumulator.acquire_bank.eq(sequencer.acquire_bank),
            accumulator.bias.eq(loader.bias[sequencer.bias_bank]),
            accumulator.shifts.eq(loader.shifts[sequencer.bias_bank]),
            accumulator.skip_shifts.eq(loader.skip_shifts[sequencer.bias_bank]),
            loader.skip_release.eq(accumulator.skip_release),
            sequencer.skip_ready.eq(loader.skip_ready),
            sequencer.skip_avail.eq(loader.skip_avail),
            array.x_in.eq(sequencer.x),
            array.swap_in.eq(sequencer.swap),
            array.w_in.eq(sequencer.w_row),
            array.w_shift.eq(sequencer.w_shift),
            accumulator.sums.eq(array.sums),
            self.saturated.eq(output.saturated),
        ]

        # The metadata of an issue cycle meets its column sums META_LEAD cycles early. Only the
        # valid bit is reset, so a reset never leaves stale slots that would write a bank.
        meta_delay = sequencer.X_LATENCY + array.latency - Accumulator.META_LEAD
        if meta_delay < Accumulator.ACQUIRE_TO_META:
            raise ValueError(f"a {cfg.rows}x{cfg.cols} array is too short for the accumulator's pipeline "
                             f"(metadata delay {meta_delay} < {Accumulator.ACQUIRE_TO_META})")
        meta = delay(m, sequencer.meta, meta_delay, name="meta")
        valid = delay(m, sequencer.meta.valid, meta_delay, name="meta_valid", reset_less=False)
        m.d.comb += [accumulator.meta.eq(meta), accumulator.meta.valid.eq(valid)]
        return m
