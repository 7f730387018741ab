"""The golden model against an independent float-then-round computation of the contract.

The reference here uses torch's float64 convolution/linear (exact: every value stays far below
2^53 and the scalings are powers of two) and applies docs/arithmetic.md §1, §2, §5, §6 and §9
literally, from the fractional lengths alone: the weights' fl per output channel (so every
channel has its own data shift and skip shift), each tensor signed or unsigned, the ranges
written out here rather than taken from radix.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden

WIDTHS = st.sampled_from([8, 16])


def value_range(width: int, unsigned: bool) -> tuple[int, int]:
    """§1, written out: [0, 2^W - 1] unsigned, [-2^(W-1), 2^(W-1) - 1] signed."""
    return (0, 2**width - 1) if unsigned else (-(2 ** (width - 1)), 2 ** (width - 1) - 1)


def reference_layer(x, w, b, *, fl_in, fl_w, fl_out, width, relu, pool=False, stride=1, pads=(0, 0, 0, 0),
                    kind="conv", unsigned_out=False, skip=None, fl_skip=None):
    """Real-valued layer output (with the skip rounded half up to each channel's accumulator step,
    §9), then the contract's rounding, ReLU, saturation to the output's range and pooling.

    ``fl_w`` has one entry per output channel (or one for all)."""
    c_out = w.shape[0]
    fl_acc = fl_in + np.broadcast_to(np.asarray(fl_w, dtype=np.int64), (c_out,))  # §4, per channel
    per_channel = (1, c_out) + (1,) * (w.ndim - 2)
    step = torch.tensor(2.0 ** -fl_acc.astype(np.float64))  # the accumulator's step per channel
    xf = torch.tensor(x, dtype=torch.float64) * 2.0**-fl_in
    wf = torch.tensor(w, dtype=torch.float64) * (step * 2.0**fl_in).reshape((c_out,) + (1,) * (w.ndim - 1))
    bf = torch.tensor(b, dtype=torch.float64) * step
    if kind == "conv":
        top, left, bottom, right = pads
        xf = torch.nn.functional.pad(xf, (left, right, top, bottom))
        real = torch.nn.functional.conv2d(xf, wf, bf, stride=stride)
    else:
        real = torch.nn.functional.linear(xf, wf, bf)
    if skip is not None:
        s = torch.tensor(skip, dtype=torch.float64) * 2.0**-fl_skip
        grid = step.reshape(per_channel)
        real = real + torch.floor(s / grid + 0.5) * grid  # §9: the skip at the accumulator's step
    r = torch.floor(real * 2.0**fl_out + 0.5)
    if pool:  # §6: an odd last row/column is never computed nor counted
        r = r[..., : r.shape[-2] // 2 * 2, : r.shape[-1] // 2 * 2]
    if relu:
        r = torch.clamp(r, min=0)
    lo, hi = value_range(width, unsigned_out)
    saturated = int(((r < lo) | (r > hi)).sum())
    y = torch.clamp(r, lo, hi)
    if pool:
        y = torch.nn.functional.max_pool2d(y, 2)
    return y.numpy().astype(np.int64), saturated


@st.composite
def fls(draw, c_out: int, width: int):
    """fl_in, per-channel fl_w within a few bits of each other, and fl_out giving data shifts from
    left shifts (negative) to far right ones, saturating either way."""
    fl_in = draw(st.integers(-4, 12))
    base = draw(st.integers(-4, 12))
    fl_w = [base + draw(st.integers(-3, 3)) for _ in range(c_out)]
    shift = draw(st.integers(-width, 2 * width + 8))  # channel 0's; the others differ by fl_w
    return fl_in, fl_w, fl_in + fl_w[0] - shift


@st.composite
def skip_of(draw, shape, fl_acc, width: int, rng):
    """A skip tensor of either signedness and its fl: every channel's skip shift
    t = fl_skip - fl_acc[c] from the leftmost the engine executes to right shifts past W (§9)."""
    unsigned = draw(st.booleans())
    lo, _ = golden.skip_shift_range(width, unsigned=unsigned)
    fl_skip = max(fl_acc) + draw(st.integers(lo, width + 4))  # the smallest t is the drawn one
    v_lo, v_hi = value_range(width, unsigned)
    skip = rng.integers(v_lo, v_hi + 1, size=shape)
    skip.flat[:2] = [v_lo, v_hi][: skip.size]
    return skip, fl_skip, unsigned


@st.composite
def layer_case(draw, kind: str):
    """A convolution (padding that differs per side, pooling) or fully connected layer with per-channel
    weight fls, each tensor signed or unsigned, with or without a residual add."""
    width = draw(WIDTHS)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c_out = draw(st.integers(1, 5))
    unsigned_in, unsigned_out = draw(st.booleans()), draw(st.booleans())
    x_lo, x_hi = value_range(width, unsigned_in)
    w_lo, w_hi = value_range(width, False)
    if kind == "conv":
        k, stride = draw(st.integers(1, 7)), draw(st.integers(1, 4))
        pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
        c_in = draw(st.integers(1, 5))
        h = draw(st.integers(max(1, k - pads[0] - pads[2]), 11))
        wd = draw(st.integers(max(1, k - pads[1] - pads[3]), 11))
        x_shape, w_shape = (2, c_in, h, wd), (c_out, c_in, k, k)
        out_shape = (2, c_out, (h + pads[0] + pads[2] - k) // stride + 1, (wd + pads[1] + pads[3] - k) // stride + 1)
        pool = draw(st.booleans()) and min(out_shape[2:]) >= 2
    else:
        k = stride = 1
        pads, pool = (0, 0, 0, 0), False
        features = draw(st.integers(1, 300))
        x_shape, w_shape, out_shape = (3, features), (c_out, features), (3, c_out)
    x = rng.integers(x_lo, x_hi + 1, size=x_shape)
    w = rng.integers(w_lo, w_hi + 1, size=w_shape)
    x.flat[0], w.flat[0] = (x_hi if unsigned_in else x_lo), w_lo  # the largest magnitude, -2^(W-1) * hi
    acc = 2 * width + 16
    b = rng.integers(-(2 ** (acc - 2)) // 2**10, 2 ** (acc - 2) // 2**10, size=c_out)
    fl_in, fl_w, fl_out = draw(fls(c_out, width))
    case = dict(x=x, w=w, b=b, fl_in=fl_in, fl_w=fl_w, fl_out=fl_out, width=width, relu=draw(st.booleans()),
                pool=pool, stride=stride, pads=pads, kind=kind, unsigned_in=unsigned_in, unsigned_out=unsigned_out,
                skip=None, fl_skip=None, unsigned_skip=False)
    if draw(st.booleans()):
        skip, fl_skip, unsigned_skip = draw(skip_of(out_shape, [fl_in + f for f in fl_w], width, rng))
        case.update(skip=skip, fl_skip=fl_skip, unsigned_skip=unsigned_skip)
    return case


def golden_layer(case) -> golden.Requantized:
    """The golden model on ``case``, given the shifts the fls imply (§5, §9) and the signedness."""
    fl_acc = case["fl_in"] + np.asarray(case["fl_w"])
    args = dict(shift=fl_acc - case["fl_out"], relu=case["relu"], width=case["width"], unsigned_in=case["unsigned_in"],
                unsigned_out=case["unsigned_out"])
    if case["skip"] is not None:
        args.update(skip=case["skip"], skip_shift=case["fl_skip"] - fl_acc, unsigned_skip=case["unsigned_skip"])
    if case["kind"] == "fc":
        return golden.linear(case["x"], case["w"], case["b"], **args)
    return golden.conv2d(case["x"], case["w"], case["b"], stride=case["stride"], pad=case["pads"], pool=case["pool"],
                         **args)


def reference_of(case):
    return reference_layer(case["x"], case["w"], case["b"], fl_in=case["fl_in"], fl_w=case["fl_w"],
                           fl_out=case["fl_out"], width=case["width"], relu=case["relu"], pool=case["pool"],
                           stride=case["stride"], pads=case["pads"], kind=case["kind"],
                           unsigned_out=case["unsigned_out"], skip=case["skip"], fl_skip=case["fl_skip"])


@settings(max_examples=400, deadline=None)
@given(layer_case("conv"))
def test_conv2d_matches_float_then_round(case):
    expected, saturated = reference_of(case)
    got = golden_layer(case)
    np.testing.assert_array_equal(got.values, expected)
    assert got.saturated == saturated


@settings(max_examples=200, deadline=None)
@given(layer_case("fc"))
def test_linear_matches_float_then_round(case):
    expected, saturated = reference_of(case)
    got = golden_layer(case)
    np.testing.assert_array_equal(got.values, expected)
    assert got.saturated == saturated


def test_reference_checks_every_channel_shift():
    """The reference is not a copy of golden's per-channel handling: a golden that applied channel
    0's shift to every channel would disagree with it on a layer whose fl_w differ per channel."""
    x = np.full((1, 1, 1, 1), 100)
    w = np.array([[[[64]]], [[[64]]]])
    case = dict(x=x, w=w, b=np.zeros(2, dtype=np.int64), fl_in=0, fl_w=[6, 4], fl_out=0, width=8, relu=False,
                pool=False, stride=1, pads=(0, 0, 0, 0), kind="conv", unsigned_in=True, unsigned_out=True,
                skip=None, fl_skip=None, unsigned_skip=False)
    expected, _ = reference_of(case)
    assert expected.reshape(-1).tolist() == [100, 255]  # 100 * 64 / 2^6; 100 * 64 / 2^4 = 400 saturates
    np.testing.assert_array_equal(golden_layer(case).values, expected)
    wrong = golden.conv2d(x, w, case["b"], stride=1, pad=0, shift=6, relu=False, pool=False, width=8,
                          unsigned_in=True, unsigned_out=True)
    assert not np.array_equal(wrong.values, expected)


