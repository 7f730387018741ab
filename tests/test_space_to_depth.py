"""The input written space-to-depth (radix.space_to_depth): the stride-1 twin of a strided first
convolution computes the same accumulators bit for bit, and the placement uses it only where it
adds no pass."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden
from radix.engine_spec import EngineConfig
from radix.placement import place
from radix.program import INPUT, Layer, Program
from radix.space_to_depth import SpaceToDepth, plan

CONFIG = EngineConfig(rows=16, cols=24, width=8)


def conv_layer(c_in, c_out, kernel, stride, padding, in_hw, *, groups=1, seed=0, name="stem", inputs=(INPUT,)):
    rng = np.random.default_rng(seed)
    kh, kw = kernel
    h, w = in_hw
    out_h = (h + padding[0] + padding[2] - kh) // stride[0] + 1
    out_w = (w + padding[1] + padding[3] - kw) // stride[1] + 1
    return Layer(name=name, kind="conv", modules=[name], in_shape=(c_in, h, w), out_shape=(c_out, out_h, out_w),
                 kernel=kernel, stride=stride, padding=padding, relu=True, pool=False, fl_in=7, fl_w=[7], fl_out=5,
                 weight_bits=8, weights=rng.integers(-128, 128, (c_out, c_in // groups, kh, kw)),
                 bias=rng.integers(-500, 500, c_out), inputs=list(inputs), groups=groups)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 4), kh=st.integers(1, 11), kw=st.integers(1, 5), sh=st.integers(1, 4), sw=st.integers(1, 4),
       h=st.integers(1, 23), w=st.integers(1, 13), data=st.data())
def test_the_twin_computes_the_same_accumulators(c, kh, kw, sh, sw, h, w, data):
    pads = [data.draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)]
    padding = (pads[0], pads[1], pads[2], pads[3])
    if h + pads[0] + pads[2] < kh or w + pads[1] + pads[3] < kw:
        return
    layer = conv_layer(c, 5, (kh, kw), (sh, sw), padding, (h, w), seed=data.draw(st.integers(0, 99)))
    blocks = SpaceToDepth(block=(sh, sw), in_shape=(c, h, w))
    twin = blocks.layer(layer)
    x = np.random.default_rng(kh * 7 + w).integers(-128, 128, (2, c, h, w))
    assert twin.stride == (1, 1) and twin.in_shape == blocks.shape
    expected = golden.conv_accumulate(x, layer.weights, layer.bias, stride=(sh, sw), pad=padding)
    if min(twin.padding) < 0:  # the twin would need to crop the map: plan() leaves such a layer alone
        return
    got = golden.conv_accumulate(blocks.images(x), twin.weights, twin.bias, stride=1, pad=twin.padding)
    np.testing.assert_array_equal(got, expected)
    for image in range(2):
        np.testing.assert_array_equal(blocks.image(blocks.images(x)[image]), x[image])


def program_of(*layers, input_shape):
    return Program(width=8, input_shape=input_shape, input_fl=7, layers=list(layers))


def test_plan_takes_a_few_channel_strided_first_layer_only():
    stem = conv_layer(3, 8, (3, 3), (2, 2), (0, 0, 1, 1), (96, 96))  # MobileNet's stem, Keras "same"
    assert plan(program_of(stem, input_shape=(3, 96, 96)), CONFIG) == SpaceToDepth((2, 2), (3, 96, 96))
    front = conv_layer(1, 64, (10, 4), (2, 2), (4, 1, 5, 1), (49, 10))  # DS-CNN's front
    folded = plan(program_of(front, input_shape=(1, 49, 10)), CONFIG)
    assert folded.shape == (4, 25, 5) and folded.layer(front).kernel == (5, 3)
    refused = {
        "stride 1": conv_layer(3, 8, (3, 3), (1, 1), (1, 1, 1, 1), (32, 32)),
        "5 channels x 4 > 16 rows": conv_layer(5, 8, (3, 3), (2, 2), (1, 1, 1, 1), (32, 32)),
        "grouped": conv_layer(4, 4, (3, 3), (2, 2), (1, 1, 1, 1), (32, 32), groups=4),
    }
    for why, layer in refused.items():
        assert plan(program_of(layer, input_shape=layer.in_shape), CONFIG) is None, why
    # the input also feeds a second layer: it must stay as the program has it
    second = conv_layer(3, 8, (1, 1), (1, 1), (0, 0, 0, 0), (96, 96), name="other")
    assert plan(program_of(stem, second, input_shape=(3, 96, 96)), CONFIG) is None


def test_the_placement_writes_the_blocks_and_reads_fewer_words():
    """MobileNet's stem placed: the input tensor is 12 x 48 x 48, the job a stride-1 2x2 convolution
    streaming a quarter of the input words, and the images written and read back are the program's."""
    stem = conv_layer(3, 8, (3, 3), (2, 2), (0, 0, 1, 1), (96, 96))
    program = program_of(stem, input_shape=(3, 96, 96))
    placement = place(program, CONFIG)
    assert placement.input_blocks is not None and placement.tensors[INPUT].shape == (12, 48, 48)
    fields = [info.fields for info in placement.commands]
    assert {(f["kernel_h"], f["kernel_w"], f["stride_h"], f["stride_w"]) for f in fields} == {(2, 2, 1, 1)}
    assert sum(f["in_h"] * f["in_w"] for f in fields) < 96 * 96 / 3
    x = np.random.default_rng(3).integers(-128, 128, (1, 3, 96, 96))
    offset, words = placement.input_words(x)
    memory = placement.memory.copy()
    memory[offset // 8 : offset // 8 + words.size] = words
    np.testing.assert_array_equal(placement.tensor(memory, INPUT), x[0])
