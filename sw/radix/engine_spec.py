"""The engine's build parameters and register map: the single source of truth.

The gateware (``radix_hw``) builds its AXI4-Lite register file from ``REGISTERS``, the driver
addresses registers through the same table, and ``docs/registers.md`` is generated from it
(``radix regs --markdown``; a test keeps the file in step). This module needs nothing beyond the
standard library, so the on-board runtime imports it as it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import InputError

ENGINE_ID = 0x52445831  # ASCII "RDX1"
ENGINE_VERSION = 4  # bump when the register map, the stream format or the arithmetic changes (4: unsigned tensors)
STREAM_BITS = 64  # AXI4-Stream data width in both directions


SUPPORTED_WIDTHS = (8, 16)  # data widths W (docs/arithmetic.md §1)
ACC_HEADROOM_BITS = 16  # A = 2W + 16: exact sums of up to 2^16 - 1 products (docs/arithmetic.md §3)


def accumulator_width(width: int) -> int:
    """Accumulator width ``A = 2W + 16`` for data width ``width`` (docs/arithmetic.md §3)."""
    return 2 * width + ACC_HEADROOM_BITS


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
        default (``None``) is 22 at W=8 and 11 at W=16: either way 176 DSP48E1s of the xc7z020's 220.
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
            object.__setattr__(self, "cols", 22 if self.width == 8 else 11)
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
    def min_pass(self) -> int:
        """Shortest pass in cycles: the shadow weights of the next pass load behind the swap wave,
        and the accumulator's read-modify-write needs 3 cycles between passes (a 1x1 array)."""
        return max(3, 2 * self.rows + self.cols - 1)

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

    ``access`` is ``"ro"`` (read-only), ``"rw"`` (read/write) or ``"ctrl"`` (CTRL: START is a
    write-1 pulse, IRQ_EN holds) or ``"status"`` (DONE is sticky, write 1 to clear).
    ``build`` names the :class:`EngineConfig` attribute a read-only build register reports.
    ``bits`` is how many low bits a ``rw`` register without fields holds (the gateware's layer
    descriptor, ``radix_hw.layout.LayerConfigLayout``, is made from these widths and the fields).
    """

    name: str
    offset: int
    access: str
    doc: str
    fields: tuple[Field, ...] = ()
    build: str | None = None
    value: int | None = None
    bits: int | None = None


REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x000, "ro", "Engine identifier, ASCII 'RDX1'", value=ENGINE_ID),
    Register("VERSION", 0x004, "ro", "Register map and stream format version", value=ENGINE_VERSION),
    Register("ROWS", 0x008, "ro", "Array rows (input-channel lanes)", build="rows"),
    Register("COLS", 0x00C, "ro", "Array columns (output-channel lanes)", build="cols"),
    Register("DATA_WIDTH", 0x010, "ro", "Data width W in bits", build="width"),
    Register("ACC_WIDTH", 0x014, "ro", "Accumulator width A in bits", build="acc_width"),
    Register("IN_DEPTH", 0x018, "ro", "Input buffer depth in pixel groups", build="in_depth"),
    Register("WT_DEPTH", 0x01C, "ro", "Weight buffer depth per bank in rows", build="wt_depth"),
    Register("ACC_DEPTH", 0x020, "ro", "Accumulator depth per bank in output pixels", build="acc_depth"),
    Register(
        "CTRL",
        0x040,
        "ctrl",
        "Control",
        fields=(
            Field("START", 0, 1, "Write 1 to start a job with the layer registers below"),
            Field("IRQ_EN", 1, 1, "Raise `interrupt` while STATUS.DONE is set"),
            Field("RESET", 2, 1, "Write 1 to abort any job and return the engine to idle (layer registers keep their values)"),
        ),
    ),
    Register(
        "STATUS",
        0x044,
        "status",
        "Status",
        fields=(
            Field("BUSY", 0, 1, "A job is running"),
            Field("DONE", 1, 1, "The last job finished (sticky; write 1 to clear)"),
        ),
    ),
    Register("CYCLES", 0x048, "ro", "Clock cycles from START to the job's last output word"),
    Register("SATURATED", 0x04C, "ro", "Outputs saturated in the last job (docs/arithmetic.md §5)"),
    Register("IN_CH", 0x080, "rw", "Input channels C_in", bits=16),
    Register("IN_H", 0x084, "rw", "Input height of the tile as sent", bits=16),
    Register("IN_W", 0x088, "rw", "Input width of the tile as sent", bits=16),
    Register("OUT_CH", 0x08C, "rw", "Output channels C_out", bits=16),
    Register("OUT_H", 0x090, "rw", "Convolution output height (before pooling)", bits=16),
    Register("OUT_W", 0x094, "rw", "Convolution output width (before pooling)", bits=16),
    Register("KERNEL", 0x098, "rw", "Kernel size k (1..7)", bits=3),
    Register("STRIDE", 0x09C, "rw", "Stride S (1..4)", bits=3),
    Register("PAD_TOP", 0x0A0, "rw", "Zero rows above the tile (0..k-1)", bits=3),
    Register("PAD_LEFT", 0x0A4, "rw", "Zero columns left of the tile (0..k-1)", bits=3),
    Register(
        "FLAGS",
        0x0A8,
        "rw",
        "Layer options",
        fields=(
            Field("RELU", 0, 1, "Fused ReLU"),
            Field("POOL", 1, 1, "2x2 stride-2 max pooling"),
            Field("ADD", 2, 1, "Residual add: a skip tensor streamed per output tile joins the accumulator (docs/arithmetic.md §9)"),
            Field("IN_UNSIGNED", 3, 1, "The main input is unsigned, 0..2^W-1: its pixels are zero-extended, else sign-extended (docs/arithmetic.md §1, §12)"),
            Field("SKIP_UNSIGNED", 4, 1, "The skip tensor is unsigned: its pixels are zero-extended (docs/arithmetic.md §9)"),
            Field("OUT_UNSIGNED", 5, 1, "The output is unsigned: saturated to 0..2^W-1 and pooled as unsigned (docs/arithmetic.md §5, §6)"),
        ),
    ),
)

REGISTER_BY_NAME = {reg.name: reg for reg in REGISTERS}
LAYER_REGISTERS = tuple(reg.name for reg in REGISTERS if reg.access == "rw")


def layer_fields() -> dict[str, int]:
    """The layer descriptor's fields and widths, in register order: a ``rw`` register without
    fields is one field named after it (lower case), FLAGS contributes one field per bit."""
    out = {}
    for reg in REGISTERS:
        if reg.access != "rw":
            continue
        if reg.fields:
            out.update({f.name.lower(): f.width for f in reg.fields})
        else:
            out[reg.name.lower()] = reg.bits
    return out


def register_max(name: str) -> int:
    """The largest value a ``rw`` register without fields holds."""
    return (1 << register(name).bits) - 1


def register(name: str) -> Register:
    """Look a register up by name, with an error naming the unknown register."""
    try:
        return REGISTER_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no engine register {name!r}; known: {', '.join(REGISTER_BY_NAME)}") from None


def field_mask(register_name: str, field_name: str) -> int:
    """The bit mask of a field, e.g. ``field_mask("STATUS", "DONE")``."""
    for fld in register(register_name).fields:
        if fld.name == field_name:
            return ((1 << fld.width) - 1) << fld.offset
    raise KeyError(f"register {register_name} has no field {field_name!r}")


def build_value(reg: Register, config: EngineConfig) -> int | None:
    """The constant a read-only register reports for ``config`` (None for live registers)."""
    if reg.value is not None:
        return reg.value
    if reg.build is not None:
        return int(getattr(config, reg.build))
    return None


def computed_map(out_h: int, out_w: int, pool: bool) -> tuple[int, int]:
    """The convolution output a job computes: with 2x2 pooling an odd last row/column is never
    computed (docs/arithmetic.md §6). Skip pixels and accumulator addresses cover this map."""
    if pool:
        return out_h - out_h % 2, out_w - out_w % 2
    return out_h, out_w


def markdown_table() -> str:
    """The register table of docs/registers.md."""
    lines = [
        "| offset | name | access | description |",
        "| --- | --- | --- | --- |",
    ]
    for reg in REGISTERS:
        doc = reg.doc
        if reg.fields:
            doc += ": " + "; ".join(f"bit {f.offset} `{f.name}` {f.doc}" for f in reg.fields)
        if reg.bits is not None:
            doc += f" ({reg.bits} bits)"
        lines.append(f"| 0x{reg.offset:03X} | `{reg.name}` | {reg.access} | {doc} |")
    return "\n".join(lines) + "\n"