@pytest.mark.parametrize(
    "value, expected",
    [(2.5, 3), (-2.5, -2), (-2.6, -3), (2.4999, 2), (0.5, 1), (-0.5, 0), (127.6, 127), (-128.5, -128), (300.0, 127), (-1e9, -128)],
)
def test_quantize_rounds_half_up_and_saturates(value, expected):
    assert golden.quantize(value, 0, 8) == expected


@pytest.mark.parametrize(
    "value, expected",
    [(2.5, 3), (-0.5, 0), (-0.6, 0), (-3.0, 0), (127.5, 128), (254.5, 255), (255.4, 255), (300.0, 255), (-1e9, 0)],
)
def test_quantize_unsigned_saturates_to_0_and_2w_minus_1(value, expected):
    """§1, §2: an unsigned tensor holds [0, 2^W - 1]; a negative value becomes 0."""
    assert golden.quantize(value, 0, 8, unsigned=True) == expected
    assert golden.tensor_range(8, unsigned=True) == (0, 255) and golden.tensor_range(16, unsigned=True) == (0, 65535)
    assert golden.tensor_range(8) == (-128, 127)


@pytest.mark.parametrize("value, fl", [(0.3, 107), (-0.3, 107), (1e30, 40), (-1e30, 40)])
def test_values_beyond_int64_saturate_to_their_own_end(value, fl):
    """A dead channel's tiny weights give it a huge fl; its bias, scaled, lies beyond int64 and must
    still saturate to the end of its sign, not wrap in the cast (§2, §4)."""
    acc_lo, acc_hi = golden.tensor_range(golden.acc_width(8) - 1)
    assert golden.quantize_bias(value, fl, 8) == (acc_hi if value > 0 else acc_lo)
    assert golden.quantize(value, fl, 8) == (127 if value > 0 else -128)
    assert golden.quantize(value, fl, 8, unsigned=True) == (255 if value > 0 else 0)


