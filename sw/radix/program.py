"""The program artifact (``.radix``): a calibrated network ready for the engine.

A program holds a graph of layers in execution order (each names the tensors it reads: the main
input, a residual add's skip, a concatenation's parts; ``"input"`` is the network input, any
other tensor is named by the layer that produces it, and the last layer's output is the
network's), per engine layer its descriptor, integer weights and biases and every fractional
length and data shift, plus a record of what it was made from. It is loadable with numpy alone
(the board has no torch).

File layout (all integers little-endian)::

    offset 0   8 bytes   magic b"RADIXPRG"
    offset 8   u32       format version (FORMAT_VERSION)
    offset 12  u32       header length H in bytes
    offset 16  u64       payload length L in bytes
    offset 24  32 bytes  SHA-256 of header + payload
    offset 56  H bytes   header: UTF-8 JSON (layers, fls, shapes, provenance, report,
                         and for every array its dtype, shape and payload offset)
    offset 56+H L bytes  payload: the arrays' raw bytes, back to back

Loading checks each of these in turn and names the file and what is wrong. Version 1 files (single
chains, one symmetric padding per layer) still load: each layer reads the one before it.

**Compressed weights** (version 3, written only when ``Program.weight_storage`` is
``"compressed"``): a layer's ``weights`` entry then also says ``"encoding": "deep-compression-1"``
and ``"decoded_shape"``, and its payload bytes are the Deep Compression blob of
:mod:`radix.compress.storage` (codebook of the distinct integers, Huffman-coded indices, sparse
relative indices), which loads back to exactly the same integers. Programs with dense weights are
written as version 2, byte for byte as before, so every reader of version 2 still reads them.

**Unsigned tensors** (version 4, written only when some tensor is unsigned, docs/arithmetic.md
§1; weights dense or compressed as above): the header says ``"input_unsigned"`` and every layer
entry ``"unsigned_in"``, ``"unsigned_skip"`` and ``"unsigned_out"``. A program whose tensors are
all signed is written as version 2 or 3 exactly as before; versions 1 to 3 load with every
tensor signed. Saving and loading refuse signedness the contract does not allow
(:meth:`Program.check_signedness`).

**Rectangular kernels and strides, groups** (version 5, written only when some layer's kernel or
stride is not square or a convolution is grouped, docs/arithmetic.md §7): every layer entry's
``"kernel"`` and ``"stride"`` are ``[vertical, horizontal]`` pairs (one integer each in versions 1
to 4, which still load as squares) and ``"groups"`` its groups (1 when absent: versions 1 to 4);
the unsigned fields are written as in version 4. Other programs are written as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import golden, jobs, ops
from .compress import storage
from .errors import InputError

MAGIC = b"RADIXPRG"
DENSE_VERSION = 2
COMPRESSED_VERSION = 3  # compressed weights
UNSIGNED_VERSION = 4  # some tensor is unsigned (docs/arithmetic.md §1)
GEOMETRY_VERSION = 5  # some kernel or stride is not square, or a convolution is grouped (docs/arithmetic.md §7)
FORMAT_VERSION = GEOMETRY_VERSION  # the newest this radix writes: 5 for that geometry, 4 with unsigned, else 3 or 2
READABLE_VERSIONS = (1, 2, 3, 4, 5)
SIGNEDNESS_FIELDS = ("unsigned_in", "unsigned_skip", "unsigned_out")  # per layer, from version 4
WEIGHT_STORAGE = ("dense", "compressed")
INPUT = "input"  # the network input's tensor name
KINDS = ops.KINDS
_PREAMBLE = struct.Struct("<8sIIQ32s")


class ProgramError(InputError):
    """A program file or program object is unusable; the message names the file and the fault."""


@dataclass
class Layer(ops.OperationLayer):
    """One layer of the program: a convolution or fully connected layer with its fused residual
    add, ReLU and pooling, or a concatenation (``kind="concat"``: no weights, docs/arithmetic.md §11).

    ``inputs`` names the tensors read (main input first, then a residual add's skip); ``kernel``
    and ``stride`` are ``(vertical, horizontal)`` (one int is taken as square); ``padding`` is
    ``(top, left, bottom, right)``; a convolution's weights are ``(C_out, C_in / groups, KH, KW)``
    (``groups = C_in = C_out``: depthwise). ``fl_w`` has one entry per output channel when weights were
    calibrated per channel, else one entry; ``fl_skip`` is the skip tensor's fl (None without an
    add). ``shift`` and ``skip_shift`` have one entry per output channel (§5, §9). ``role`` says
    what a layer that is not a Conv2d/Linear of the model stands for (``avgpool``, ``identity``).

    ``unsigned_out`` is the signedness of the layer's output tensor (docs/arithmetic.md §1, §5);
    ``unsigned_in`` and ``unsigned_skip`` repeat those of the tensors it reads (main input, skip),
    as ``fl_in`` and ``fl_skip`` repeat their fls: a layer reads a tensor with its producer's
    signedness (:meth:`Program.link_signedness` sets them, loading and saving check them). A
    concatenation's inputs and output share one signedness (§11). All False: every tensor signed.
    :attr:`operation` is the layer's operation (:mod:`radix.ops`: its arithmetic, geometry and
    placement).
    """

    name: str
    kind: str  # "conv", "fc" or "concat"
    modules: list[str]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    relu: bool
    pool: bool
    fl_in: int
    fl_w: list[int]
    fl_out: int
    weight_bits: int
    weights: np.ndarray
    bias: np.ndarray
    inputs: list[str]
    fl_skip: int | None = None
    role: str = ""
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    unsigned_in: bool = False
    unsigned_skip: bool = False
    unsigned_out: bool = False
    groups: int = 1

    @property
    def skip_shift(self) -> np.ndarray | None:
        """Per-output-channel skip shift ``fl_skip - (fl_in + fl_w)`` (§9, unclamped), or None."""
        if self.skip is None:
            return None
        return self.fl_skip - (self.fl_in + np.broadcast_to(np.asarray(self.fl_w, dtype=np.int64),
                                                            (self.weights.shape[0],)))

    @property
    def fl_b(self) -> list[int]:
        """The bias's fractional lengths, the accumulator's alignment (§4)."""
        return [self.fl_in + f for f in self.fl_w]

    @property
    def shift(self) -> np.ndarray:
        """Per-output-channel data shift ``fl_in + fl_w - fl_out`` (unclamped)."""
        fl_w = np.broadcast_to(np.asarray(self.fl_w, dtype=np.int64), (self.weights.shape[0],))
        return self.fl_in + fl_w - self.fl_out

    def geometry(self) -> jobs.Geometry:
        """The layer as the engine's fit rule sees it (:mod:`radix.jobs`)."""
        return ops.of(self).geometry(self)

    @property
    def conv_shape(self) -> tuple[int, int]:
        """The convolution's output height and width before pooling (1x1 for fully connected)."""
        return ops.of(self).conv_shape(self)

    @property
    def reduction(self) -> int:
        """``K``, the products per output element (docs/arithmetic.md §3); 0 for a concatenation."""
        return int(np.prod(self.weights.shape[1:])) if ops.of(self).has_weights else 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image."""
        if not ops.of(self).has_weights:
            return 0
        conv_h, conv_w = self.conv_shape
        return self.reduction * self.weights.shape[0] * conv_h * conv_w


@dataclass
class Program:
    """A calibrated network: input format, engine layers, provenance and calibration report.

    ``weight_storage`` says how :meth:`save` writes the conv/fc weights: ``"dense"`` (int32
    arrays) or ``"compressed"`` (the Deep Compression blobs of :mod:`radix.compress.storage`);
    :meth:`load` sets it from the file. ``input_unsigned`` is the network input's signedness
    (docs/arithmetic.md §1, §7; False: signed).
    """

    width: int
    input_shape: tuple[int, ...]
    input_fl: int
    layers: list[Layer]
    source: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    weight_storage: str = "dense"
    input_unsigned: bool = False

    @property
    def output_fl(self) -> int:
        return self.layers[-1].fl_out

    def tensor_fls(self) -> dict[str, int]:
        """The fl of every tensor: the network input's and each layer's output."""
        return {INPUT: self.input_fl, **{layer.name: layer.fl_out for layer in self.layers}}

    def tensor_unsigned(self) -> dict[str, bool]:
        """The signedness of every tensor (True: unsigned): the network input's and each layer's output."""
        return {INPUT: bool(self.input_unsigned), **{layer.name: bool(layer.unsigned_out) for layer in self.layers}}

    @property
    def has_unsigned(self) -> bool:
        """Whether any tensor is unsigned (the program then needs format version 4)."""
        return any(self.tensor_unsigned().values())

    @property
    def has_new_geometry(self) -> bool:
        """Whether any layer's kernel or stride is not square or it is grouped (the program then
        needs format version 5)."""
        return any(layer.kernel[0] != layer.kernel[1] or layer.stride[0] != layer.stride[1] or layer.groups != 1
                   for layer in self.layers)

    def link_signedness(self) -> None:
        """Set every layer's ``unsigned_in`` and ``unsigned_skip`` from the tensors it reads, and a
        concatenation's ``unsigned_out`` from its inputs (docs/arithmetic.md §7, §11), given
        :attr:`input_unsigned` and the conv/fc layers' ``unsigned_out``. Refuses a concatenation
        of mixed inputs."""
        produced = {INPUT: bool(self.input_unsigned)}
        for layer in self.layers:
            read = [produced.get(name, False) for name in layer.inputs]
            if layer.operation is ops.CONCATENATION:
                if len(set(read)) > 1:
                    raise ProgramError(_mixed_concat(layer, read))
                layer.unsigned_out = bool(read and read[0])
            layer.unsigned_in = bool(read and read[0])
            layer.unsigned_skip = bool(layer.skip is not None and read[1])
            produced[layer.name] = bool(layer.unsigned_out)

    def check_signedness(self, where: str = "program") -> None:
        """Refuse signedness the contract does not allow, naming ``where`` and the layer: a layer
        reading a tensor with another signedness than its producer's (§7), a concatenation whose
        inputs and output differ (§11), an unsigned input beyond its reduction limit (§3), an
        unsigned skip beyond its skip-shift range (§9). A tensor no layer produces is left to the
        graph check."""
        produced = {INPUT: bool(self.input_unsigned)}
        for layer in self.layers:
            read = [produced.get(name) for name in layer.inputs]
            if layer.operation is ops.CONCATENATION and len({u for u in read if u is not None} | {bool(layer.unsigned_out)}) > 1:
                raise ProgramError(f"{where}: {_mixed_concat(layer, read)}")
            roles = [("input", bool(layer.unsigned_in))]
            if layer.skip is not None:
                roles.append(("skip", bool(layer.unsigned_skip)))
            for (role, says), name, actual in zip(roles, layer.inputs, read):
                if actual is not None and says != actual:
                    raise ProgramError(
                        f"{where}: layer {layer.name} reads its {role} {name}, which is {_kind(actual)}, as "
                        f"{_kind(says)}: a layer reads a tensor with its producer's signedness "
                        f"(docs/arithmetic.md §7)")
            if layer.operation.has_weights:
                try:
                    golden.check_reduction(layer.reduction, add=layer.skip is not None,
                                           unsigned_in=bool(layer.unsigned_in))
                except golden.ContractError as exc:
                    raise ProgramError(f"{where}: layer {layer.name}: {exc}") from None
            if layer.skip is not None and layer.unsigned_skip:
                lo, _ = golden.skip_shift_range(self.width, unsigned=True)
                if np.any(layer.skip_shift < lo):
                    raise ProgramError(f"{where}: layer {layer.name}: skip shift {int(layer.skip_shift.min())} "
                                       f"below {lo}, the limit for an unsigned skip (docs/arithmetic.md §9)")
            produced[layer.name] = bool(layer.unsigned_out)

    def save(self, path) -> None:
        """Write the program to ``path`` (see the module docstring for the layout)."""
        if self.weight_storage not in WEIGHT_STORAGE:
            raise ProgramError(f"{path}: weight storage {self.weight_storage!r}: choose one of "
                               f"{', '.join(WEIGHT_STORAGE)}")
        compressed = self.weight_storage == "compressed"
        self.check_signedness(str(path))
        # all-signed programs of square, ungrouped layers keep the older versions' layout, byte for byte
        geometry = self.has_new_geometry
        unsigned = self.has_unsigned or geometry
        dropped = ("weights", "bias") + (() if unsigned else SIGNEDNESS_FIELDS) + (() if geometry else ("groups",))
        arrays: list[np.ndarray] = []
        layers = []
        for layer in self.layers:
            entry = {k: v for k, v in layer.__dict__.items() if k not in dropped}
            entry["in_shape"] = list(layer.in_shape)
            entry["out_shape"] = list(layer.out_shape)
            entry["padding"] = list(layer.padding)
            entry["kernel"], entry["stride"] = ((list(layer.kernel), list(layer.stride)) if geometry
                                                else (layer.kernel[0], layer.stride[0]))
            entry["input_shapes"] = [list(s) for s in layer.input_shapes]
            if compressed and layer.operation.has_weights:
                entry["weights"] = _encoded_ref(arrays, layer.weights)
            else:
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
        if unsigned:
            header["input_unsigned"] = bool(self.input_unsigned)
            for entry in layers:
                entry.update({name: bool(entry[name]) for name in SIGNEDNESS_FIELDS})
        offset = 0
        for ref, arr in zip(_iter_refs(layers), arrays):
            ref["offset"] = offset
            offset += arr.nbytes
        header_bytes = json.dumps(header, sort_keys=True).encode()
        payload = b"".join(arr.tobytes() for arr in arrays)
        digest = hashlib.sha256(header_bytes + payload).digest()
        version = (GEOMETRY_VERSION if geometry else UNSIGNED_VERSION if unsigned
                   else COMPRESSED_VERSION if compressed else DENSE_VERSION)
        preamble = _PREAMBLE.pack(MAGIC, version, len(header_bytes), len(payload), digest)
        write_atomically(Path(path), preamble + header_bytes + payload)

    @classmethod
    def load(cls, path) -> "Program":
        """Read a program, refusing foreign, truncated, corrupt or newer-format files."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProgramError(f"{path}: cannot read the program ({exc.strerror})") from None
        if not data or data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise ProgramError(f"{path}: not a Radix program (no RADIXPRG signature)")
        if len(data) < _PREAMBLE.size:
            raise ProgramError(f"{path}: truncated: {len(data)} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
        _, version, header_len, payload_len, digest = _PREAMBLE.unpack_from(data)
        if version not in READABLE_VERSIONS:
            newer = version > FORMAT_VERSION
            raise ProgramError(
                f"{path}: program format version {version}, this radix reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; "
                + ("upgrade radix to read it" if newer else "recalibrate with this radix")
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
            layers = [_layer_from(entry, payload, version) for entry in header["layers"]]
            if version == 1:
                _chain_inputs(layers)
            program = cls(
                width=int(header["width"]),
                input_shape=tuple(header["input_shape"]),
                input_fl=int(header["input_fl"]),
                layers=layers,
                source=header.get("source", {}),
                report=header.get("report", {}),
                weight_storage="compressed" if any("encoding" in entry["weights"] for entry in header["layers"])
                else "dense",
                input_unsigned=bool(header.get("input_unsigned", False)),
            )
        except storage.StorageError as exc:
            raise ProgramError(f"{path}: compressed weights do not decode ({exc})") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ProgramError(f"{path}: malformed header ({exc!r})") from None
        if not program.layers:
            raise ProgramError(f"{path}: the program has no layers")
        _check_graph(program, path)
        program.check_signedness(str(path))
        return program


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file beside it and a rename: a failed write (a full disk)
    leaves any earlier file untouched and no partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable(path, *, what: str = "program file") -> None:
    """Refuse, before long work, an output path that cannot be written (names the path and why)."""
    path = Path(path)
    if path.is_dir():
        raise ProgramError(f"{path}: is a directory, not a {what}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ProgramError(f"{path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ProgramError(f"{path}: not writable")


def _array_ref(arrays: list, values: np.ndarray, dtype) -> dict:
    arr = np.ascontiguousarray(np.asarray(values).astype(np.dtype(dtype).newbyteorder("<")))
    arrays.append(arr)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape)}


def _encoded_ref(arrays: list, values: np.ndarray) -> dict:
    """A layer's weights as a Deep Compression blob in the payload (:mod:`radix.compress.storage`)."""
    blob = storage.encode(np.asarray(values, dtype=np.int64), huffman=True).blob
    arrays.append(np.frombuffer(blob, dtype=np.uint8))
    return {"dtype": "|u1", "shape": [len(blob)], "encoding": storage.ENCODING,
            "decoded_shape": [int(s) for s in np.shape(values)]}


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


def _read_weights(ref: dict, payload: bytes) -> np.ndarray:
    """A layer's weights: a plain array, or (version 3) a Deep Compression blob decoded."""
    if "encoding" not in ref:
        return _read_array(ref, payload)
    if ref["encoding"] != storage.ENCODING:
        raise ValueError(f"weights in encoding {ref['encoding']!r}; this radix reads {storage.ENCODING!r}")
    start, length = int(ref["offset"]), int(ref["shape"][0])
    if start < 0 or start + length > len(payload):
        raise ValueError(f"compressed weights at {start}..{start + length} lie outside the {len(payload)}-byte payload")
    blob = payload[start : start + length]
    shape = [int(s) for s in ref["decoded_shape"]]
    values = storage.decode(blob)
    if values.dtype.kind not in "iu" or values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"compressed weights decode to {values.size} {values.dtype} values, the shape is {shape}")
    return values.astype(np.int64).reshape(shape)


def _layer_from(entry: dict, payload: bytes, version: int) -> Layer:
    fields = dict(entry)
    fields["weights"] = _read_weights(entry["weights"], payload)
    fields["bias"] = _read_array(entry["bias"], payload)
    fields["in_shape"] = tuple(entry["in_shape"])
    fields["out_shape"] = tuple(entry["out_shape"])
    fields["groups"] = int(entry.get("groups", 1))
    if version == 1:
        fields["padding"] = (int(fields.pop("pad")),) * 4
        fields["inputs"] = []  # version 1 had no graph: _chain_inputs links the layers
    else:
        fields["padding"] = tuple(int(p) for p in entry["padding"])
        fields["input_shapes"] = [tuple(s) for s in entry.get("input_shapes", [])]
    if fields["kind"] not in KINDS:
        raise ValueError(f"layer {fields['name']!r} has unknown kind {fields['kind']!r}")
    return Layer(**fields)


def _kind(unsigned: bool) -> str:
    return "unsigned" if unsigned else "signed"


def _mixed_concat(layer: Layer, read: list[bool | None]) -> str:
    parts = ", ".join(f"{name} {_kind(u)}" for name, u in zip(layer.inputs, read) if u is not None)
    return (f"concatenation {layer.name} ({_kind(bool(layer.unsigned_out))} output) reads {parts}: its inputs and "
            f"output share one signedness (docs/arithmetic.md §11)")


def _chain_inputs(layers: list[Layer]) -> None:
    """A version 1 program is a chain: each layer reads the one before it."""
    previous = INPUT
    for layer in layers:
        layer.inputs = [previous]
        previous = layer.name


def _check_graph(program: Program, path) -> None:
    """Every layer reads tensors produced before it; names are unique."""
    known = {INPUT}
    for layer in program.layers:
        missing = [name for name in layer.inputs if name not in known]
        if missing or not layer.inputs:
            raise ProgramError(f"{path}: layer {layer.name} reads {', '.join(missing) or 'nothing'}, "
                               "which no earlier layer produces")
        if layer.name in known:
            raise ProgramError(f"{path}: two tensors are named {layer.name!r}")
        known.add(layer.name)
