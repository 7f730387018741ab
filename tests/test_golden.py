"""The golden model against an independent float-then-round computation of the contract.

The reference here uses torch's float64 convolution/linear (exact: every value stays far below
2^53 and the scalings are powers of two) and applies docs/arithmetic.md §2, §5 and §6 literally.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden

WIDTHS = st.sampled_from([8, 16])


def reference_layer(x, w, b, *, fl_in, fl_w, fl_out, width, relu, pool=False, stride=1, pad=0, kind="conv"):
    """Real-valued layer output, then the contract's rounding, ReLU, saturation and pooling."""
    xf = torch.tensor(x, dtype=torch.float64) * 2.0**-fl_in
    wf = torch.tensor(w, dtype=torch.float64) * 2.0**-fl_w
    bf = torch.tensor(b, dtype=torch.float64) * 2.0 ** -(fl_in + fl_w)
    if kind == "conv":
        real = torch.nn.functional.conv2d(xf, wf, bf, stride=stride, padding=pad)
    else:
        real = torch.nn.functional.linear(xf, wf, bf)
    r = torch.floor(real * 2.0**fl_out + 0.5)
    if pool:  # §6: an odd last row/column is never computed nor counted
        r = r[..., : r.shape[-2] // 2 * 2, : r.shape[-1] // 2 * 2]
    if relu:
        r = torch.clamp(r, min=0)
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    saturated = int(((r < lo) | (r > hi)).sum())
    y = torch.clamp(r, lo, hi)
    if pool:
        y = torch.nn.functional.max_pool2d(y, 2)
    return y.numpy().astype(np.int64), saturated


@st.composite
def conv_case(draw):
    width = draw(WIDTHS)
    k = draw(st.integers(1, 7))
    stride = draw(st.integers(1, 4))
    pad = draw(st.integers(0, k - 1))
    c_in, c_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h = draw(st.integers(max(1, k - 2 * pad), 11))
    wd = draw(st.integers(max(1, k - 2 * pad), 11))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1)
    x = rng.integers(lo, hi, size=(2, c_in, h, wd))
    w = rng.integers(lo, hi, size=(c_out, c_in, k, k))
    acc = 2 * width + 16
    b = rng.integers(-(2 ** (acc - 2)) // 2**10, 2 ** (acc - 2) // 2**10, size=c_out)
    fl_in, fl_w = draw(st.integers(-4, 12)), draw(st.integers(-4, 12))
    # shifts from left (negative) to far right, saturating either way
    shift = draw(st.integers(-width, 2 * width + 8))
    fl_out = fl_in + fl_w - shift
    h_out = (h + 2 * pad - k) // stride + 1
    w_out = (wd + 2 * pad - k) // stride + 1
    pool = draw(st.booleans()) and h_out >= 2 and w_out >= 2
    return dict(x=x, w=w, b=b, fl_in=fl_in, fl_w=fl_w, fl_out=fl_out, width=width, relu=draw(st.booleans()),
                pool=pool, stride=stride, pad=pad)


@settings(max_examples=300, deadline=None)
@given(conv_case())
def test_conv2d_matches_float_then_round(case):
    expected, saturated = reference_layer(**case)
    got = golden.conv2d(case["x"], case["w"], case["b"], stride=case["stride"], pad=case["pad"],
                        shift=case["fl_in"] + case["fl_w"] - case["fl_out"], relu=case["relu"], pool=case["pool"],
                        width=case["width"])
    np.testing.assert_array_equal(got.values, expected)
    assert got.saturated == saturated


@settings(max_examples=200, deadline=None)
@given(WIDTHS, st.integers(1, 300), st.integers(1, 12), st.integers(-16, 60), st.booleans(), st.integers(0, 2**32 - 1))
def test_linear_matches_float_then_round(width, f_in, f_out, shift, relu, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1)
    x = rng.integers(lo, hi, size=(3, f_in))
    w = rng.integers(lo, hi, size=(f_out, f_in))
    b = rng.integers(-(2**20), 2**20, size=f_out)
    fl_in, fl_w = 3, 5
    expected, saturated = reference_layer(x, w, b, fl_in=fl_in, fl_w=fl_w, fl_out=fl_in + fl_w - shift,
                                          width=width, relu=relu, kind="fc")
    got = golden.linear(x, w, b, shift=shift, relu=relu, width=width)
    np.testing.assert_array_equal(got.values, expected)
    assert got.saturated == saturated


@pytest.mark.parametrize(
    "value, expected",
    [(2.5, 3), (-2.5, -2), (-2.6, -3), (2.4999, 2), (0.5, 1), (-0.5, 0), (127.6, 127), (-128.5, -128), (300.0, 127), (-1e9, -128)],
)
def test_quantize_rounds_half_up_and_saturates(value, expected):
    assert golden.quantize(value, 0, 8) == expected


@pytest.mark.parametrize("acc, shift, expected", [(5, 1, 3), (-5, 1, -2), (-6, 2, -1), (6, 2, 2), (7, 0, 7), (3, -2, 12), (-3, -3, -24)])
def test_round_shift_cases(acc, shift, expected):
    assert golden.round_shift(acc, shift) == expected


@settings(max_examples=200, deadline=None)
@given(WIDTHS, st.integers(-(2**40), 2**40), st.booleans())
def test_clamped_shifts_change_nothing(width, acc, relu):
    """§5: every shift beyond [-W, A] gives the same output as the range's end."""
    a = golden.acc_width(width)
    acc = max(min(acc, 2 ** (a - 1) - 2 ** (2 * width - 2)), -(2 ** (a - 1)) + 2 ** (2 * width - 2))
    lo, hi = golden.int_range(width)
    for far, edge in ((-width - 7, -width), (a + 9, a)):
        # Python integers: the unclamped left shift would overflow int64
        unclamped = acc << -far if far < 0 else (acc + (1 << (far - 1))) >> far
        if relu:
            unclamped = max(unclamped, 0)
        assert min(max(unclamped, lo), hi) == golden.requantize(acc, edge, relu=relu, width=width).values


def test_accumulator_bound_is_exact_at_the_limit():
    """§3: the worst case at K = 65535 plus the largest bias stays inside A bits."""
    for width in (8, 16):
        a = golden.acc_width(width)
        worst = golden.MAX_REDUCTION * 2 ** (2 * width - 2) + 2 ** (a - 2) - 1
        assert worst < 2 ** (a - 1)
        assert math.log2(golden.MAX_REDUCTION + 1) == 16


def test_refuses_out_of_contract_geometry():
    with pytest.raises(golden.ContractError, match="kernel 8x8"):
        golden.check_conv_geometry(c_in=1, height=9, width_px=9, kernel=8, stride=1, pad=0)
    with pytest.raises(golden.ContractError, match="reduction length"):
        golden.check_reduction(65536)
    with pytest.raises(golden.ContractError, match="stride 5"):
        golden.check_conv_geometry(c_in=1, height=9, width_px=9, kernel=3, stride=5, pad=0)


@st.composite
def residual_case(draw):
    """A convolution with padding that differs per side and a residual add (§7, §9)."""
    width = draw(WIDTHS)
    k = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
    c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h = draw(st.integers(max(1, k - pads[0] - pads[2]), 9))
    wd = draw(st.integers(max(1, k - pads[1] - pads[3]), 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1)
    h_out = (h + pads[0] + pads[2] - k) // stride + 1
    w_out = (wd + pads[1] + pads[3] - k) // stride + 1
    skip_lo, _ = golden.skip_shift_range(width)
    # skip shifts from the leftmost the engine executes to right shifts past W (clamped, no change)
    skip_shift = np.asarray([draw(st.integers(skip_lo, width + 4)) for _ in range(c_out)])
    pool = draw(st.booleans()) and h_out >= 2 and w_out >= 2
    return dict(x=rng.integers(lo, hi, size=(2, c_in, h, wd)), w=rng.integers(lo, hi, size=(c_out, c_in, k, k)),
                b=rng.integers(-(2**20), 2**20, size=c_out), skip=rng.integers(lo, hi, size=(2, c_out, h_out, w_out)),
                skip_shift=skip_shift, shift=draw(st.integers(-width, 2 * width + 8)), width=width, stride=stride,
                pads=pads, relu=draw(st.booleans()), pool=pool)


@settings(max_examples=300, deadline=None)
@given(residual_case())
def test_residual_add_matches_float_then_round(case):
    """Independent reference: real sum, the skip rounded half up to the accumulator's step, one
    rounding to the output, then ReLU, saturation and pooling, exactly as §9 states."""
    top, left, bottom, right = case["pads"]
    x = torch.nn.functional.pad(torch.tensor(case["x"], dtype=torch.float64), (left, right, top, bottom))
    real = torch.nn.functional.conv2d(x, torch.tensor(case["w"], dtype=torch.float64),
                                      torch.tensor(case["b"], dtype=torch.float64), stride=case["stride"])
    t = torch.tensor(case["skip_shift"], dtype=torch.float64).reshape(1, -1, 1, 1)
    aligned = torch.floor(torch.tensor(case["skip"], dtype=torch.float64) * 2.0**-t + 0.5)
    r = torch.floor((real + aligned) * 2.0 ** -case["shift"] + 0.5)
    if case["pool"]:
        r = r[..., : r.shape[-2] // 2 * 2, : r.shape[-1] // 2 * 2]
    if case["relu"]:
        r = torch.clamp(r, min=0)
    lo, hi = -(2 ** (case["width"] - 1)), 2 ** (case["width"] - 1) - 1
    saturated = int(((r < lo) | (r > hi)).sum())
    y = torch.clamp(r, lo, hi)
    if case["pool"]:
        y = torch.nn.functional.max_pool2d(y, 2)
    got = golden.conv2d(case["x"], case["w"], case["b"], stride=case["stride"], pad=case["pads"],
                        shift=case["shift"], relu=case["relu"], pool=case["pool"], width=case["width"],
                        skip=case["skip"], skip_shift=case["skip_shift"])
    np.testing.assert_array_equal(got.values, y.numpy().astype(np.int64))
    assert got.saturated == saturated


def test_skip_shift_beyond_the_engine_is_refused():
    lo, _ = golden.skip_shift_range(8)
    with pytest.raises(golden.ContractError, match="skip shift"):
        golden.align_skip(np.ones(3), lo - 1, 8)


@settings(max_examples=100, deadline=None)
@given(WIDTHS, st.sampled_from([1, 2, 4]), st.integers(1, 4), st.integers(-3, 6), st.integers(-2, 3),
       st.integers(0, 2**32 - 1))
def test_average_pooling_with_a_power_of_two_window_is_the_exact_mean(width, k, channels, fl_in, extra, seed):
    """§10: diagonal weights m = 2^fl_w / k^2 give floor(mean * 2^(fl_out - fl_in) + 1/2)."""
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1)
    size = k * int(rng.integers(1, 4)) + int(rng.integers(0, k))  # odd leftovers are dropped
    x = rng.integers(lo, hi, size=(2, channels, size, size))
    fl_w = 2 * int(math.log2(k))  # m = 1
    weights = np.zeros((channels, channels, k, k), dtype=np.int64)
    weights[np.arange(channels), np.arange(channels)] = 1
    fl_out = fl_in + extra
    got = golden.conv2d(x, weights, np.zeros(channels), stride=k, pad=0, shift=fl_in + fl_w - fl_out, relu=False,
                        pool=False, width=width)
    n = size // k
    windows = x[:, :, : n * k, : n * k].reshape(2, channels, n, k, n, k).astype(np.float64)
    mean = windows.mean(axis=(3, 5))
    expected = np.clip(np.floor(mean * 2.0**extra + 0.5), lo, hi - 1)
    np.testing.assert_array_equal(got.values, expected.astype(np.int64))