def test_unsigned_output_without_relu_saturates_negatives_and_counts_them():
    """§5: r = -3 becomes 0 and counts as saturated; with a ReLU it becomes 0 and does not."""
    acc = np.array([-3, 0, 255, 256, 1000])
    plain = golden.requantize(acc, 0, relu=False, width=8, unsigned=True)
    assert plain.values.tolist() == [0, 0, 255, 255, 255] and plain.saturated == 3
    relu = golden.requantize(acc, 0, relu=True, width=8, unsigned=True)
    assert relu.values.tolist() == [0, 0, 255, 255, 255] and relu.saturated == 2
    signed = golden.requantize(acc, 0, relu=False, width=8)
    assert signed.values.tolist() == [-3, 0, 127, 127, 127] and signed.saturated == 3


def test_pooling_compares_unsigned_values():
    """§6: an unsigned 200 beats 100, although its W-bit pattern reads -56 as two's complement."""
    acc = np.array([100, 200, 3, 50]).reshape(1, 1, 2, 2)
    out = golden.output_stage(acc, 0, relu=False, pool=True, width=8, unsigned=True)
    assert out.values.reshape(-1).tolist() == [200]


@pytest.mark.parametrize("acc, shift, expected", [(5, 1, 3), (-5, 1, -2), (-6, 2, -1), (6, 2, 2), (7, 0, 7), (3, -2, 12), (-3, -3, -24)])
def test_round_shift_cases(acc, shift, expected):
    assert golden.round_shift(acc, shift) == expected


