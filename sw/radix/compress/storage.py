"""Deep Compression storage of one tensor: codebook indices, sparse relative indices and Huffman
coding (Han, Mao and Dally, ICLR 2016, section 4), as real bytes (numpy only: the board decodes them).

:func:`encode` tries every format below, with fixed-width streams and (``huffman=True``) with
Huffman-coded ones, and returns the smallest blob; :func:`decode` inverts it exactly. Values are
float32 (a float model's weights) or integers (a program's W-bit weights).

Formats:

``raw``
    every element's value, dense (float32, or the smallest of int8/int16/int32 holding them all);
``index``
    a codebook of the tensor's distinct values (zero included when present) and, for every
    element, its codebook index: ``ceil(log2 K)`` bits, or a Huffman code;
``sparse``
    only the nonzero elements, each as a *relative index* (the number of zeros since the previous
    nonzero) in ``b`` bits, ``b`` = 1..8 chosen per tensor, and its value (raw, or a codebook
    index). A gap longer than ``2^b - 2`` is written as escape symbols ``2^b - 1``, each meaning
    "``2^b - 1`` more zeros, no value", then the remainder (the paper pads a filler zero *with* a
    value instead; the escape saves that value's index). With Huffman coding, the gaps and the
    indices are Huffman-coded streams, each with its own code.

Huffman codes are canonical and at most :data:`MAX_CODE_BITS` bits long; a code is stored as one
4-bit code length per symbol. Blob layout, little-endian, counts as LEB128 varints::

    u8 format (0 raw, 1 index, 2 sparse)   u8 value type (0 float32, 1 int8, 2 int16, 3 int32)
    u8 flags (bit 0: Huffman)               u8 gap bits b (sparse, else 0)
    varint elements n, varint codebook size K, varint values coded, varint gap symbols,
    varint bytes of the gap stream
    K codebook values; then, with Huffman: the index code's K lengths, the gap code's 2^b lengths
    (nibbles, packed two per byte); then the gap stream, then the value stream (each byte-aligned)
"""

from __future__ import annotations

import heapq
import math
import os
import struct
from dataclasses import dataclass

import numpy as np

ENCODING = "deep-compression-1"  # the name programs record for this codec
MAX_CODE_BITS = 15
MAX_GAP_BITS = 8
MAX_CODEBOOK = 1 << MAX_CODE_BITS  # a Huffman code's largest alphabet; larger codebooks are not tried
_VALUE_TYPES = (np.dtype("<f4"), np.dtype("<i1"), np.dtype("<i2"), np.dtype("<i4"))
_HUFFMAN = 1


class StorageError(ValueError):
    """A blob that does not decode (truncated, corrupt or of another codec); the message says where."""


@dataclass(frozen=True)
class Encoded:
    """One encoded tensor: the blob and what :func:`encode` chose."""

    blob: bytes
    format: str
    codebook_size: int
    gap_bits: int
    huffman: bool

    @property
    def nbytes(self) -> int:
        return len(self.blob)


# -- Huffman codes ---------------------------------------------------------------------------------

def huffman_lengths(frequencies, *, max_bits: int = MAX_CODE_BITS) -> np.ndarray:
    """Code lengths of a Huffman code for symbol ``frequencies`` (0 for unused symbols), at most
    ``max_bits`` long.

    A single used symbol gets a 1-bit code. When the optimal code is longer than ``max_bits``,
    the frequencies are halved (keeping every used symbol at least 1) until it fits: a code that is
    no longer optimal, only on alphabets whose rarest symbols are about 2^-15 as likely as the rest.
    """
    freq = np.asarray(frequencies, dtype=np.int64)
    if freq.ndim != 1 or (freq < 0).any():
        raise ValueError(f"frequencies must be a vector of counts, got {freq!r}")
    if not 1 <= max_bits <= 31 or freq.size > 2 ** max_bits:
        raise ValueError(f"a {max_bits}-bit code cannot hold {freq.size} symbols")
    lengths = np.zeros(freq.size, dtype=np.int64)
    used = np.flatnonzero(freq)
    if used.size == 1:
        lengths[used] = 1
    while used.size > 1:
        lengths[used] = _optimal_lengths(freq[used])
        if lengths.max() <= max_bits:
            break
        freq = np.where(freq > 0, np.maximum(freq >> 1, 1), 0)
    return lengths


