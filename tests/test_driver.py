"""The driver over the reference transport: tiling, limits and faults, against the golden model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden, network
from radix.driver import Driver, EngineMismatch, EngineTimeout, StreamLengthError
from radix.engine_spec import EngineConfig, field_mask, register
from radix.program import Layer, Program, ProgramError
from radix.transport import Received, ReferenceTransport


def random_program(rng, *, width, c_in, h, k, stride, pad, pool, c_mid, fc_out, unsigned=(False, False, False)):
    """A conv and an fc layer; ``unsigned`` gives the signedness of the input, the conv's and the
    fc's outputs (docs/arithmetic.md §1)."""
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1)
    conv_h = (h + 2 * pad - k) // stride + 1
    out_h = conv_h // 2 if pool else conv_h
    conv = Layer(name="conv", kind="conv", modules=["conv"], in_shape=(c_in, h, h), out_shape=(c_mid, out_h, out_h),
                 kernel=k, stride=stride, padding=(pad,) * 4, relu=bool(rng.integers(2)), pool=pool, fl_in=6,
                 fl_w=[int(v) for v in rng.integers(4, 9, c_mid)], fl_out=int(rng.integers(2, 12)), weight_bits=width,
                 weights=rng.integers(lo, hi, (c_mid, c_in, k, k)), bias=rng.integers(-5000, 5000, c_mid),
                 inputs=["input"])
    fc = Layer(name="fc", kind="fc", modules=["fc"], in_shape=(c_mid, out_h, out_h), out_shape=(fc_out,), kernel=1,
               stride=1, padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=conv.fl_out, fl_w=[7],
               fl_out=int(rng.integers(0, 8)), weight_bits=width,
               weights=rng.integers(lo, hi, (fc_out, c_mid * out_h * out_h)), bias=rng.integers(-5000, 5000, fc_out),
               inputs=["conv"])
    conv.unsigned_out, fc.unsigned_out = unsigned[1:]
    program = Program(width=width, input_shape=(c_in, h, h), input_fl=6, layers=[conv, fc], input_unsigned=unsigned[0])
    program.link_signedness()
    return program


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 16]), st.integers(1, 4), st.integers(1, 5), st.integers(1, 7),
       st.integers(1, 3), st.booleans(), st.integers(1, 7), st.integers(1, 6), st.integers(1, 5),
       st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_driver_matches_golden_with_banding(seed, width, rows, cols, k, stride, pool, c_in, c_mid, fc_out, unsigned):
    rng = np.random.default_rng(seed)
    pad = int(rng.integers(0, k))
    h = int(rng.integers(max(k - 2 * pad, 2 * stride + k), 14))
    program = random_program(rng, width=width, c_in=c_in, h=h, k=k, stride=stride, pad=pad, pool=pool, c_mid=c_mid,
                             fc_out=fc_out, unsigned=unsigned)
    t_in = -(-c_in // rows)
    fc_groups = -(-program.layers[1].weights.shape[1] // rows)
    # buffers just big enough for a couple of output rows, so layers split into many bands
    config = EngineConfig(rows=rows, cols=cols, width=width, in_depth=max(t_in * h * (2 * stride + k), fc_groups),
                          wt_depth=max(t_in * k * k, fc_groups) * rows, acc_depth=2 * (h + 2 * pad) + 2)
    driver = Driver(ReferenceTransport(config))
    driver.check(program)
    x_lo, x_hi = golden.tensor_range(width, unsigned=program.input_unsigned)
    x = rng.integers(x_lo, x_hi + 1, (2, c_in, h, h))
    expected = network.run(program, x)
    for i in range(2):
        run = driver.run_image(program, x[i])
        for got, want in zip(run.layers, expected):
            np.testing.assert_array_equal(got.values, want.values[i])
        assert run.layers[-1].jobs == 1


def test_saturation_counts_add_up_across_bands():
    rng = np.random.default_rng(3)
    program = random_program(rng, width=8, c_in=3, h=13, k=3, stride=1, pad=1, pool=True, c_mid=4, fc_out=3)
    program.layers[0].fl_out = 14  # forces saturation
    config = EngineConfig(rows=2, cols=3, width=8, in_depth=2 * 13 * 4, wt_depth=600, acc_depth=40)
    x = rng.integers(-128, 128, (1, 3, 13, 13))
    run = Driver(ReferenceTransport(config)).run_image(program, x[0])
    expected = network.run(program, x)
    assert run.layers[0].jobs > 1
    assert run.layers[0].saturated == expected[0].saturated > 0


def test_refuses_program_of_other_width():
    program = random_program(np.random.default_rng(0), width=16, c_in=2, h=8, k=3, stride=1, pad=1, pool=False,
                             c_mid=2, fc_out=2)
    with pytest.raises(EngineMismatch, match="program is 16-bit, the engine's DATA_WIDTH is 8"):
        Driver(ReferenceTransport(EngineConfig(width=8))).check(program)


def test_refuses_layer_over_weight_buffer():
    program = random_program(np.random.default_rng(0), width=8, c_in=40, h=8, k=7, stride=1, pad=3, pool=False,
                             c_mid=2, fc_out=2)
    with pytest.raises(EngineMismatch, match="layer conv: 1960 weight rows per output tile exceed the engine's WT_DEPTH 1000"):
        Driver(ReferenceTransport(EngineConfig(rows=4, cols=2, wt_depth=1000))).check(program)


def test_refuses_foreign_engine():
    transport = ReferenceTransport()
    transport.regs[register("ID").offset] = 0xDEADBEEF
    with pytest.raises(EngineMismatch, match="register ID reads 0xDEADBEEF"):
        Driver(transport)
    transport = ReferenceTransport()
    transport.regs[register("VERSION").offset] = 99
    with pytest.raises(EngineMismatch, match="engine VERSION 99"):
        Driver(transport)


class NeverFinishes(ReferenceTransport):
    def send(self, words):
        pass  # the engine swallows the stream and never answers


class ShortStream(ReferenceTransport):
    def receive(self, count, cycles):
        got = super().receive(count, cycles)
        return Received(got.words[:-1], last=True)


class LongStream(ReferenceTransport):
    def receive(self, count, cycles):
        got = super().receive(count, cycles)
        return Received(got.words, last=False)


def one_layer_program():
    return random_program(np.random.default_rng(1), width=8, c_in=2, h=6, k=3, stride=1, pad=1, pool=False, c_mid=3,
                          fc_out=2)


def test_timeout_reports_registers():
    program = one_layer_program()
    driver = Driver(NeverFinishes())
    with pytest.raises(EngineTimeout, match=r"(?s)layer conv job 1/1: 0 of \d+ output words after \d+ cycles.*STATUS=0x1,"):
        driver.run_image(program, np.zeros((2, 6, 6), dtype=np.int64))


@pytest.mark.parametrize("transport, message", [(ShortStream, "ended \\(TLAST\\) after"), (LongStream, "longer than")])
def test_stream_length_faults_name_the_layer(transport, message):
    with pytest.raises(StreamLengthError, match=f"layer conv job 1/1: output stream {message}"):
        Driver(transport()).run_image(one_layer_program(), np.zeros((2, 6, 6), dtype=np.int64))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 16]), st.integers(1, 5), st.integers(1, 5), st.integers(1, 9),
       st.integers(1, 9), st.integers(1, 5))
