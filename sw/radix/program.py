"""The program artifact (``.radix``): a calibrated network ready for the engine.

A program holds, per engine layer, the layer descriptor, its integer weights and biases and every
fractional length and data shift, plus a record of what it was made from. It is loadable with
numpy alone (the board has no torch).

File layout (all integers little-endian)::

    offset 0   8 bytes   magic b"RADIXPRG"
    offset 8   u32       format version (FORMAT_VERSION)
    offset 12  u32       header length H in bytes
    offset 16  u64       payload length L in bytes
    offset 24  32 bytes  SHA-256 of header + payload
    offset 56  H bytes   header: UTF-8 JSON (layers, fls, shapes, provenance, report,
                         and for every array its dtype, shape and payload offset)
    offset 56+H L bytes  payload: the arrays' raw bytes, back to back

Loading checks each of these in turn and names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"RADIXPRG"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIIQ32s")


class ProgramError(ValueError):
    """A program file or program object is unusable; the message names the file and the fault."""


@dataclass
class Layer:
    """One engine layer: a convolution or fully connected layer with its fused ReLU and pooling.

    ``fl_w`` has one entry per output channel when weights were calibrated per channel, else
    one entry. ``shift`` has one entry per output channel (docs/arithmetic.md §5).
    """

    name: str
    kind: str  # "conv" or "fc"
    modules: list[str]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int
    stride: int
    pad: int
    relu: bool
    pool: bool
    fl_in: int
    fl_w: list[int]
    fl_out: int
    weight_bits: int
    weights: np.ndarray
    bias: np.ndarray
    stats: dict = field(default_factory=dict)

    @property
    def fl_b(self) -> list[int]:
        """The bias's fractional lengths, the accumulator's alignment (§4)."""
        return [self.fl_in + f for f in self.fl_w]

    @property
    def shift(self) -> np.ndarray:
        """Per-output-channel data shift ``fl_in + fl_w - fl_out`` (unclamped)."""
        fl_w = np.broadcast_to(np.asarray(self.fl_w, dtype=np.int64), (self.weights.shape[0],))
        return self.fl_in + fl_w - self.fl_out

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image."""
        reduction = int(np.prod(self.weights.shape[1:]))
        if self.kind == "fc":
            return reduction * self.weights.shape[0]
        conv_h = (self.in_shape[1] + 2 * self.pad - self.kernel) // self.stride + 1
        conv_w = (self.in_shape[2] + 2 * self.pad - self.kernel) // self.stride + 1
        return reduction * self.weights.shape[0] * conv_h * conv_w


@dataclass
class Program:
    """A calibrated network: input format, engine layers, provenance and calibration report."""

    width: int
    input_shape: tuple[int, ...]
    input_fl: int
    layers: list[Layer]
    source: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    @property
    def output_fl(self) -> int:
        return self.layers[-1].fl_out

    def save(self, path) -> None:
        """Write the program to ``path`` (see the module docstring for the layout)."""
        arrays: list[np.ndarray] = []
        layers = []
        for layer in self.layers:
            entry = {k: v for k, v in layer.__dict__.items() if k not in ("weights", "bias")}
            entry["in_shape"] = list(layer.in_shape)
            entry["out_shape"] = list(layer.out_shape)
            entry["weights"] = _array_ref(arrays, layer.weights, np.int32)
            entry["bias"] = _array_ref(arrays, layer.bias, np.int64)
            layers.append(entry)
        header = {
            "width": self.width,
            "input_shape": list(self.input_shape),
            "input_fl": self.input_fl,
            "layers": layers,
            "source": self.source,
            "report": self.report,
        }
        offset = 0
        for ref, arr in zip(_iter_refs(layers), arrays):
            ref["offset"] = offset
            offset += arr.nbytes
        header_bytes = json.dumps(header, sort_keys=True).encode()
        payload = b"".join(arr.tobytes() for arr in arrays)
        digest = hashlib.sha256(header_bytes + payload).digest()
        preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes), len(payload), digest)
        Path(path).write_bytes(preamble + header_bytes + payload)

    @classmethod
    def load(cls, path) -> "Program":
        """Read a program, refusing foreign, truncated, corrupt or newer-format files."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProgramError(f"{path}: cannot read the program ({exc.strerror})") from None
        if len(data) < _PREAMBLE.size or not data.startswith(MAGIC):
            raise ProgramError(f"{path}: not a Radix program (no RADIXPRG signature)")
        _, version, header_len, payload_len, digest = _PREAMBLE.unpack_from(data)
        if version != FORMAT_VERSION:
            raise ProgramError(
                f"{path}: program format version {version}, this radix reads version {FORMAT_VERSION}; "
                "recalibrate with this radix"
            )
        expected = _PREAMBLE.size + header_len + payload_len
        if len(data) != expected:
            raise ProgramError(f"{path}: truncated or padded: {len(data)} bytes, the header promises {expected}")
        body = data[_PREAMBLE.size :]
        if hashlib.sha256(body).digest() != digest:
            raise ProgramError(f"{path}: corrupt: checksum mismatch")
        try:
            header = json.loads(body[:header_len])
            payload = body[header_len:]
            layers = [_layer_from(entry, payload) for entry in header["layers"]]
            program = cls(
                width=int(header["width"]),
                input_shape=tuple(header["input_shape"]),
                input_fl=int(header["input_fl"]),
                layers=layers,
                source=header.get("source", {}),
                report=header.get("report", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProgramError(f"{path}: malformed header ({exc!r})") from None
        if not program.layers:
            raise ProgramError(f"{path}: the program has no layers")
        return program


def _array_ref(arrays: list, values: np.ndarray, dtype) -> dict:
    arr = np.ascontiguousarray(np.asarray(values).astype(np.dtype(dtype).newbyteorder("<")))
    arrays.append(arr)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape)}


def _iter_refs(layers):
    for entry in layers:
        yield entry["weights"]
        yield entry["bias"]


def _read_array(ref: dict, payload: bytes) -> np.ndarray:
    dtype = np.dtype(ref["dtype"])
    count = int(np.prod(ref["shape"], dtype=np.int64))
    start = int(ref["offset"])
    end = start + count * dtype.itemsize
    if start < 0 or end > len(payload):
        raise ValueError(f"array at {start}..{end} lies outside the {len(payload)}-byte payload")
    return np.frombuffer(payload[start:end], dtype=dtype).reshape(ref["shape"]).astype(np.int64)


def _layer_from(entry: dict, payload: bytes) -> Layer:
    fields = dict(entry)
    fields["weights"] = _read_array(entry["weights"], payload)
    fields["bias"] = _read_array(entry["bias"], payload)
    fields["in_shape"] = tuple(entry["in_shape"])
    fields["out_shape"] = tuple(entry["out_shape"])
    if fields["kind"] not in ("conv", "fc"):
        raise ValueError(f"layer {fields['name']!r} has unknown kind {fields['kind']!r}")
    return Layer(**fields)
