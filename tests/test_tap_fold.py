"""Kernel columns folded into the rows (radix.tap_fold): a folded job computes the layer's own
accumulators bit for bit, the placement folds exactly the few-channel layers, and the engine's
checks refuse folds it cannot run."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden
from radix.command_exec import command_error, unfold
from radix.engine_spec import FOLD_SPAN, EngineConfig
from radix.placement import place
from radix.program import Program
from radix.tap_fold import TapFold, plan
from test_space_to_depth import conv_layer

CONFIG = EngineConfig(rows=16, cols=24, width=8)


def engine_view(x, fold: TapFold, pad_left: int, out_w: int, stride_w: int):
    """What the engine's lane group g of folded column v reads for output column j: the input's
    column j*SW + v*F + g - pad_left, zero outside the map (docs/engine.md)."""
    c, h, w = x.shape
    view = np.zeros((fold.taps * c, h, out_w, fold.folded_kernel_w), dtype=np.int64)
    for g in range(fold.taps):
        for v in range(fold.folded_kernel_w):
            for j in range(out_w):
                column = j * stride_w + v * fold.taps + g - pad_left
                if 0 <= column < w:
                    view[g * c:(g + 1) * c, :, j, v] = x[:, :, column]
    return view


@settings(max_examples=80, deadline=None)
@given(c=st.integers(1, 8), kh=st.integers(1, 4), kw=st.integers(2, 15), sw=st.integers(1, 4), w=st.integers(1, 20),
       data=st.data())
def test_a_folded_job_sums_the_layers_products(c, kh, kw, sw, w, data):
    """The folded weights times what the engine's lanes read equal the layer's accumulators, and
    the reference executor's unfolded view of the job is the layer itself."""
    fold = plan(channels=c, lanes_in_order=True, in_ch=CONFIG.rows, kernel_w=kw, config=CONFIG)
    assert fold is not None and fold.taps * c <= CONFIG.rows and fold.folded_kernel_w * fold.taps <= FOLD_SPAN
    pad_left = data.draw(st.integers(0, kw - 1))
    pad_right = data.draw(st.integers(0, kw - 1))
    if w + pad_left + pad_right < kw:
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    h = kh + 2
    x = rng.integers(-128, 128, (c, h, w))
    weights = np.zeros((5, CONFIG.rows, kh, kw), dtype=np.int64)
    weights[:, :c] = rng.integers(-128, 128, (5, c, kh, kw))
    expected = golden.conv_accumulate(x[None], weights[:, :c], np.zeros(5, dtype=np.int64), stride=(1, sw),
                                      pad=(0, pad_left, 0, pad_right))[0]
    folded = fold.weights(weights)
    out_w = expected.shape[2]
    view = engine_view(x, fold, pad_left, out_w, sw)
    for i in range(expected.shape[1]):  # output row i reads input rows i .. i + KH - 1
        got = np.einsum("olkv,lkjv->oj", folded[:, : fold.taps * c], view[:, i:i + kh])
        np.testing.assert_array_equal(got, expected[:, i])
    x_full = np.zeros((CONFIG.rows, h, w), dtype=np.int64)
    x_full[:c] = x
    lanes, wide = unfold(x_full, folded, lanes=fold.lanes, taps=fold.taps)
    np.testing.assert_array_equal(lanes, x)
    np.testing.assert_array_equal(wide[..., :kw], weights[:, :c])
    assert not wide[..., kw:].any()


def test_plan_picks_the_fewest_passes_and_refuses_what_saves_none():
    assert plan(channels=3, lanes_in_order=True, in_ch=16, kernel_w=3, config=CONFIG) == TapFold(3, 3, 3)
    assert plan(channels=1, lanes_in_order=True, in_ch=16, kernel_w=5, config=CONFIG) == TapFold(1, 5, 5)
    assert plan(channels=4, lanes_in_order=True, in_ch=16, kernel_w=9, config=CONFIG) == TapFold(4, 3, 9)
    refused = {
        "more than half the rows": dict(channels=9, lanes_in_order=True, in_ch=16, kernel_w=3),
        "one kernel column": dict(channels=3, lanes_in_order=True, in_ch=16, kernel_w=1),
        "two input tiles": dict(channels=3, lanes_in_order=True, in_ch=32, kernel_w=3),
        "channels not in lanes 0..C-1": dict(channels=3, lanes_in_order=False, in_ch=16, kernel_w=3),
    }
    for why, kwargs in refused.items():
        assert plan(**kwargs, config=CONFIG) is None, why
    with pytest.raises(ValueError, match="not 3 channels"):
        TapFold(3, 3, 3).weights(np.ones((2, 16, 3, 3), dtype=np.int64))


def test_the_placement_folds_a_few_channel_stem_only():
    """An RGB 3x3 stem runs as 3 passes of one folded column; the 16-channel layer after it as before."""
    stem = conv_layer(3, 16, (3, 3), (1, 1), (1, 1, 1, 1), (32, 32))
    body = conv_layer(16, 16, (3, 3), (1, 1), (1, 1, 1, 1), (32, 32), name="body", inputs=("stem",))
    program = Program(width=8, input_shape=(3, 32, 32), input_fl=7, layers=[stem, body])
    fields = {info.layer: info.fields for info in place(program, CONFIG).commands}
    assert (fields["stem"]["fold_lanes"], fields["stem"]["fold_taps"], fields["stem"]["kernel_w"]) == (3, 3, 1)
    assert (fields["body"]["fold_lanes"], fields["body"]["kernel_w"]) == (0, 3)


def test_the_engine_checks_refuse_bad_folds():
    stem = conv_layer(3, 16, (3, 3), (1, 1), (1, 1, 1, 1), (8, 8))
    fields = place(Program(width=8, input_shape=(3, 8, 8), input_fl=7, layers=[stem]), CONFIG).commands[0].fields
    assert command_error(fields, CONFIG) is None
    bad = {
        "fold of 1 taps": dict(fold_taps=1, pad_left=0),
        "fold of 6 taps of 3 lanes": dict(fold_taps=6),
        "folded kernel of 5x4 columns": dict(kernel_w=5, fold_taps=4, fold_lanes=2),
        "one input tile": dict(in_ch=32, in_pixel_words=4),
        "sum_pool": dict(sum_pool=1, kernel_h=1, pad_top=0),
        "exceed IN_DEPTH": dict(in_h=4096 // 8),
    }
    for reason, change in bad.items():
        error = command_error({**fields, **change}, CONFIG)
        assert error is not None and error[1].startswith("LIMIT") and reason in error[1], (reason, error)
    # the padding bound is the folded kernel's columns, not kernel_w
    assert command_error({**fields, "pad_left": 2}, CONFIG) is None
    assert "padding" in command_error({**fields, "pad_left": 3}, CONFIG)[1]
