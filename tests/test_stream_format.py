"""The core's stream formats (radix.stream_format): what the placement lays out in memory and the
reference bus engine decodes, round trips and the order of a job's parts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden
from radix.engine_spec import EngineConfig


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
       st.integers(1, 3), st.booleans(), st.booleans(), st.booleans())
def test_job_stream_interleaves_the_first_output_tile_with_the_input(seed, rows, cols, c_in, c_out, k, add, striped,
                                                                      weights_first):
    from radix import stream_format as sf

    config = EngineConfig(rows=rows, cols=cols, width=8)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (c_in, 3, 4))
    w = rng.integers(-128, 128, (c_out, c_in, k, k))
    bias, shift = rng.integers(-1000, 1000, c_out), rng.integers(-8, 8, c_out)
    skip = rng.integers(-128, 128, (c_out, 2, 3)) if add else None
    skip_shift = rng.integers(-4, 4, c_out) if add else None
    words = sf.job_words(x, w, bias, shift, config, skip=skip, skip_shift=skip_shift, striped=striped,
                         weights_first=weights_first)
    cotiles = [sf.cotile_words(w, bias, shift, t, config, skip=skip, skip_shift=skip_shift)
               for t in range(sf.tiles(c_out, cols))]
    inputs = sf.input_words(x, config)
    got_input, got_cotiles = sf.split_job_words(words, c_in=c_in, height=3, width_px=4, kernel=k, c_out=c_out,
                                                config=config, skip_pixels=6 if add else 0, striped=striped,
                                                weights_first=weights_first)
    np.testing.assert_array_equal(got_input, inputs)
    assert len(got_cotiles) == len(cotiles)
    for got, want in zip(got_cotiles, cotiles):
        np.testing.assert_array_equal(got, want)
    # What the engine needs for its first pass comes first: the bias words, the first pass's
    # weight rows (rows of tile 0, tap (0, 0); a striped job's every tap of tile 0; a
    # weights-first job's every weight row of the first output tile), then input tile 0, which
    # the first pass (strip) trails (a weights-first job's input tiles one after another); the
    # first tile's skip pixels, which only its last pass adds, end its part of the stream.
    header = cols
    in_tile = inputs.size // sf.tiles(c_in, rows)
    first_pass = sf.leading_weight_words(k, config, striped=striped)
    assert first_pass == rows * config.wt_words * (k * k if striped else 1)
    if weights_first:
        first_pass = sf.tiles(c_in, rows) * sf.tile_weight_words(k, config)
        np.testing.assert_array_equal(words[header + first_pass:header + first_pass + inputs.size], inputs)
    np.testing.assert_array_equal(words[:header], cotiles[0][:header])
    np.testing.assert_array_equal(words[header:header + first_pass], cotiles[0][header:header + first_pass])
    np.testing.assert_array_equal(words[header + first_pass:header + first_pass + in_tile], inputs[:in_tile])
    first_end = inputs.size + cotiles[0].size
    skip_words = 6 * config.wt_words if add else 0
    np.testing.assert_array_equal(words[first_end - skip_words:first_end], cotiles[0][cotiles[0].size - skip_words:])
    with pytest.raises(ValueError, match="words, but a job of this layer streams"):
        sf.split_job_words(words[:-1], c_in=c_in, height=3, width_px=4, kernel=k, c_out=c_out, config=config,
                           skip_pixels=6 if add else 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 16]), st.integers(1, 24), st.integers(1, 8), st.booleans())
def test_a_narrow_input_streams_one_word_a_pixel(seed, width, rows, c_in, unsigned):
    """A narrow input (at most a word's channels, one input tile) streams the first word of each
    pixel group; decoded, the group's other lanes are zero. More channels than a word holds, or
    more than one input tile, are refused."""
    from radix import stream_format as sf

    config = EngineConfig(rows=rows, cols=3, width=width)
    c_in = min(c_in, config.lanes_per_word, rows)
    rng = np.random.default_rng(seed)
    lo, hi = golden.tensor_range(width, unsigned=unsigned)
    x = rng.integers(lo, hi + 1, (c_in, 3, 5))
    words = sf.input_words(x, config, narrow=True)
    assert words.size == sf.input_tile_words(3, 5, config, narrow=True) == 15
    np.testing.assert_array_equal(words, sf.input_words(x, config)[:: config.in_words])
    np.testing.assert_array_equal(sf.decode_input_words(words, c_in, 3, 5, config, unsigned=unsigned, narrow=True), x)
    w = rng.integers(-8, 8, (2, c_in, 2, 2))
    job = sf.job_words(x, w, np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), config, narrow=True)
    got, _ = sf.split_job_words(job, c_in=c_in, height=3, width_px=5, kernel=2, c_out=2, config=config, narrow=True)
    np.testing.assert_array_equal(got, words)
    with pytest.raises(ValueError, match="narrow input holds at most"):
        sf.input_words(rng.integers(lo, hi + 1, (config.lanes_per_word + 1, 3, 5)), config, narrow=True)
    with pytest.raises(ValueError, match="narrow input is one input tile"):
        sf.decode_input_words(words, rows + 1, 3, 5, config, narrow=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([4, 8, 16]), st.integers(0, 4), st.integers(1, 40))
def test_packed_lanes_are_the_low_bits_little_endian(seed, width, groups, lanes):
    """Every width packs lane ``l`` of a group into bits ``(l % (64/W)) * W`` up of word
    ``l // (64/W)`` (Python integers as the reference, whatever numpy path packs them), and
    unpacks to the same values read as signed or unsigned."""
    from radix import stream_format as sf

    rng = np.random.default_rng(seed)
    values = rng.integers(-(1 << width), 1 << width, (groups, lanes))
    per_word = 64 // width
    expected = [sum((int(v) & ((1 << width) - 1)) << (width * (lane % per_word))
                    for lane, v in enumerate(row) if lane // per_word == word)
                for row in values for word in range(-(-lanes // per_word))]
    words = sf.pack_lanes(values, width=width)
    assert words.dtype == np.uint64 and [int(w) for w in words] == expected
    low = values & ((1 << width) - 1)
    np.testing.assert_array_equal(sf.unpack_lanes(words, lanes=lanes, width=width, unsigned=True),
                                  low.reshape(groups, lanes))
    np.testing.assert_array_equal(sf.unpack_lanes(words, lanes=lanes, width=width),
                                  np.where(low >= 1 << (width - 1), low - (1 << width), low).reshape(groups, lanes))