@settings(max_examples=200, deadline=None)
@given(WIDTHS, st.integers(-(2**40), 2**40), st.booleans(), st.booleans())
def test_clamped_shifts_change_nothing(width, acc, relu, unsigned):
    """§5: every shift beyond [-W, A] gives the same output as the range's end, in either range."""
    a = golden.acc_width(width)
    acc = max(min(acc, 2 ** (a - 1) - 2 ** (2 * width - 2)), -(2 ** (a - 1)) + 2 ** (2 * width - 2))
    lo, hi = value_range(width, unsigned)
    for far, edge in ((-width - 7, -width), (a + 9, a)):
        # Python integers: the unclamped left shift would overflow int64
        unclamped = acc << -far if far < 0 else (acc + (1 << (far - 1))) >> far
        if relu:
            unclamped = max(unclamped, 0)
        got = golden.requantize(acc, edge, relu=relu, width=width, unsigned=unsigned)
        assert min(max(unclamped, lo), hi) == got.values
        assert got.saturated == int(not lo <= unclamped <= hi)


@pytest.mark.parametrize("add", [False, True])
@pytest.mark.parametrize("unsigned_in", [False, True])
@pytest.mark.parametrize("width", [8, 16])
def test_accumulator_bound_is_exact_at_the_limit(width, unsigned_in, add):
    """§3, §9: at K = max_reduction the worst products, the largest bias and (with an add) the
    largest aligned skip of either signedness stay inside A bits; one bit more of K would not."""
    a = golden.acc_width(width)
    k = golden.max_reduction(add=add, unsigned_in=unsigned_in)
    assert k == 2 ** (16 - unsigned_in - add) - 1
    x_lo, x_hi = value_range(width, unsigned_in)
    product = 2 ** (width - 1) * max(-x_lo, x_hi)  # |w * x| at w = -2^(W-1)
    bias = 2 ** (a - 2)
    skips = [0]
    if add:  # the largest |round_shift(b, t)|: t at the bottom of its range, b at the end of its range
        skips = []
        for unsigned_skip in (False, True):
            t = golden.skip_shift_range(width, unsigned=unsigned_skip)[0]
            s_lo, s_hi = value_range(width, unsigned_skip)
            skips.append(max(-s_lo, s_hi) << -t)
    for skip in skips:
        assert k * product + bias + skip <= 2 ** (a - 1)  # |acc| < 2^(A-1): the sum of strict bounds
        assert 2 * (k + 1) * product + bias + skip > 2 ** (a - 1)  # a limit twice as high would wrap
    with pytest.raises(golden.ContractError, match="reduction length"):
        golden.check_reduction(k + 1, add=add, unsigned_in=unsigned_in)
    golden.check_reduction(k, add=add, unsigned_in=unsigned_in)