def _optimal_lengths(freq: np.ndarray) -> np.ndarray:
    """Huffman's algorithm on positive counts; ties broken by node order (deterministic)."""
    count = len(freq)
    parent = np.zeros(2 * count - 1, dtype=np.int64)
    heap = [(int(f), i) for i, f in enumerate(freq)]
    heapq.heapify(heap)
    node = count
    while len(heap) > 1:
        f1, a = heapq.heappop(heap)
        f2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (f1 + f2, node))
        node += 1
    depth = np.zeros(2 * count - 1, dtype=np.int64)
    for child in range(node - 2, -1, -1):  # a parent's id is larger than its children's
        depth[child] = depth[parent[child]] + 1
    return depth[:count]


def canonical_codes(lengths) -> np.ndarray:
    """The canonical code of every symbol with a nonzero length (symbols ordered by (length, symbol))."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        codes[symbol] = code
        code += 1
        previous = int(lengths[symbol])
    if previous and code > (1 << previous):
        raise StorageError(f"code lengths {lengths.tolist()} do not form a prefix code")
    return codes


def _pack_bits(codes: np.ndarray, lengths: np.ndarray) -> bytes:
    """The codes, most significant bit first, back to back, zero-padded to a byte."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return b""
    owner = np.repeat(np.arange(lengths.size), lengths)
    starts = np.cumsum(lengths) - lengths
    within = np.arange(total) - starts[owner]
    bits = (np.asarray(codes, dtype=np.int64)[owner] >> (lengths[owner] - 1 - within)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def _unpack_fixed(data: bytes, count: int, width: int) -> np.ndarray:
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits.size < count * width:
        raise StorageError(f"a stream of {count} {width}-bit symbols needs {count * width} bits, has {bits.size}")
    words = bits[: count * width].reshape(count, width).astype(np.int64)
    return words @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def _decode_huffman(data: bytes, count: int, lengths: np.ndarray) -> np.ndarray:
    """``count`` symbols of the canonical code with ``lengths`` (table-driven)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    longest = int(lengths.max()) if lengths.size else 0
    if longest == 0:
        raise StorageError(f"{count} Huffman symbols but the code has no symbols")
    codes = canonical_codes(lengths)
    symbol_of = np.full(1 << longest, -1, dtype=np.int64)
    length_of = np.zeros(1 << longest, dtype=np.int64)
    for symbol in np.flatnonzero(lengths):
        shift = longest - int(lengths[symbol])
        start = int(codes[symbol]) << shift
        symbol_of[start : start + (1 << shift)] = symbol
        length_of[start : start + (1 << shift)] = lengths[symbol]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)
    available = bits.size
    padded = np.concatenate([bits, np.zeros(longest, dtype=np.int64)])
    peek = np.zeros(available, dtype=np.int64)
    for j in range(longest):
        peek = (peek << 1) | padded[j : j + available]
    # Symbol starts are the orbit of bit 0 under "skip this symbol's code": built by pointer
    # doubling, log2(count) vectorised steps instead of a Python loop over the symbols. Position
    # ``available`` (past the end, or reached through an invalid code) is absorbing.
    symbols = np.append(symbol_of[peek], -1)
    ends = np.append(np.arange(available) + length_of[peek], available + 1)
    jump = np.where((symbols >= 0) & (ends <= available), np.minimum(ends, available), available)
    starts = np.zeros(1, dtype=np.int64)
    while starts.size < count:
        starts = np.concatenate([starts, jump[starts]])
        jump = jump[jump]
    starts = starts[:count]
    broken = (symbols[starts] < 0) | (ends[starts] > available)
    if broken.any():
        raise StorageError(f"Huffman stream of {available} bits breaks at symbol {int(np.argmax(broken))} of {count}")
    return symbols[starts]


def _pack_lengths(lengths: np.ndarray) -> bytes:
    nibbles = np.asarray(lengths, dtype=np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] << 4 | nibbles[1::2]).astype(np.uint8).tobytes()


def _unpack_lengths(data: bytes, count: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    nibbles = np.stack([raw >> 4, raw & 15], axis=1).reshape(-1)
    return nibbles[:count].astype(np.int64)


# -- streams of symbols ------------------------------------------------------------------------------

def _encode_symbols(symbols: np.ndarray, alphabet: int, huffman: bool) -> tuple[bytes, bytes]:
    """``(code table, stream)``: fixed ``ceil(log2 alphabet)``-bit symbols, or a Huffman code."""
    if huffman:
        lengths = huffman_lengths(np.bincount(symbols, minlength=alphabet))
        return _pack_lengths(lengths), _pack_bits(canonical_codes(lengths)[symbols], lengths[symbols])
    width = _fixed_width(alphabet)
    return b"", _pack_bits(symbols, np.full(symbols.size, width))


def _fixed_width(alphabet: int) -> int:
    return max(0, math.ceil(math.log2(alphabet))) if alphabet > 1 else 0


def _gap_symbols(positions: np.ndarray, gap_bits: int) -> np.ndarray:
    """Relative indices of the nonzero ``positions`` with escapes (see the module docstring)."""
    escape = (1 << gap_bits) - 1
    gaps = np.diff(np.concatenate([[-1], positions])) - 1
    escapes = gaps // escape
    remainders = gaps - escapes * escape
    symbols = np.full(int(np.sum(escapes + 1)), escape, dtype=np.int64)
    symbols[np.cumsum(escapes + 1) - 1] = remainders
    return symbols


def _positions_of(symbols: np.ndarray, gap_bits: int) -> np.ndarray:
    escape = (1 << gap_bits) - 1
    advance = np.where(symbols == escape, escape, symbols + 1)
    return (np.cumsum(advance) - 1)[symbols != escape]


# -- tensors -------------------------------------------------------------------------------------------

def _value_type(values: np.ndarray) -> int:
    if values.dtype.kind == "f":
        return 0
    if values.dtype.kind not in "iub":
        raise ValueError(f"cannot store values of dtype {values.dtype}")
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for code in (1, 2, 3):
        info = np.iinfo(_VALUE_TYPES[code])
        if info.min <= lo and hi <= info.max:
            return code
    raise ValueError(f"integer values {lo}..{hi} do not fit 32 bits")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if offset >= len(data):
            raise StorageError("truncated header")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def _blob(fmt: int, vtype: int, huffman: bool, gap_bits: int, n: int, codebook: np.ndarray | None,
          values_coded: int, gap_count: int, tables: bytes, gap_stream: bytes, value_stream: bytes) -> bytes:
    head = struct.pack("<BBBB", fmt, vtype, _HUFFMAN if huffman else 0, gap_bits)
    counts = b"".join(_varint(v) for v in (n, 0 if codebook is None else codebook.size, values_coded, gap_count,
                                          len(gap_stream)))
    book = b"" if codebook is None else codebook.astype(_VALUE_TYPES[vtype]).tobytes()
    return head + counts + book + tables + gap_stream + value_stream


def _raw_bytes(values: np.ndarray, vtype: int) -> bytes:
    return values.astype(_VALUE_TYPES[vtype]).tobytes()


def _candidates(flat: np.ndarray, vtype: int, huffman: bool):
    """Every encoding of ``flat`` with fixed-width or (``huffman``) Huffman-coded streams:
    ``(format name, codebook size, gap bits, blob)``."""
    n = flat.size
    if not huffman:
        yield "raw", 0, 0, _blob(0, vtype, False, 0, n, None, n, 0, b"", b"", _raw_bytes(flat, vtype))
    codebook, index = np.unique(flat, return_inverse=True)
    index = index.reshape(-1)
    if codebook.size < min(n, MAX_CODEBOOK):
        table, stream = _encode_symbols(index, codebook.size, huffman)
        yield "index", codebook.size, 0, _blob(1, vtype, huffman, 0, n, codebook, n, 0, table, b"", stream)
    positions = np.flatnonzero(flat)
    nonzero = flat[positions]
    book, book_index = np.unique(nonzero, return_inverse=True)
    book_index = book_index.reshape(-1)
    value_choices = [(None, b"", _raw_bytes(nonzero, vtype))]
    if book.size < min(nonzero.size, MAX_CODEBOOK):
        value_choices.append((book, *_encode_symbols(book_index, book.size, huffman)))
    for gap_bits in range(1, MAX_GAP_BITS + 1):
        gaps = _gap_symbols(positions, gap_bits)
        gap_table, gap_stream = _encode_symbols(gaps, 1 << gap_bits, huffman)
        for values_book, value_table, value_stream in value_choices:
            tables = (value_table + gap_table) if huffman else b""
            yield "sparse", 0 if values_book is None else values_book.size, gap_bits, _blob(
                2, vtype, huffman, gap_bits, n, values_book, nonzero.size, gaps.size, tables, gap_stream, value_stream)
        if gaps.size <= nonzero.size:
            break  # no escapes at this width: wider gaps only cost more bits


def encode(values, *, huffman: bool) -> Encoded:
    """The smallest encoding of ``values`` (any shape; flattened in C order), among fixed-width
    streams and, when ``huffman``, Huffman-coded ones too. Float values are stored as float32
    (they must be float32-representable, or the round trip would not be exact)."""
    flat = np.ascontiguousarray(np.asarray(values)).reshape(-1)
    if flat.dtype.kind == "f" and flat.dtype != np.float32:
        if not np.array_equal(flat.astype(np.float32), flat):
            raise ValueError("float values must be float32-representable to be stored exactly")
        flat = flat.astype(np.float32)
    vtype = _value_type(flat)
    best = None
    for coded in (False, True) if huffman else (False,):
        for fmt, book, gap_bits, blob in _candidates(flat, vtype, coded):
            if best is None or len(blob) < best.nbytes:
                best = Encoded(blob=blob, format=fmt, codebook_size=book, gap_bits=gap_bits, huffman=coded)
    return best


def decode(blob: bytes) -> np.ndarray:
    """The flat values of a blob written by :func:`encode`: float32 or int64."""
    data = bytes(blob)
    if len(data) < 4:
        raise StorageError(f"a blob of {len(data)} bytes is shorter than the 4-byte header")
    fmt, vtype, flags, gap_bits = struct.unpack_from("<BBBB", data)
    if fmt > 2 or vtype >= len(_VALUE_TYPES) or flags & ~_HUFFMAN or gap_bits > MAX_GAP_BITS:
        raise StorageError(f"unknown header {data[:4].hex()}: not a {ENCODING} blob")
    huffman = bool(flags & _HUFFMAN)
    offset = 4
    counts = []
    for _ in range(5):
        value, offset = _read_varint(data, offset)
        counts.append(value)
    n, book_size, values_coded, gap_count, gap_bytes = counts
    dtype = _VALUE_TYPES[vtype]
    book = np.frombuffer(_take(data, offset, book_size * dtype.itemsize), dtype=dtype)
    offset += book_size * dtype.itemsize
    index_lengths = gap_lengths = None
    if huffman:
        if book_size:
            index_lengths = _unpack_lengths(_take(data, offset, (book_size + 1) // 2), book_size)
            offset += (book_size + 1) // 2
        if fmt == 2:
            alphabet = 1 << gap_bits
            gap_lengths = _unpack_lengths(_take(data, offset, (alphabet + 1) // 2), alphabet)
            offset += (alphabet + 1) // 2
    gap_stream = _take(data, offset, gap_bytes)
    value_stream = data[offset + gap_bytes :]

    def values_from(count: int) -> np.ndarray:
        if not book_size:
            return np.frombuffer(_take(value_stream, 0, count * dtype.itemsize), dtype=dtype)
        if huffman:
            index = _decode_huffman(value_stream, count, index_lengths)
        else:
            index = _unpack_fixed(value_stream, count, _fixed_width(book_size))
        if index.size and index.max() >= book_size:
            raise StorageError(f"codebook index {int(index.max())} outside a codebook of {book_size}")
        return book[index]

    out_dtype = np.float32 if vtype == 0 else np.int64
    if fmt in (0, 1):
        if values_coded != n:
            raise StorageError(f"a dense blob of {n} elements codes {values_coded} values")
        return values_from(n).astype(out_dtype)
    if gap_bits == 0:
        raise StorageError("a sparse blob with 0 gap bits")
    if huffman:
        gaps = _decode_huffman(gap_stream, gap_count, gap_lengths)
    else:
        gaps = _unpack_fixed(gap_stream, gap_count, gap_bits)
    positions = _positions_of(gaps, gap_bits)
    if positions.size != values_coded or (positions.size and positions[-1] >= n):
        raise StorageError(f"relative indices give {positions.size} positions up to "
                           f"{int(positions[-1]) if positions.size else -1}, the blob has {values_coded} values "
                           f"in {n} elements")
    out = np.zeros(n, dtype=out_dtype)
    out[positions] = values_from(values_coded)
    return out


def _take(data: bytes, offset: int, count: int) -> bytes:
    if offset + count > len(data):
        raise StorageError(f"truncated: {count} bytes at offset {offset} of a {len(data)}-byte blob")
    return data[offset : offset + count]


# -- programs --------------------------------------------------------------------------------------------

def program_storage(program, *, path=None) -> dict:
    """Weight storage of a :class:`radix.program.Program`, per engine layer and in total (bytes):
    ``int32`` as a dense program's payload holds them, ``packed`` at the layer's weight bits, and
    ``compressed``, this codec with Huffman coding, as a program saved with
    ``weight_storage="compressed"`` holds them; with each layer's format, codebook size and
    nonzeros. With ``path``, also the file's size and the storage the program uses."""
    layers, totals = [], {"int32": 0, "packed": 0, "compressed": 0}
    for layer in program.layers:
        if not layer.operation.has_weights:
            continue
        weights = np.asarray(layer.weights)
        encoded = encode(weights, huffman=True)
        entry = {"name": layer.name, "weights": int(weights.size), "nonzero": int(np.count_nonzero(weights)),
                 "weight_bits": int(layer.weight_bits), "int32": 4 * int(weights.size),
                 "packed": math.ceil(weights.size * layer.weight_bits / 8), "compressed": encoded.nbytes,
                 "format": encoded.format, "codebook": encoded.codebook_size, "gap_bits": encoded.gap_bits}
        for key in totals:
            totals[key] += entry[key]
        layers.append(entry)
    report = {"weight_storage": program.weight_storage, "layers": layers,
              **{f"{key}_bytes": value for key, value in totals.items()}}
    if path is not None:
        report["file_bytes"] = os.path.getsize(path)
    return report


def storage_text(report: dict) -> str:
    """:func:`program_storage`'s report as the table ``radix inspect`` prints."""
    from ..console import table

    rows = [[entry["name"], entry["weights"], entry["nonzero"], entry["weight_bits"], entry["int32"], entry["packed"],
             entry["compressed"], entry["format"], entry["codebook"] or "-"] for entry in report["layers"]]
    rows.append(["total", "", "", "", report["int32_bytes"], report["packed_bytes"], report["compressed_bytes"], "",
                 ""])
    lines = [table(["layer", "weights", "nonzero", "bits", "int32 B", "packed B", "compressed B", "format",
                    "codebook"], rows)]
    ratio = report["int32_bytes"] / report["compressed_bytes"] if report["compressed_bytes"] else float("inf")
    summary = (f"weights stored {report['weight_storage']}; compressed they take {report['compressed_bytes']} bytes, "
               f"{ratio:.1f}x less than int32 and "
               f"{report['packed_bytes'] / max(report['compressed_bytes'], 1):.1f}x less than packed")
    if "file_bytes" in report:
        summary += f"; file {report['file_bytes']} bytes"
    return "\n".join(lines + [summary])