def test_stream_formats_round_trip(seed, width, rows, cols, c_in, c_out, k):
    from radix import stream_format as sf

    config = EngineConfig(rows=rows, cols=cols, width=width)
    rng = np.random.default_rng(seed)
    lo, hi = golden.int_range(width)
    x = rng.integers(lo, hi + 1, (c_in, 3, 4))
    np.testing.assert_array_equal(sf.decode_input_words(sf.input_words(x, config), c_in, 3, 4, config), x)
    w = rng.integers(lo, hi + 1, (c_out, c_in, k, k))
    bias = rng.integers(-(2**47), 2**47, c_out)
    shift = rng.integers(-128, 128, c_out)
    n = min(cols, c_out)
    plain = sf.decode_cotile_words(sf.cotile_words(w, bias, shift, 0, config), c_in, k, config)
    np.testing.assert_array_equal(plain["weights"][:n], w[:n])
    np.testing.assert_array_equal(plain["bias"][:n], bias[:n])
    np.testing.assert_array_equal(plain["shift"][:n], shift[:n])
    assert not plain["skip_shift"].any() and plain["skip"].size == 0
    skip = rng.integers(lo, hi + 1, (c_out, 2, 3))
    skip_shift = rng.integers(-128, 128, c_out)
    words = sf.cotile_words(w, bias, shift, 0, config, skip=skip, skip_shift=skip_shift)
    assert words.size == sf.cotile_word_count(c_in, k, config, skip_pixels=6)
    added = sf.decode_cotile_words(words, c_in, k, config, skip_pixels=6)
    np.testing.assert_array_equal(added["weights"][:n], w[:n])
    np.testing.assert_array_equal(added["skip_shift"][:n], skip_shift[:n])
    np.testing.assert_array_equal(added["skip"][:n], skip[:n].reshape(n, 6))
    maps = rng.integers(lo, hi + 1, (c_out, 2, 3))
    np.testing.assert_array_equal(sf.decode_output(sf.output_words(maps, config), c_out, 2, 3, config), maps)
    # unsigned lanes (docs/arithmetic.md §1): the same W bits, read as 0..2^W-1
    u_lo, u_hi = golden.tensor_range(width, unsigned=True)
    ux = rng.integers(u_lo, u_hi + 1, (c_in, 3, 4))
    ux.flat[0] = u_hi
    np.testing.assert_array_equal(sf.decode_input_words(sf.input_words(ux, config), c_in, 3, 4, config,
                                                        unsigned=True), ux)
    uskip = rng.integers(u_lo, u_hi + 1, (c_out, 2, 3))
    words = sf.cotile_words(w, bias, shift, 0, config, skip=uskip, skip_shift=skip_shift)
    decoded = sf.decode_cotile_words(words, c_in, k, config, skip_pixels=6, skip_unsigned=True)
    np.testing.assert_array_equal(decoded["skip"][:n], uskip[:n].reshape(n, 6))
    umaps = rng.integers(u_lo, u_hi + 1, (c_out, 2, 3))
    umaps.flat[0] = u_hi
    np.testing.assert_array_equal(sf.decode_output(sf.output_words(umaps, config), c_out, 2, 3, config,
                                                   unsigned=True), umaps)
    assert sf.decode_output(sf.output_words(umaps, config), c_out, 2, 3, config).flat[0] == -1  # as signed


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9),
       st.integers(1, 3), st.booleans())