def test_refuses_out_of_contract_geometry():
    with pytest.raises(golden.ContractError, match="kernel 16x16"):
        golden.check_conv_geometry(c_in=1, height=19, width_px=19, kernel=16, stride=1, pad=0)
    with pytest.raises(golden.ContractError, match="kernel 3x16"):
        golden.check_conv_geometry(c_in=1, height=19, width_px=19, kernel=(3, 16), stride=1, pad=0)
    with pytest.raises(golden.ContractError, match=r"padding \(0, 2, 0, 0\).*0..1 left and right for a 3x2"):
        golden.check_conv_geometry(c_in=1, height=9, width_px=9, kernel=(3, 2), stride=1, pad=(0, 2, 0, 0))
    golden.check_conv_geometry(c_in=1, height=9, width_px=9, kernel=(3, 2), stride=(1, 4), pad=(2, 1, 2, 1))
    with pytest.raises(golden.ContractError, match="groups=3 does not divide the 8 input and 6 output channels"):
        golden.check_conv_geometry(c_in=8, height=9, width_px=9, kernel=3, stride=1, pad=0, groups=3, c_out=6)
    # K counts one group's channels: a depthwise layer of 4096 channels reduces over 9 products
    golden.check_conv_geometry(c_in=4096, height=3, width_px=3, kernel=3, stride=1, pad=0, groups=4096)
    with pytest.raises(golden.ContractError, match="reduction length"):
        golden.check_reduction(65536)
    with pytest.raises(golden.ContractError, match="an unsigned input"):
        golden.check_conv_geometry(c_in=4096, height=3, width_px=3, kernel=3, stride=1, pad=0, unsigned_in=True)
    with pytest.raises(golden.ContractError, match="stride 5x5"):
        golden.check_conv_geometry(c_in=1, height=9, width_px=9, kernel=3, stride=5, pad=0)
    with pytest.raises(golden.ContractError, match="stride 1x5"):
        golden.check_conv_geometry(c_in=1, height=9, width_px=9, kernel=3, stride=(1, 5), pad=0)


def test_refuses_values_outside_their_tensor_range():
    """§1: the layer functions check each tensor against its signedness."""
    w, b = np.ones((1, 1, 1, 1), dtype=np.int64), np.zeros(1)
    with pytest.raises(golden.ContractError, match="the input holds 200, outside the signed 8-bit range"):
        golden.conv2d(np.full((1, 1, 1, 1), 200), w, b, stride=1, pad=0, shift=0, relu=False, pool=False, width=8)
    golden.conv2d(np.full((1, 1, 1, 1), 200), w, b, stride=1, pad=0, shift=0, relu=False, pool=False, width=8,
                  unsigned_in=True)
    with pytest.raises(golden.ContractError, match="the skip tensor holds -1, outside the unsigned"):
        golden.linear(np.ones((1, 1)), np.ones((1, 1)), b, shift=0, relu=False, width=8, skip=-np.ones((1, 1)),
                      skip_shift=0, unsigned_skip=True)


@pytest.mark.parametrize("unsigned", [False, True])
@pytest.mark.parametrize("width", [8, 16])
def test_clamped_skip_shifts_change_nothing(width, unsigned):
    """§9: every skip shift above the executed range aligns every skip of either range as the
    range's end does (to 0), written out with Python integers; W itself would not do for an
    unsigned skip, whose values from 2^(W-1) up still round to 1 there."""
    lo, hi = golden.skip_shift_range(width, unsigned=unsigned)
    values = list(range(*value_range(width, unsigned))) + [value_range(width, unsigned)[1]]
    skip = np.asarray(values)
    for t in range(hi, hi + 6):
        exact = [(b + (1 << (t - 1))) >> t for b in values]
        assert exact == [0] * len(values)
        np.testing.assert_array_equal(golden.align_skip(skip, t, width, unsigned=unsigned), exact)
    at_w = [(b + (1 << (width - 1))) >> width for b in values]
    assert any(at_w) == unsigned


def test_skip_shift_beyond_the_engine_is_refused():
    lo, _ = golden.skip_shift_range(8)
    with pytest.raises(golden.ContractError, match="skip shift"):
        golden.align_skip(np.ones(3), lo - 1, 8)
    golden.align_skip(np.ones(3), lo, 8)
    with pytest.raises(golden.ContractError, match="skip shift .* unsigned skip"):  # §9: one bit less
        golden.align_skip(np.ones(3), lo, 8, unsigned=True)


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
