"""The engine's build parameters, register map, command format and memory layout: the single
source of truth.

The gateware (``radix_hw``) builds its AXI4-Lite register file from ``BUS_REGISTERS`` and decodes
commands by ``COMMAND_FIELDS``, the driver and the placement address registers, commands and
tensors through the same tables, and ``docs/registers.md`` and the command table of
``docs/engine.md`` are generated from them (``radix regs --markdown``; tests keep the files in
step). This module needs nothing beyond the standard library, so the on-board runtime imports it
as it is.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field

from .errors import InputError

ENGINE_ID = 0x52445831  # ASCII "RDX1"
STREAM_BITS = 64  # AXI4-Stream data width in both directions


SUPPORTED_WIDTHS = (8, 16)  # data widths W (docs/arithmetic.md §1)
ACC_HEADROOM_BITS = 16  # A = 2W + 16: exact sums of up to 2^16 - 1 products (docs/arithmetic.md §3)


def accumulator_width(width: int) -> int:
    """Accumulator width ``A = 2W + 16`` for data width ``width`` (docs/arithmetic.md §3)."""
    return 2 * width + ACC_HEADROOM_BITS


def array_shift_gap(rows: int) -> int:
    """Cycles from a pass's swap entering the systolic array until the next pass's weights may
    shift into its shadow registers: the swap wave's way down the ``rows`` rows (each column's
    weights enter skewed like its swap, ``radix_hw.array.SystolicArray``, which is built to it)."""
    return rows - 1


def data_shift_range(width: int) -> tuple[int, int]:
    """The data shifts the engine executes, ``[-W, A]`` (docs/arithmetic.md §5)."""
    return -width, accumulator_width(width)


def skip_shift_range(width: int, *, unsigned: bool = False) -> tuple[int, int]:
    """The skip shifts the engine executes, ``[-(A - W - 2) + u, W + 1]`` with ``u = 1`` for an
    unsigned skip tensor (docs/arithmetic.md §9): from ``W + 1`` up every skip of either range
    aligns to 0."""
    return -(accumulator_width(width) - width - 2) + int(unsigned), width + 1


def tensor_range(width: int, *, unsigned: bool = False) -> tuple[int, int]:
    """``[lo, hi]`` of a ``width``-bit tensor: ``[-2^(W-1), 2^(W-1) - 1]`` signed,
    ``[0, 2^W - 1]`` unsigned (docs/arithmetic.md §1)."""
    if unsigned:
        return 0, (1 << width) - 1
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def max_reduction(*, add: bool = False, unsigned_in: bool = False) -> int:
    """The largest ``K`` (products per output) a layer may have, ``2^(16 - u_x - a) - 1``: an
    unsigned main input and a residual add each cost one bit of headroom (docs/arithmetic.md §3)."""
    return (1 << (ACC_HEADROOM_BITS - int(unsigned_in) - int(add))) - 1


# Cycles between two passes' reads of one accumulator word: the accumulator writes a pixel
# three cycles after reading it (radix_hw.accumulator), and the next pass reads it after that.
ACC_RMW_CYCLES = 4


class EngineConfigError(InputError):
    """An engine build parameter is out of range."""


@dataclass(frozen=True)
class EngineConfig:
    """Build parameters of one engine (keyword-only, validated).

    Parameters
    ----------
    rows:
        Input-channel lanes of the systolic array (its height).
    cols:
        Output-channel lanes of the systolic array (its width); ``rows * cols`` multiply-accumulates
        per cycle. At W=8 two adjacent columns share one DSP48E1 (:attr:`macs_per_dsp`), so the
        default (``None``) is 24 at W=8 and 12 at W=16: either way 192 DSP48E1s of the xc7z020's 220,
        and ``cols * W`` a multiple of 64, so every output tile starts on a word of a tensor in
        memory (docs/engine.md, "Tensors in memory"; 22 columns would leave holes of 2 lanes per
        tile that every reader must skip).
    width:
        Data width W of activations and weights, 8 or 16 (docs/arithmetic.md §1).
    in_depth:
        Input buffer depth in pixel groups (one pixel of ``rows`` channels each).
    wt_depth:
        Weight buffer depth per bank in rows of ``cols`` weights.
    acc_depth:
        Accumulator buffer depth per bank: output pixels (before pooling) per tile.
    """

    rows: int = field(default=16, kw_only=True)
    cols: int = field(default=None, kw_only=True)  # type: ignore[assignment]  # resolved in __post_init__
    width: int = field(default=8, kw_only=True)
    in_depth: int = field(default=4096, kw_only=True)
    wt_depth: int = field(default=4608, kw_only=True)
    acc_depth: int = field(default=1024, kw_only=True)

    def __post_init__(self):
        if self.cols is None:
            object.__setattr__(self, "cols", 24 if self.width == 8 else 12)
        for name, lo, hi in (
            ("rows", 1, 64),
            ("cols", 1, 64),
            ("in_depth", 1, 1 << 20),
            ("wt_depth", 1, 1 << 20),
            ("acc_depth", 1, 1 << 20),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise EngineConfigError(f"engine parameter {name}={value!r} outside {lo}..{hi}")
        if self.width not in SUPPORTED_WIDTHS:
            raise EngineConfigError(f"engine parameter width={self.width!r}: choose one of {SUPPORTED_WIDTHS}")

    @property
    def acc_width(self) -> int:
        """Accumulator width ``A = 2W + 16`` (docs/arithmetic.md §3)."""
        return accumulator_width(self.width)

    @property
    def macs_per_dsp(self) -> int:
        """Multiply-accumulates per DSP48E1 per cycle: 2 at W=8 (two 8x8 products packed into one
        25x18 multiply, radix_hw.pe.PackedPE), 1 at W=16."""
        return 2 if self.width == 8 else 1

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per clock cycle: one per array cell."""
        return self.rows * self.cols

    @property
    def dsps(self) -> int:
        """DSP48E1s of the systolic array (an odd last column of a packed row uses a whole one)."""
        return self.rows * -(-self.cols // self.macs_per_dsp)

    @property
    def in_words(self) -> int:
        """64-bit stream words per input pixel group (``rows`` lanes of W bits)."""
        return math.ceil(self.rows * self.width / STREAM_BITS)

    @property
    def wt_words(self) -> int:
        """64-bit stream words per weight row, and per output pixel (``cols`` lanes of W bits)."""
        return math.ceil(self.cols * self.width / STREAM_BITS)

    @property
    def shift_gap(self) -> int:
        """:func:`array_shift_gap` of this engine's rows."""
        return array_shift_gap(self.rows)

    @property
    def min_pass(self) -> int:
        """Shortest pass in cycles: the swap wave's :attr:`shift_gap`, the ``rows`` shifts of the
        next pass's weights and the hand-over (``2 * rows``), and the accumulator's
        read-modify-write needs ``ACC_RMW_CYCLES`` between passes (a 1x1 array)."""
        return max(ACC_RMW_CYCLES, self.shift_gap + self.rows + 1)

    @property
    def lanes_per_word(self) -> int:
        """W-bit lanes in one 64-bit bus word."""
        return STREAM_BITS // self.width

    @property
    def tile_lanes(self) -> int:
        """Lanes one output-channel tile occupies in a tensor in memory: ``wt_words`` whole words,
        so every tile starts on a word (``cols`` when ``cols * W`` is a multiple of 64)."""
        return self.wt_words * self.lanes_per_word

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_CONFIG = EngineConfig()


@dataclass(frozen=True)
class Field:
    """A bit field of a register."""

    name: str
    offset: int
    width: int
    doc: str


@dataclass(frozen=True)
class Register:
    """One 32-bit AXI4-Lite register.

    ``access`` is ``"ro"`` (read-only), ``"cfg"`` (read/write, 32 bits), ``"ctrl"`` (CTRL: START
    and RESET are write-1 pulses, IRQ_EN holds) or ``"status"`` (DONE and ERROR are sticky, write
    1 to clear). ``build`` names the :class:`EngineConfig` attribute a read-only build register
    reports; a read-only register with neither ``build`` nor ``value`` is live.
    """

    name: str
    offset: int
    access: str
    doc: str
    fields: tuple[Field, ...] = ()
    build: str | None = None
    value: int | None = None


# The convolution core's job descriptor (radix_hw.layout.LayerConfigLayout): the command fields
# the core reads, at the widths it holds them (a command's wider fields are checked first).
# Kernels KH x KW and strides SH x SW the engine runs, per dimension (docs/arithmetic.md §7): up
# to 15 taps takes the 10x4 kernel of MLPerf Tiny's keyword spotting network; padding lies below
# the kernel, so it fits the kernel's bits.
KERNEL_RANGE = (1, 15)
STRIDE_RANGE = (1, 4)
KERNEL_BITS = KERNEL_RANGE[1].bit_length()
STRIDE_BITS = STRIDE_RANGE[1].bit_length()
# A folded job's kernel covers at most this many columns (kernel_w * fold_taps): its tap column
# offsets then fit the sequencer's KERNEL_BITS + 1 signed bits.
FOLD_SPAN = 1 << KERNEL_BITS
# A job's passes run strip-major over strips of at most this many computed rows (docs/engine.md,
# "Strips of rows"): a 4-bit field, 0 for the whole map.
STRIP_ROWS_BITS = 4
CORE_LAYER_FIELDS = {
    "in_ch": 16, "in_h": 16, "in_w": 16, "out_ch": 16, "out_h": 16, "out_w": 16,
    "kernel_h": KERNEL_BITS, "kernel_w": KERNEL_BITS, "stride_h": STRIDE_BITS, "stride_w": STRIDE_BITS,
    "pad_top": KERNEL_BITS, "pad_left": KERNEL_BITS,
    "relu": 1, "pool": 1, "add": 1, "in_unsigned": 1, "skip_unsigned": 1, "out_unsigned": 1, "sum_pool": 1,
    "fold_taps": KERNEL_BITS, "fold_lanes": 8, "narrow_in": 1, "strip_rows": STRIP_ROWS_BITS,
    "weights_first": 1, "input_ahead": 1,
    # not a command field: the command unit derives it (docs/engine.md, "The input loads ahead")
    "in_mirror": 1,
}
FIELD_MAX = (1 << 16) - 1  # the largest size a command's 16-bit fields hold


# The build parameters, read-only, at the same offsets in every engine version.
BUILD_REGISTERS: tuple[Register, ...] = (
    Register("ROWS", 0x008, "ro", "Array rows (input-channel lanes)", build="rows"),
    Register("COLS", 0x00C, "ro", "Array columns (output-channel lanes)", build="cols"),
    Register("DATA_WIDTH", 0x010, "ro", "Data width W in bits", build="width"),
    Register("ACC_WIDTH", 0x014, "ro", "Accumulator width A in bits", build="acc_width"),
    Register("IN_DEPTH", 0x018, "ro", "Input buffer depth in pixel groups", build="in_depth"),
    Register("WT_DEPTH", 0x01C, "ro", "Weight buffer depth per bank in rows", build="wt_depth"),
    Register("ACC_DEPTH", 0x020, "ro", "Accumulator depth per bank in output pixels", build="acc_depth"),
)


def build_value(reg: Register, config: EngineConfig) -> int | None:
    """The constant a read-only register reports for ``config`` (None for live registers)."""
    if reg.value is not None:
        return reg.value
    if reg.build is not None:
        return int(getattr(config, reg.build))
    return None


def written_map(out_h: int, out_w: int, *, pool: bool, sum_pool: bool) -> tuple[int, int]:
    """The output rows and columns a job writes: the computed map halved by 2x2 pooling, or one
    pixel when ``sum_pool`` sums the whole computed map."""
    if sum_pool:
        return 1, 1
    comp_h, comp_w = computed_map(out_h, out_w, pool)
    return (comp_h // 2, comp_w // 2) if pool else (comp_h, comp_w)


def pair(value, what: str = "size") -> tuple[int, int]:
    """``(vertical, horizontal)`` from one int (square) or a 2-sequence: kernels ``KH x KW`` and
    strides ``SH x SW`` are rectangular (docs/arithmetic.md §7)."""
    if isinstance(value, numbers.Integral):
        return (int(value), int(value))
    values = tuple(int(v) for v in value)
    if len(values) != 2:
        raise ValueError(f"{what} {value!r}: give one value or (vertical, horizontal)")
    return values


def computed_map(out_h: int, out_w: int, pool: bool) -> tuple[int, int]:
    """The convolution output a job computes: with 2x2 pooling an odd last row/column is never
    computed (docs/arithmetic.md §6). Skip pixels and accumulator addresses cover this map."""
    if pool:
        return out_h - out_h % 2, out_w - out_w % 2
    return out_h, out_w


def _markdown_table(registers) -> str:
    lines = [
        "| offset | name | access | description |",
        "| --- | --- | --- | --- |",
    ]
    for reg in registers:
        doc = reg.doc
        if reg.fields:
            doc += ": " + "; ".join(f"bit {f.offset} `{f.name}` {f.doc}" for f in reg.fields)
        lines.append(f"| 0x{reg.offset:03X} | `{reg.name}` | {reg.access} | {doc} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Engine version 13: the engine as a bus master (docs/engine.md, "Memory and commands"); version 12
# loaded a job's input only once the job before was done (no `input_ahead`), version 11
# streamed a first output tile's weight rows interleaved with its input tiles always (no
# `weights_first`) and read input rows in_w pixels apart (no `in_row_pitch`), version 10 sent a last output tile's weight rows and skip pixels as whole rows of wt_words words, version 9
# ran a job's passes tap-major over the whole map (no `strip_rows`), version 8 had no narrow
# inputs (`narrow_in`), version 7 no folded jobs (`fold_taps`, `fold_lanes`), version 6 square
# kernels and strides only (`kernel`, `stride`), version 5 no summed jobs (`sum_pool`).
#
# The tables below are the one definition of the bus-master engine's registers, its command
# format and the layout of tensors in memory; the gateware (radix_hw.bus_engine), the driver's
# memory placement (radix.placement), the reference executor (radix.command_exec) and
# docs/registers.md all take them from here.
# ---------------------------------------------------------------------------------------------

# 5: the engine fetches a command list and its data over an AXI master; 6: summed jobs; 7: rectangular
# kernels and strides (kernel_h/kernel_w, stride_h/stride_w); 8: kernel columns folded into the rows
# of a few-channel layer (fold_taps, fold_lanes); 9: narrow input tensors, one word a pixel (narrow_in);
# 10: passes strip-major over strips of output rows (strip_rows); 11: a last output tile's weight rows
# and skip pixels carry only the words holding its channels (the weight blocks' layout changed);
# 12: a job's first output tile may stream all its weight rows before its input tiles (weights_first),
# and its input rows may lie further apart than its width (in_row_pitch); 13: a job's input may load
# while the job before computes (input_ahead), row by row as the job before writes it (input_follows)
BUS_ENGINE_VERSION = 13
BUS_ADDR_BITS = 32  # byte addresses on the AXI master
BUS_BYTES = STREAM_BITS // 8  # bytes per AXI master beat (64-bit data)
MAX_BURST_BEATS = 16  # the PS7 HP ports are AXI3 inside: at most 16 beats per burst
BURST_BOUNDARY = 4096  # no burst crosses a 4 KB boundary (AXI)
WRITE_BURSTS = 16  # write bursts the engine keeps in flight (radix_hw.bus_write.WriteMaster)
# Cycles from a bus request to the memory seeing it, in the simulation's memory model
# (radix_sim.bus_build) and in the cycle model (radix.cycle_model); the bus-master issue asked
# for at least 30.
MEMORY_LATENCY = 32
COMMAND_WORDS = 8  # 64-bit words per command; commands are 64-byte aligned, one burst each
COMMAND_BYTES = COMMAND_WORDS * BUS_BYTES
OPCODE_CONV = 1  # a convolution job (a fully connected layer is a 1x1 one)

BUS_REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x000, "ro", "Engine identifier, ASCII 'RDX1'", value=ENGINE_ID),
    Register("VERSION", 0x004, "ro", "Register map, command and memory format version", value=BUS_ENGINE_VERSION),
    *BUILD_REGISTERS,
    Register(
        "CTRL",
        0x040,
        "ctrl",
        "Control",
        fields=(
            Field("START", 0, 1, "Write 1 to run the command list (CMD_BASE, CMD_COUNT) inside the window (WIN_BASE, WIN_SIZE)"),
            Field("IRQ_EN", 1, 1, "Raise `interrupt` while STATUS.DONE or STATUS.ERROR is set"),
            Field("RESET", 2, 1, "Write 1 to abort a running list once its bursts on the bus are complete, and return to idle"),
        ),
    ),
    Register(
        "STATUS",
        0x044,
        "status",
        "Status",
        fields=(
            Field("BUSY", 0, 1, "A command list is running (or a RESET is completing its bursts)"),
            Field("DONE", 1, 1, "The list finished: its last output write has its response (sticky; write 1 to clear)"),
            Field("ERROR", 2, 1, "The list stopped on an error, see ERR_CODE, ERR_INDEX, ERR_ADDR (sticky; write 1 to clear)"),
        ),
    ),
    Register("CYCLES", 0x048, "ro", "Clock cycles from START to DONE (or ERROR)"),
    Register("SATURATED", 0x04C, "ro", "Outputs saturated by the list so far (docs/arithmetic.md §5)"),
    Register("CMD_DONE", 0x050, "ro", "Commands completed by the running or last list"),
    Register("ERR_CODE", 0x054, "ro", "Why the list stopped: see ERROR_CODES in docs/engine.md (0: no error)"),
    Register("ERR_INDEX", 0x058, "ro", "Index of the command that stopped the list"),
    Register("ERR_ADDR", 0x05C, "ro", "The byte address at fault (ERR_CODE WINDOW, BUS, ALIGN), else 0"),
    Register("BEATS_READ", 0x060, "ro", "64-bit beats read by the running or last list"),
    Register("BEATS_WRITTEN", 0x064, "ro", "64-bit beats written by the running or last list"),
    Register("CMD_BASE", 0x080, "cfg", "Byte address of command 0 (64-byte aligned)"),
    Register("CMD_COUNT", 0x084, "cfg", "Commands in the list"),
    Register("WIN_BASE", 0x088, "cfg", "Lowest byte address the engine may access (8-byte aligned)"),
    Register("WIN_SIZE", 0x08C, "cfg", "Bytes from WIN_BASE the engine may access (a multiple of 8)"),
)

# ERR_CODE values: why a command list stopped (docs/engine.md).
ERROR_CODES = {
    1: ("WINDOW", "a burst would reach outside [WIN_BASE, WIN_BASE + WIN_SIZE); ERR_ADDR is its first byte"),
    2: ("BUS", "the memory answered SLVERR or DECERR; ERR_ADDR is the burst's first byte"),
    3: ("OPCODE", "the command's opcode is not one this engine knows"),
    4: ("LIMIT", "a size is zero or over the build's limits (buffers, kernel, stride, padding)"),
    5: ("BAND", "a band, tile or channel range lies outside its tensor"),
    6: ("ALIGN", "CMD_BASE is not 64-byte aligned, or a tensor or weight address not 8-byte aligned"),
}
ERROR_CODE = {name: code for code, (name, _) in ERROR_CODES.items()}


@dataclass(frozen=True)
class CommandField:
    """A field of a command: ``word`` (0..COMMAND_WORDS-1), ``lsb`` and ``width`` in that 64-bit word."""

    name: str
    word: int
    lsb: int
    width: int
    doc: str


COMMAND_FIELDS: tuple[CommandField, ...] = (
    CommandField("opcode", 0, 0, 8, "1: convolution job"),
    CommandField("relu", 0, 8, 1, "Fused ReLU"),
    CommandField("pool", 0, 9, 1, "2x2 stride-2 max pooling"),
    CommandField("add", 0, 10, 1, "Residual add of the skip tensor (docs/arithmetic.md §9)"),
    CommandField("in_unsigned", 0, 11, 1, "The input tensor is unsigned (docs/arithmetic.md §12)"),
    CommandField("skip_unsigned", 0, 12, 1, "The skip tensor is unsigned"),
    CommandField("out_unsigned", 0, 13, 1, "The output tensor is unsigned"),
    CommandField("sync", 0, 14, 1, "Read no input or skip pixel before every earlier command's writes have their responses"),
    CommandField("stats", 0, 15, 1, "Write the stats word to stat_addr when the command completes"),
    CommandField("kernel_h", 0, 16, 4, f"Kernel rows KH ({KERNEL_RANGE[0]}..{KERNEL_RANGE[1]})"),
    CommandField("stride_h", 0, 20, 4, f"Vertical stride SH ({STRIDE_RANGE[0]}..{STRIDE_RANGE[1]})"),
    CommandField("pad_top", 0, 24, 4, "Zero rows above the band (0..KH-1)"),
    CommandField("pad_left", 0, 28, 4, "Zero columns left of the map (0..KW-1)"),
    CommandField("in_ch", 0, 32, 16, "Input lanes C_in (the input tensor's lanes, a multiple of rows)"),
    CommandField("out_ch", 0, 48, 16, "Output channels C_out"),
    CommandField("in_h", 1, 0, 16, "Input rows of the band"),
    CommandField("in_w", 1, 16, 16, "Input width (the tensor's width)"),
    CommandField("out_h", 1, 32, 16, "Convolution output rows of the band (before pooling)"),
    CommandField("out_w", 1, 48, 16, "Convolution output width (before pooling)"),
    CommandField("in_addr", 2, 0, 32, "Byte address of the input tensor"),
    CommandField("in_y0", 2, 32, 16, "First input row of the band"),
    CommandField("in_height", 2, 48, 16, "Rows of the input tensor"),
    CommandField("in_pixel_words", 3, 0, 16, "Words per pixel of the input tensor"),
    CommandField("out_pixel_words", 3, 16, 16, "Words per pixel of the output tensor"),
    CommandField("out_word_offset", 3, 32, 16, "First word of this layer's channels in an output pixel (a concatenation's part)"),
    CommandField("out_y0", 3, 48, 16, "First output row (after pooling) the band writes"),
    CommandField("out_addr", 4, 0, 32, "Byte address of the output tensor"),
    CommandField("out_height", 4, 32, 16, "Rows of the output tensor"),
    CommandField("skip_pixel_words", 4, 48, 16, "Words per pixel of the skip tensor"),
    CommandField("skip_addr", 5, 0, 32, "Byte address of the skip tensor"),
    CommandField("skip_y0", 5, 32, 16, "First skip row the band reads"),
    CommandField("skip_height", 5, 48, 16, "Rows of the skip tensor"),
    CommandField("wt_addr", 6, 0, 32, "Byte address of the job's bias words and weight rows"),
    CommandField("skip_width", 6, 32, 16, "Pixels per row of the skip tensor"),
    CommandField("sum_pool", 6, 48, 1, "Sum all OUT_H x OUT_W computed pixels into one output pixel (a global average "
                 "pool folded into a fully connected layer, docs/arithmetic.md §10): kernel 1x1, stride 1, no pool or add"),
    CommandField("narrow_in", 6, 49, 1, "The input tensor is narrow (docs/engine.md, \"Tensors in memory\"): its one "
                 "input tile is the first word of each pixel, the tile's other lanes zero"),
    CommandField("weights_first", 6, 50, 1, "The first output tile's weight rows, of every input tile, precede its "
                 "input tiles in the stream (docs/engine.md, \"Weights first\"), which then follow one another"),
    CommandField("input_ahead", 6, 51, 1, "The job's input loads while the job before computes (docs/engine.md, "
                 "\"The input loads ahead\"): it reads no input the job before writes, and with sync its input waits only "
                 "for the commands before that one; neither job folded, their input bands within IN_DEPTH together"),
    CommandField("input_follows", 6, 52, 1, "With input_ahead: the job before writes the job's input; each input row is "
                 "read once the job before's writes below the row's end have their responses (docs/engine.md, \"The "
                 "input follows the job before\")"),
    CommandField("stat_addr", 7, 0, 32, "Byte address of the stats word (with stats)"),
    CommandField("kernel_w", 7, 32, 4, f"Kernel columns KW ({KERNEL_RANGE[0]}..{KERNEL_RANGE[1]})"),
    CommandField("stride_w", 7, 36, 4, f"Horizontal stride SW ({STRIDE_RANGE[0]}..{STRIDE_RANGE[1]})"),
    CommandField("fold_taps", 7, 40, 4, "With fold_lanes: kernel columns F folded into the rows, a tap column step of F "
                 f"(2..15, F * fold_lanes <= rows, kernel_w * F <= {FOLD_SPAN})"),
    CommandField("fold_lanes", 7, 48, 8, "Input channels C of a folded job (docs/engine.md, \"Few-channel layers\"): "
                 "lane g*C + c holds channel c of the pixel g columns right; 0: no fold"),
    CommandField("strip_rows", 7, 56, STRIP_ROWS_BITS, "Computed rows per strip: the passes run strip by strip, "
                 "each strip's taps before the next strip's (docs/engine.md, \"Strips of rows\"); 0: one strip, the "
                 "whole map; 0 with sum_pool"),
    CommandField("in_row_pitch", 7, 60, 4, "Input rows in memory are in_row_pitch * in_w pixels apart, of which the "
                 "band reads each row's first in_w (a sampling view, docs/engine.md, \"Strided 1x1 convolutions\"); "
                 "0 or 1: in_w apart"),
)
COMMAND_FIELD = {f.name: f for f in COMMAND_FIELDS}
STATS_CYCLES_BITS = 32  # stats word: bits 0..31 cycles from START to the command's end, 32..63 its saturations


def encode_command(**values: int) -> list[int]:
    """A command's ``COMMAND_WORDS`` 64-bit words from field values (missing fields are 0)."""
    words = [0] * COMMAND_WORDS
    for name, value in values.items():
        try:
            fld = COMMAND_FIELD[name]
        except KeyError:
            raise KeyError(f"no command field {name!r}; known: {', '.join(COMMAND_FIELD)}") from None
        value = int(value)
        if not 0 <= value < 1 << fld.width:
            raise ValueError(f"command field {name}={value} does not fit {fld.width} bits")
        words[fld.word] |= value << fld.lsb
    return words


def decode_command(words) -> dict[str, int]:
    """Inverse of :func:`encode_command`."""
    words = [int(w) for w in words]
    if len(words) != COMMAND_WORDS:
        raise ValueError(f"a command is {COMMAND_WORDS} words, got {len(words)}")
    return {f.name: (words[f.word] >> f.lsb) & ((1 << f.width) - 1) for f in COMMAND_FIELDS}


def _check_command_fields() -> None:
    taken: dict[tuple[int, int], str] = {}
    for fld in COMMAND_FIELDS:
        if not 0 <= fld.word < COMMAND_WORDS or fld.lsb + fld.width > STREAM_BITS:
            raise ValueError(f"command field {fld.name} is outside the command")
        for bit in range(fld.lsb, fld.lsb + fld.width):
            if (fld.word, bit) in taken:
                raise ValueError(f"command fields {taken[fld.word, bit]} and {fld.name} overlap")
            taken[fld.word, bit] = fld.name


_check_command_fields()


def canonical_lane(channel: int, config: EngineConfig) -> int:
    """The lane of channel ``channel`` in a tensor in memory: output tile ``channel // cols`` starts
    at lane ``(channel // cols) * tile_lanes``, so an engine's output tile is whole words."""
    return (channel // config.cols) * config.tile_lanes + channel % config.cols


def tensor_lanes(channels: int, config: EngineConfig) -> int:
    """Lanes a tensor of ``channels`` channels spans in memory (up to its last channel's lane)."""
    return canonical_lane(channels - 1, config) + 1


def pixel_words(lanes: int, config: EngineConfig) -> int:
    """Words per pixel of a tensor whose channels span ``lanes`` lanes: whole input tiles, so an
    input tile's ``in_words`` words are always inside the pixel (a narrow tensor, which
    :func:`can_be_narrow` allows, has one word instead)."""
    words = math.ceil(lanes / config.lanes_per_word)
    return math.ceil(words / config.in_words) * config.in_words


def can_be_narrow(lanes: int, config: EngineConfig) -> bool:
    """A tensor whose channels span ``lanes`` lanes may be stored narrow, one word a pixel (a
    layer reading it then streams that word per pixel, ``narrow_in``, instead of an input tile of
    ``in_words`` words): its lanes fit one word and an input tile is more than one."""
    return lanes <= config.lanes_per_word and config.in_words > 1


def input_group_words(config: EngineConfig, *, narrow: bool = False) -> int:
    """Words the engine reads per input pixel group: an input tile's ``in_words``, one for a narrow input."""
    return 1 if narrow else config.in_words


def input_band_groups(fields: dict, config: EngineConfig) -> int:
    """The input buffer's pixel groups a job's input takes (its input tiles' pixels; a folded job's
    ``fold_taps - 1`` more), from its command ``fields`` by name."""
    groups = -(-fields["in_ch"] // config.rows) * fields["in_h"] * fields["in_w"]
    return groups + (fields["fold_taps"] - 1 if fields["fold_lanes"] else 0)


def bus_markdown_table() -> str:
    """The register table of the bus-master engine (docs/registers.md)."""
    return _markdown_table(BUS_REGISTERS)


def command_markdown_table() -> str:
    """The command format table (docs/engine.md)."""
    lines = ["| word | bits | field | meaning |", "| --- | --- | --- | --- |"]
    for fld in COMMAND_FIELDS:
        bits = f"{fld.lsb}" if fld.width == 1 else f"{fld.lsb + fld.width - 1}..{fld.lsb}"
        lines.append(f"| {fld.word} | {bits} | `{fld.name}` | {fld.doc} |")
    return "\n".join(lines) + "\n"


BUS_REGISTER_BY_NAME = {reg.name: reg for reg in BUS_REGISTERS}


def bus_register(name: str) -> Register:
    """A register of the bus-master engine by name, with an error naming the unknown register."""
    try:
        return BUS_REGISTER_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no bus engine register {name!r}; known: {', '.join(BUS_REGISTER_BY_NAME)}") from None


def field_mask_of(register_name: str, field_name: str, registers: tuple[Register, ...] = BUS_REGISTERS) -> int:
    """The bit mask of a field of a register of ``registers`` (the bus-master engine's by default)."""
    by_name = {reg.name: reg for reg in registers}
    if register_name not in by_name:
        raise KeyError(f"no register {register_name!r}")
    for fld in by_name[register_name].fields:
        if fld.name == field_name:
            return ((1 << fld.width) - 1) << fld.offset
    raise KeyError(f"register {register_name} has no field {field_name!r}")