def test_job_stream_interleaves_the_first_output_tile_with_the_input(seed, rows, cols, c_in, c_out, k, add):
    from radix import stream_format as sf

    config = EngineConfig(rows=rows, cols=cols, width=8)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (c_in, 3, 4))
    w = rng.integers(-128, 128, (c_out, c_in, k, k))
    bias, shift = rng.integers(-1000, 1000, c_out), rng.integers(-8, 8, c_out)
    skip = rng.integers(-128, 128, (c_out, 2, 3)) if add else None
    skip_shift = rng.integers(-4, 4, c_out) if add else None
    words = sf.job_words(x, w, bias, shift, config, skip=skip, skip_shift=skip_shift)
    cotiles = [sf.cotile_words(w, bias, shift, t, config, skip=skip, skip_shift=skip_shift)
               for t in range(sf.tiles(c_out, cols))]
    inputs = sf.input_words(x, config)
    got_input, got_cotiles = sf.split_job_words(words, c_in=c_in, height=3, width_px=4, kernel=k, c_out=c_out,
                                                config=config, skip_pixels=6 if add else 0)
    np.testing.assert_array_equal(got_input, inputs)
    assert len(got_cotiles) == len(cotiles)
    for got, want in zip(got_cotiles, cotiles):
        np.testing.assert_array_equal(got, want)
    # What the engine needs for its first pass comes first: the header, input tile 0, then the
    # first pass's weight rows (rows of tile 0, tap (0, 0)).
    header = cols + (6 * config.wt_words if add else 0)
    in_tile = inputs.size // sf.tiles(c_in, rows)
    np.testing.assert_array_equal(words[:header], cotiles[0][:header])
    np.testing.assert_array_equal(words[header:header + in_tile], inputs[:in_tile])
    first_pass = rows * config.wt_words
    np.testing.assert_array_equal(words[header + in_tile:header + in_tile + first_pass],
                                  cotiles[0][header:header + first_pass])
    with pytest.raises(ValueError, match="words, but a job of this layer streams"):
        sf.split_job_words(words[:-1], c_in=c_in, height=3, width_px=4, kernel=k, c_out=c_out, config=config,
                           skip_pixels=6 if add else 0)


def test_jobs_carry_the_layers_signedness():
    """FLAGS.IN_UNSIGNED/OUT_UNSIGNED follow the layer (docs/arithmetic.md §1); an unsigned output's
    values above 2^(W-1) - 1 come back as such, not as negative numbers."""
    rng = np.random.default_rng(9)
    program = random_program(rng, width=8, c_in=2, h=6, k=3, stride=1, pad=1, pool=False, c_mid=3, fc_out=2,
                             unsigned=(True, True, False))
    conv = program.layers[0]
    conv.weights[:] = 127
    conv.bias[:] = 0
    conv.fl_out = conv.fl_in + min(conv.fl_w)  # shift 0 on the smallest-fl channel: large outputs
    driver = Driver(ReferenceTransport(EngineConfig(rows=2, cols=3, width=8)))
    x = np.full((2, 6, 6), 255)
    [job] = driver.plan(conv, x)
    flags = job.registers["FLAGS"]
    assert flags & field_mask("FLAGS", "IN_UNSIGNED") and flags & field_mask("FLAGS", "OUT_UNSIGNED")
    assert not flags & field_mask("FLAGS", "SKIP_UNSIGNED")
    [fc_job] = driver.plan(program.layers[1], np.zeros(program.layers[1].in_shape, dtype=np.int64))
    assert not fc_job.registers["FLAGS"] & field_mask("FLAGS", "OUT_UNSIGNED")
    run = driver.run_image(program, x)
    expected = network.run(program, x[None])
    np.testing.assert_array_equal(run.layers[0].values, expected[0].values[0])
    assert run.layers[0].values.max() == 255


def test_refuses_a_program_that_reads_a_tensor_with_the_wrong_signedness():
    program = random_program(np.random.default_rng(0), width=8, c_in=2, h=8, k=3, stride=1, pad=1, pool=False,
                             c_mid=2, fc_out=2, unsigned=(False, True, False))
    program.layers[1].unsigned_in = False
    with pytest.raises(ProgramError, match="layer fc reads its input conv, which is unsigned, as signed"):
        Driver(ReferenceTransport(EngineConfig(rows=4, cols=2))).check(program)
