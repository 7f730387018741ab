"""The .radix artifact: round trip and a clear error for every kind of bad file."""

import hashlib
import json
import struct

import numpy as np
import pytest

from radix.program import (DENSE_VERSION, FORMAT_VERSION, GEOMETRY_VERSION, UNSIGNED_VERSION, Layer, Program,
                           ProgramError)


def small_program() -> Program:
    rng = np.random.default_rng(1)
    conv = Layer(name="c", kind="conv", modules=["c", "r"], in_shape=(1, 6, 6), out_shape=(2, 3, 3), kernel=3,
                 stride=1, padding=(1, 1, 1, 1), relu=True, pool=True, fl_in=7, fl_w=[6, 5], fl_out=4, weight_bits=8,
                 weights=rng.integers(-128, 128, (2, 1, 3, 3)), bias=np.array([2**40, -5]), inputs=["input"],
                 stats={"x": 1.5})
    fc = Layer(name="f", kind="fc", modules=["f"], in_shape=(2, 3, 3), out_shape=(4,), kernel=1, stride=1,
               padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=4, fl_w=[7], fl_out=3, weight_bits=4,
               weights=rng.integers(-8, 8, (4, 18)), bias=np.arange(4), inputs=["c"])
    return Program(width=8, input_shape=(1, 6, 6), input_fl=7, layers=[conv, fc], source={"model": "t"},
                   report={"ok": True})


def test_round_trip(tmp_path):
    path = tmp_path / "p.radix"
    small_program().save(path)
    loaded = Program.load(path)
    original = small_program()
    assert loaded.input_fl == 7 and loaded.width == 8 and loaded.source == {"model": "t"}
    for a, b in zip(loaded.layers, original.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.bias, b.bias)
        np.testing.assert_array_equal(a.shift, b.shift)
        assert (a.name, a.kind, a.in_shape, a.out_shape, a.fl_w, a.relu, a.pool) == (
            b.name, b.kind, b.in_shape, b.out_shape, b.fl_w, b.relu, b.pool)


def test_corrupt_byte(tmp_path):
    path = tmp_path / "p.radix"
    small_program().save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ProgramError, match=r"p.radix: corrupt: checksum mismatch"):
        Program.load(path)


