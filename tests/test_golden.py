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
