"""The .radix artifact: round trip and a clear error for every kind of bad file."""

import struct

import numpy as np
import pytest

from radix.program import FORMAT_VERSION, Layer, Program, ProgramError


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