def test_truncated(tmp_path):
    path = tmp_path / "p.radix"
    small_program().save(path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ProgramError, match="truncated"):
        Program.load(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(ProgramError, match="model.pt: not a Radix program"):
        Program.load(path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "p.radix"
    small_program().save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(ProgramError, match=f"format version {FORMAT_VERSION + 1}"):
        Program.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ProgramError, match="cannot read"):
        Program.load(tmp_path / "nope.radix")


def _rewrite_header(path, change) -> None:
    """Edit a program file's JSON header in place and re-seal it (length and checksum)."""
    data = path.read_bytes()
    magic, version, header_len, payload_len, _ = struct.unpack_from("<8sIIQ32s", data)
    header = json.loads(data[56 : 56 + header_len])
    change(header)
    payload = data[56 + header_len :]
    header_bytes = json.dumps(header, sort_keys=True).encode()
    digest = hashlib.sha256(header_bytes + payload).digest()
    path.write_bytes(struct.pack("<8sIIQ32s", magic, version, len(header_bytes), payload_len, digest)
                     + header_bytes + payload)


def _version(path) -> int:
    return struct.unpack_from("<I", path.read_bytes(), 8)[0]


def unsigned_program() -> Program:
    """small_program with an unsigned input and an unsigned ReLU output (docs/arithmetic.md §1)."""
    program = small_program()
    program.input_unsigned = True
    program.layers[0].unsigned_out = True
    program.link_signedness()
    return program


def test_all_signed_programs_keep_the_older_format(tmp_path):
    """No signedness anywhere in the file, version 2: what older readers (the board's) read."""
    path = tmp_path / "p.radix"
    small_program().save(path)
    assert _version(path) == DENSE_VERSION == 2
    assert b"unsigned" not in path.read_bytes()
    loaded = Program.load(path)
    assert not loaded.has_unsigned and set(loaded.tensor_unsigned().values()) == {False}


def test_unsigned_tensors_round_trip_as_version_4(tmp_path):
    path = tmp_path / "p.radix"
    unsigned_program().save(path)
    assert _version(path) == UNSIGNED_VERSION == 4
    loaded = Program.load(path)
    assert loaded.input_unsigned and loaded.tensor_unsigned() == {"input": True, "c": True, "f": False}
    conv, fc = loaded.layers
    assert (conv.unsigned_in, conv.unsigned_skip, conv.unsigned_out) == (True, False, True)
    assert (fc.unsigned_in, fc.unsigned_skip, fc.unsigned_out) == (True, False, False)
    assert conv.kernel == (3, 3) and conv.stride == (1, 1)
    assert b'"kernel": 3' in path.read_bytes()  # square kernels stay one integer, as version 4 wrote them


@pytest.mark.parametrize("unsigned", [False, True])
def test_rectangular_kernels_and_strides_round_trip_as_version_5(tmp_path, unsigned):
    """A 3x2 kernel with strides 2x1 needs version 5 (pairs); older versions load as squares."""
    program = unsigned_program() if unsigned else small_program()
    conv = program.layers[0]
    conv.kernel, conv.stride = (3, 2), (2, 1)
    conv.weights = np.random.default_rng(2).integers(-128, 128, (2, 1, 3, 2))
    conv.out_shape = (2, 3, 3)
    path = tmp_path / "p.radix"
    program.save(path)
    assert _version(path) == GEOMETRY_VERSION == FORMAT_VERSION == 5
    loaded = Program.load(path)
    assert loaded.layers[0].kernel == (3, 2) and loaded.layers[0].stride == (2, 1)
    assert loaded.layers[1].kernel == (1, 1) and loaded.has_new_geometry
    assert loaded.tensor_unsigned() == program.tensor_unsigned()
    np.testing.assert_array_equal(loaded.layers[0].weights, conv.weights)


def test_grouped_convolutions_round_trip_as_version_5(tmp_path):
    program = small_program()
    conv = program.layers[0]
    conv.in_shape, conv.groups = (2, 6, 6), 2
    program.input_shape = (2, 6, 6)
    path = tmp_path / "p.radix"
    program.save(path)
    assert _version(path) == GEOMETRY_VERSION
    loaded = Program.load(path)
    assert loaded.layers[0].groups == 2 and loaded.layers[1].groups == 1
    small_program().save(path)
    assert b"groups" not in path.read_bytes() and Program.load(path).layers[0].groups == 1


def test_link_signedness_follows_the_producers():
    program = small_program()
    program.layers[0].unsigned_out = True
    program.layers[1].unsigned_in = False
    with pytest.raises(ProgramError, match="layer f reads its input c, which is unsigned, as signed"):
        program.check_signedness()
    program.link_signedness()
    program.check_signedness()
    assert program.layers[1].unsigned_in


def test_a_file_with_inconsistent_signedness_is_refused(tmp_path):
    path = tmp_path / "p.radix"
    unsigned_program().save(path)
    _rewrite_header(path, lambda header: header["layers"][1].update(unsigned_in=False))
    with pytest.raises(ProgramError, match="p.radix: layer f reads its input c, which is unsigned, as signed"):
        Program.load(path)


def test_saving_refuses_inconsistent_signedness(tmp_path):
    program = small_program()
    program.input_unsigned = True  # the conv still reads the input as signed
    with pytest.raises(ProgramError, match="layer c reads its input input, which is unsigned, as signed"):
        program.save(tmp_path / "p.radix")


def _concat_program(unsigned_parts) -> Program:
    layers = []
    for name, unsigned in zip(("a", "b"), unsigned_parts):
        layers.append(Layer(name=name, kind="conv", modules=[name], in_shape=(1, 2, 2), out_shape=(1, 2, 2), kernel=1,
                            stride=1, padding=(0, 0, 0, 0), relu=True, pool=False, fl_in=4, fl_w=[6], fl_out=4,
                            weight_bits=8, weights=np.ones((1, 1, 1, 1), dtype=np.int64), bias=np.zeros(1),
                            inputs=["input"], unsigned_out=unsigned))
    layers.append(Layer(name="cat", kind="concat", modules=["cat"], in_shape=(2, 2, 2), out_shape=(2, 2, 2), kernel=1,
                        stride=1, padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=4, fl_w=[0], fl_out=4,
                        weight_bits=0, weights=np.zeros(0, dtype=np.int64), bias=np.zeros(0, dtype=np.int64),
                        inputs=["a", "b"], input_shapes=[(1, 2, 2), (1, 2, 2)]))
    return Program(width=8, input_shape=(1, 2, 2), input_fl=4, layers=layers)


def test_concatenation_shares_one_signedness():
    """§11: no conversion between signed and unsigned parts."""
    program = _concat_program((True, True))
    program.link_signedness()
    assert program.layers[-1].unsigned_out and program.layers[-1].unsigned_in
    program.check_signedness()
    mixed = _concat_program((True, False))
    with pytest.raises(ProgramError, match="concatenation cat .* reads a unsigned, b signed"):
        mixed.link_signedness()
    with pytest.raises(ProgramError, match="concatenation cat"):
        mixed.check_signedness()


def test_unsigned_input_beyond_its_reduction_limit_is_refused():
    """§3: an unsigned input costs one bit of K (32,767 without an add)."""
    program = small_program()
    fc = program.layers[1]
    fc.in_shape = (40000,)
    fc.weights = np.zeros((4, 40000), dtype=np.int64)
    program.check_signedness()  # signed: K = 40,000 <= 65,535
    program.layers[0].unsigned_out = True
    program.link_signedness()
    with pytest.raises(ProgramError, match="layer f: reduction length 40000 exceeds the accumulator limit 32767"):
        program.check_signedness()
