"""Deep Compression storage: Huffman codes, the tensor codec and compressed weights in .radix programs."""

import hashlib
import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix.compress import storage
from radix.program import COMPRESSED_VERSION, DENSE_VERSION, Layer, Program, ProgramError


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=300))
def test_huffman_lengths_form_an_optimal_prefix_code(frequencies):
    lengths = storage.huffman_lengths(frequencies)
    freq = np.asarray(frequencies)
    used = freq > 0
    assert np.all((lengths > 0) == used) and lengths.max(initial=0) <= storage.MAX_CODE_BITS
    if used.sum() >= 2:
        assert sum(2.0 ** -l for l in lengths[used]) <= 1.0  # Kraft: a prefix code exists
        p = freq[used] / freq[used].sum()
        entropy = float(-(p * np.log2(p)).sum())
        mean = float((p * lengths[used]).sum())
        if lengths.max() < storage.MAX_CODE_BITS:  # unconstrained: Huffman's bound
            assert entropy - 1e-9 <= mean < entropy + 1


def test_length_limit_on_a_fibonacci_distribution():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    assert storage.huffman_lengths(fib, max_bits=31).max() == 29  # the optimal code
    lengths = storage.huffman_lengths(fib)
    assert lengths.max() <= storage.MAX_CODE_BITS and sum(2.0 ** -l for l in lengths) <= 1.0
    symbols = np.repeat(np.arange(30), 3)
    values = np.asarray(fib, dtype=np.int64)[symbols] * 7  # one distinct integer per symbol
    assert np.array_equal(storage.decode(storage.encode(values, huffman=True).blob), values)


def _arrays():
    """Integer or float32 tensors, dense or sparse, with few or many distinct values."""
    return st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 3000), st.sampled_from(["int", "float"]),
                     st.floats(0.0, 1.0), st.integers(1, 300))


@settings(max_examples=150, deadline=None)
@given(_arrays(), st.booleans())
def test_round_trip_is_lossless(spec, huffman):
    seed, n, kind, density, distinct = spec
    rng = np.random.default_rng(seed)
    if kind == "int":
        book = rng.integers(-(2**15), 2**15, distinct)
    else:
        book = rng.standard_normal(distinct).astype(np.float32)
    values = book[rng.integers(0, distinct, n)] * (rng.random(n) < density)
    encoded = storage.encode(values, huffman=huffman)
    decoded = storage.decode(encoded.blob)
    assert decoded.dtype == (np.float32 if kind == "float" else np.int64)
    assert np.array_equal(decoded, values)
    assert encoded.nbytes <= storage.encode(values, huffman=False).nbytes  # Huffman is only used where it pays


def test_sparse_gaps_use_escapes_past_the_gap_width():
    values = np.zeros(10_000, dtype=np.int64)
    values[[0, 1, 700, 9_999]] = [3, -3, 3, 5]
    encoded = storage.encode(values, huffman=False)
    assert encoded.format == "sparse" and encoded.nbytes < 60
    assert np.array_equal(storage.decode(encoded.blob), values)


def test_a_ternary_tensor_takes_about_its_entropy():
    rng = np.random.default_rng(3)
    values = rng.choice(np.array([-0.25, 0.0, 0.5], dtype=np.float32), size=20_000, p=[0.2, 0.6, 0.2])
    encoded = storage.encode(values, huffman=True)
    entropy_bytes = 20_000 * -(0.6 * math.log2(0.6) + 0.4 * math.log2(0.2)) / 8
    assert encoded.nbytes < 1.2 * entropy_bytes and encoded.nbytes < 20_000 * 4 / 16


def test_corrupt_blobs_are_refused():
    blob = storage.encode(np.arange(-50, 50), huffman=True).blob
    with pytest.raises(storage.StorageError, match="not a deep-compression-1 blob"):
        storage.decode(b"\x07" + blob[1:])
    with pytest.raises(storage.StorageError):
        storage.decode(blob[: len(blob) // 2])


def _program() -> Program:
    rng = np.random.default_rng(5)
    weights = rng.integers(-128, 128, (12, 3, 3, 3)) * (rng.random((12, 3, 3, 3)) < 0.2)
    conv = Layer(name="c", kind="conv", modules=["c"], in_shape=(3, 8, 8), out_shape=(12, 8, 8), kernel=3, stride=1,
                 padding=(1, 1, 1, 1), relu=True, pool=False, fl_in=7, fl_w=[6], fl_out=4, weight_bits=8,
                 weights=weights, bias=np.arange(12) * 1000, inputs=["input"])
    fc = Layer(name="f", kind="fc", modules=["f"], in_shape=(768,), out_shape=(10,), kernel=1, stride=1,
               padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=4, fl_w=[5], fl_out=3, weight_bits=4,
               weights=rng.choice([-8, -1, 0, 0, 0, 3, 7], (10, 768)), bias=np.zeros(10, dtype=np.int64),
               inputs=["c"])
    return Program(width=8, input_shape=(3, 8, 8), input_fl=7, layers=[conv, fc], source={"model": "t"})


def test_compressed_program_loads_the_same_integers(tmp_path):
    dense, packed = tmp_path / "dense.radix", tmp_path / "packed.radix"
    program = _program()
    program.save(dense)
    program.weight_storage = "compressed"
    program.save(packed)
    assert struct.unpack_from("<I", dense.read_bytes(), 8)[0] == DENSE_VERSION == 2
    assert struct.unpack_from("<I", packed.read_bytes(), 8)[0] == COMPRESSED_VERSION == 3
    assert packed.stat().st_size < dense.stat().st_size / 3
    loaded = Program.load(packed)
    assert loaded.weight_storage == "compressed" and Program.load(dense).weight_storage == "dense"
    for got, want in zip(loaded.layers, _program().layers):
        assert got.weights.dtype == np.int64
        np.testing.assert_array_equal(got.weights, want.weights)
        np.testing.assert_array_equal(got.bias, want.bias)
    report = storage.program_storage(loaded, path=packed)
    assert report["compressed_bytes"] < report["packed_bytes"] < report["int32_bytes"]
    assert report["file_bytes"] == packed.stat().st_size
    assert "weights stored compressed" in storage.storage_text(report)


def test_version_1_and_2_programs_still_load(tmp_path):
    path = tmp_path / "p.radix"
    program = _program()
    program.layers[0].padding = (1, 1, 1, 1)
    program.save(path)
    data = path.read_bytes()
    _, version, header_len, _, _ = struct.unpack_from("<8sIIQ32s", data)
    header = json.loads(data[56 : 56 + header_len])
    payload = data[56 + header_len :]
    assert version == 2 and Program.load(path).layers[1].inputs == ["c"]
    for entry in header["layers"]:  # as version 1 wrote them: one symmetric pad, no graph, no residuals
        entry["pad"] = entry.pop("padding")[0]
        for key in ("inputs", "input_shapes", "role", "fl_skip"):
            del entry[key]
    old = json.dumps(header).encode()
    digest = hashlib.sha256(old + payload).digest()
    path.write_bytes(struct.pack("<8sIIQ32s", b"RADIXPRG", 1, len(old), len(payload), digest) + old + payload)
    loaded = Program.load(path)
    assert loaded.layers[1].inputs == ["c"] and loaded.layers[0].padding == (1, 1, 1, 1)
    np.testing.assert_array_equal(loaded.layers[1].weights, _program().layers[1].weights)


def test_unknown_weight_storage_is_refused(tmp_path):
    program = _program()
    program.weight_storage = "zip"
    with pytest.raises(ProgramError, match="weight storage 'zip'"):
        program.save(tmp_path / "p.radix")
