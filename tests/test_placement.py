"""Engine version 9 in software: a program laid out in memory (radix.placement) and run by the
reference bus-master engine (radix.command_exec), against the golden model, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden, network, stream_format
from radix.command_exec import ReferenceBusTransport, command_error, execute
from radix.cycle_model import LIST_DONE
from radix.engine_spec import (input_group_words, tensor_lanes, BUS_REGISTERS, BUS_ENGINE_VERSION, COMMAND_BYTES, COMMAND_FIELDS, COMMAND_WORDS,
                               DEFAULT_CONFIG, ENGINE_ID, ERROR_CODE, EngineConfig, bus_register, decode_command, encode_command,
                               field_mask_of)
from radix.placement import PlacementError, place
from radix.program import INPUT, Layer, Program

BASE = 0x1000_0000  # a nonzero bus address, so that any base bug shows


# -- random programs -----------------------------------------------------------------------------

class RandomNet:
    """Builds a random program layer by layer, tracking every tensor's shape, fl and signedness."""

    def __init__(self, rng, width: int, max_mid: int):
        self.rng, self.width, self.max_mid = rng, width, max_mid
        c0 = int(rng.integers(1, min(4, max_mid) + 1))
        h, w = (int(v) for v in rng.integers(5, 10, 2))
        self.input_unsigned = bool(rng.integers(2))
        self.input_fl = int(rng.integers(4, 8))
        self.tensors = {INPUT: ((c0, h, w), self.input_fl, self.input_unsigned)}
        self.layers: list[Layer] = []
        self.in_concat: set[str] = set()

    def name(self, prefix: str) -> str:
        return f"{prefix}{len(self.layers)}"

    def spatial(self) -> list[str]:
        return [name for name, (shape, _, _) in self.tensors.items() if len(shape) == 3]

    def latest(self) -> str:
        return self.spatial()[-1]

    def channels(self) -> int:
        return int(self.rng.integers(1, self.max_mid + 1))

    def layer(self, kind: str, source: str, c_out: int, *, kernel=1, stride=1, padding=(0, 0, 0, 0), pool=False,
              relu=None, skip=None, unsigned_out=None, prefix="l", summed=False, groups=1) -> str:
        """A layer; a ``summed`` fc layer's weights repeat over its input map's pixels (a global
        average pool folded into it), which the placement runs as one summed job per image."""
        rng, width = self.rng, self.width
        in_shape, fl_in, _ = self.tensors[source]
        if kind == "fc":
            c_in = math.prod(in_shape)
            reduction, weight_shape, out_shape = c_in, (c_out, c_in), (c_out,)
        else:
            c_in, h, w = in_shape
            top, left, bottom, right = padding
            (kh, kw), (sh, sw) = golden.pair(kernel), golden.pair(stride)
            conv_h, conv_w = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
            reduction, weight_shape = c_in // groups * kh * kw, (c_out, c_in // groups, kh, kw)
            out_shape = (c_out, conv_h // 2, conv_w // 2) if pool else (c_out, conv_h, conv_w)
        relu = bool(rng.integers(2)) if relu is None else relu
        if unsigned_out is None:
            unsigned_out = bool(rng.integers(2)) if relu else bool(rng.integers(5) == 0)
        # a data shift that keeps most outputs inside the W-bit range, some saturated
        shift = int(0.5 * math.log2(reduction)) + width - 1 + int(rng.integers(-1, 2))
        fl_skip = None
        if skip is None:
            fl_w = [int(v) for v in rng.integers(3, 7, c_out)]
            fl_out = fl_in + min(fl_w) - shift
        else:  # the skip weighs about as much as the sum: the output's fl is near the skip's
            fl_skip = self.tensors[skip][1]
            fl_out = fl_skip + int(rng.integers(-1, 2))
            fl_w = [fl_out - fl_in + shift + int(v) for v in rng.integers(0, 2, c_out)]
        lo, hi = golden.int_range(width)
        bias_bound = 1 << (shift + width - 3)
        name = self.name(prefix)
        if summed:
            pixels = math.prod(in_shape[1:])
            weights = np.repeat(rng.integers(lo, hi + 1, (c_out, in_shape[0])), pixels, axis=1)
        else:
            weights = rng.integers(lo, hi + 1, weight_shape)
        self.layers.append(Layer(
            name=name, kind=kind, modules=[name], in_shape=in_shape, out_shape=out_shape, kernel=kernel,
            stride=stride, padding=padding, relu=relu, pool=pool, fl_in=fl_in, fl_w=fl_w, fl_out=fl_out,
            weight_bits=width, weights=weights,
            bias=rng.integers(-bias_bound, bias_bound, c_out), inputs=[source] + ([skip] if skip else []),
            fl_skip=fl_skip, unsigned_out=unsigned_out, groups=groups))
        self.tensors[name] = (out_shape, fl_out, unsigned_out)
        return name

    def grouped(self, source: str) -> str:
        """A depthwise (``groups = C``) or grouped convolution, with a depth multiplier up to 2."""
        rng = self.rng
        c, h, w = self.tensors[source][0]
        divisors = [g for g in range(1, min(c, self.max_mid) + 1) if c % g == 0]
        groups = c if c <= self.max_mid and rng.integers(2) else int(rng.choice(divisors))
        c_out = groups * (2 if 2 * groups <= self.max_mid and rng.integers(2) else 1)
        stride = (1, 1) if min(h, w) < 5 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        return self.layer("conv", source, c_out, kernel=3, stride=stride, padding=(1, 1, 1, 1), groups=groups)

    def conv(self, source: str) -> str:
        """A convolution, its kernel and stride rectangular about half of the time (§7)."""
        rng = self.rng
        _, h, w = self.tensors[source][0]
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw = (int(v) for v in rng.integers(1, 3, 2)) if min(h, w) >= 5 else (1, 1)
        if rng.integers(2):
            kw, sw = kh, sh
        padding = (int(rng.integers(0, kh)), int(rng.integers(0, kw)), int(rng.integers(0, kh)),
                   int(rng.integers(0, kw)))
        conv_h = (h + padding[0] + padding[2] - kh) // sh + 1
        conv_w = (w + padding[1] + padding[3] - kw) // sw + 1
        k, stride = (kh, kw), (sh, sw)
        if min(conv_h, conv_w) < 2:
            k, stride, padding, conv_h, conv_w = 1, 1, (0, 0, 0, 0), h, w
        pool = min(conv_h, conv_w) >= 4 and rng.integers(2) == 0
        return self.layer("conv", source, self.channels(), kernel=k, stride=stride, padding=padding, pool=bool(pool))

    def residual(self, source: str) -> str:
        """An identity shortcut: a same-shaped conv adds its own input (and sometimes pools)."""
        c, h, w = self.tensors[source][0]
        k = int(self.rng.choice([1, 3]))
        pool = min(h, w) >= 4 and self.rng.integers(3) == 0
        return self.layer("conv", source, c, kernel=k, padding=(k // 2,) * 4, pool=bool(pool), skip=source)

    def projection(self, source: str) -> str:
        """A projection shortcut: conv-conv on one path, a strided 1x1 conv on the other, added."""
        _, h, w = self.tensors[source][0]
        stride = 2 if min(h, w) >= 4 else 1
        c = self.channels()
        main = self.layer("conv", source, c, kernel=3, stride=stride, padding=(1, 1, 1, 1), relu=True)
        proj = self.layer("conv", source, c, kernel=1, stride=stride, relu=False)
        return self.layer("conv", main, c, kernel=3, padding=(1, 1, 1, 1), skip=proj)

    def concat(self, source: str) -> str:
        """A concatenation of ``source`` with other tensors of its size and signedness (a new 1x1
        branch when there is none)."""
        shape, _, unsigned = self.tensors[source]
        if source in self.in_concat:
            source = self.layer("conv", source, self.channels(), unsigned_out=unsigned, relu=unsigned)
        fits = [name for name in self.spatial() if name not in self.in_concat and name != source
                and self.tensors[name][0][1:] == shape[1:] and self.tensors[name][2] == unsigned]
        parts = [source] + [str(v) for v in self.rng.permutation(fits)[: int(self.rng.integers(1, 3))]]
        if len(parts) == 1:
            parts.append(self.layer("conv", source, self.channels(), unsigned_out=unsigned, relu=unsigned))
        self.rng.shuffle(parts)
        shapes = [self.tensors[p][0] for p in parts]
        out_shape = (sum(s[0] for s in shapes),) + tuple(shape[1:])
        name = self.name("cat")
        fl = self.tensors[parts[0]][1]
        self.layers.append(Layer(
            name=name, kind="concat", modules=[name], in_shape=out_shape, out_shape=out_shape, kernel=1, stride=1,
            padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=fl, fl_w=[0], fl_out=fl, weight_bits=0,
            weights=np.zeros(0, dtype=np.int64), bias=np.zeros(0, dtype=np.int64), inputs=parts,
            input_shapes=shapes))
        self.in_concat.update(parts)
        self.tensors[name] = (out_shape, fl, unsigned)
        return name

    def program(self) -> Program:
        program = Program(width=self.width, input_shape=self.tensors[INPUT][0], input_fl=self.input_fl,
                          layers=self.layers, input_unsigned=self.input_unsigned)
        program.link_signedness()
        return program


def random_program(rng, width: int, max_mid: int) -> Program:
    """A random graph: convs (rectangular, strided, padded per side, pooled), grouped and depthwise
    convs, identity and projection shortcuts, concatenations, then one or two fully connected layers (the first sometimes summing its input
    map, as after a global average pool; the second sometimes adding the first)."""
    net = RandomNet(rng, width, max_mid)
    for _ in range(int(rng.integers(2, 5))):
        op = str(rng.choice(["conv", "residual", "projection", "concat", "grouped"]))
        source = net.latest() if rng.integers(3) else str(rng.choice(net.spatial()))
        if op == "residual" and (source in {layer.name for layer in net.layers if layer.kind == "concat"}
                                 or net.tensors[source][0][0] > max_mid):
            op = "conv"  # a concatenation's lanes are not an output's (see test_skip_layout_is_checked)
        getattr(net, op)(source)
    last = net.latest()
    while math.prod(net.tensors[last][0]) > 300:  # keep the fully connected weights in one bank
        last = net.layer("conv", last, net.channels(), stride=2)
    classes = int(rng.integers(1, 30))
    summed = bool(rng.integers(2))
    if rng.integers(2):
        hidden = net.layer("fc", last, net.channels(), prefix="fc", summed=summed)
        if rng.integers(2):  # fc after fc, adding its input
            hidden = net.layer("fc", hidden, net.tensors[hidden][0][0], skip=hidden, prefix="fc")
        last = hidden
        summed = False
    net.layer("fc", last, classes, relu=False, unsigned_out=False, prefix="out", summed=summed)
    return net.program()


# -- running ---------------------------------------------------------------------------------

def random_input(rng, program: Program, batch: int) -> np.ndarray:
    lo, hi = golden.tensor_range(program.width, unsigned=program.input_unsigned)
    return rng.integers(lo, hi + 1, (batch,) + tuple(program.input_shape))


def run_placed(program: Program, config: EngineConfig, x, *, batch: int, order=None):
    """Place (the jobs' stream orders from ``order``, by default the fastest), write the input,
    execute the whole list; the placement, the memory and the result."""
    placement = place(program, config, batch=batch, base=BASE, order=order)
    memory = placement.memory.copy()
    offset, words = placement.input_words(x)
    memory[offset // 8 : offset // 8 + words.size] = words
    result = execute(memory, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count, win_base=BASE,
                     win_size=placement.memory_bytes, config=config, base=BASE)
    return placement, memory, result


def small_depths(program: Program, config: EngineConfig) -> EngineConfig:
    """``config`` with buffers just deep enough for one band (of one image) of every layer, so
    convolutions split into many bands and batched fully connected layers into several jobs."""
    need_in = need_wt = need_acc = 1
    for info in place(program, config).commands:
        f = info.fields
        t_in = f["in_ch"] // config.rows
        step = 2 if f["pool"] else 1
        rows = f["in_h"] if f["sum_pool"] else (step - 1) * f["stride_h"] + f["kernel_h"]  # a summed job: one band
        fold = f["fold_taps"] - 1 if f["fold_lanes"] else 0  # a folded band starts at F - 1 (docs/engine.md)
        # the band rule (jobs.bands) sizes a band by the layer's input width, which a sampling
        # view's row spans in in_row_pitch rows of in_w view pixels (placement._sampling_view)
        width = f["in_w"] * max(1, f["in_row_pitch"])
        need_in = max(need_in, t_in * width * rows + fold)
        need_wt = max(need_wt, t_in * f["kernel_h"] * f["kernel_w"] * config.rows)
        need_acc = max(need_acc, f["out_h"] * f["out_w"] if f["sum_pool"] else step * f["out_w"])
    return EngineConfig(rows=config.rows, cols=config.cols, width=config.width, in_depth=need_in,
                        wt_depth=need_wt, acc_depth=need_acc)


def check_every_tensor(program: Program, placement, memory, x) -> None:
    """Every tensor read back from memory equals the golden model's, and the stats words' saturations
    add up to the golden model's per layer."""
    expected = network.run(program, x)
    for b in range(x.shape[0]):
        np.testing.assert_array_equal(placement.tensor(memory, INPUT, b), x[b])
        for layer in expected:
            np.testing.assert_array_equal(placement.tensor(memory, layer.name, b), layer.values[b],
                                          err_msg=f"layer {layer.name} image {b}")
    np.testing.assert_array_equal(placement.logits(memory), expected[-1].values.reshape(x.shape[0], -1))
    stats = placement.command_stats(memory)
    for layer in expected:
        got = sum(sat for info, (_, sat) in zip(placement.commands, stats) if info.layer == layer.name)
        assert got == layer.saturated, layer.name
    cycles = [c for c, _ in stats]
    assert cycles == sorted(cycles) and cycles[0] > 0


def expected_beats(placement) -> tuple[int, int]:
    """Beats a list moves by docs/engine.md: per command its fetch, its weight block (a tile's rows
    the words holding its channels), its input band's tiles, the skip words inside the skip pixels
    (of those holding the tile's channels); the output words holding its channels and the stats
    word."""
    cfg = placement.config
    read = written = 0
    for info in placement.commands:
        f = info.fields
        t_in, t_out = f["in_ch"] // cfg.rows, -(-f["out_ch"] // cfg.cols)
        comp_h, comp_w = (f["out_h"] // 2 * 2, f["out_w"] // 2 * 2) if f["pool"] else (f["out_h"], f["out_w"])
        row_words = [min(cfg.wt_words, -(-min(cfg.cols, f["out_ch"] - o * cfg.cols) // cfg.lanes_per_word))
                     for o in range(t_out)]
        read += COMMAND_WORDS + sum(cfg.cols + t_in * f["kernel_h"] * f["kernel_w"] * cfg.rows * words
                                    for words in row_words)
        read += t_in * f["in_h"] * f["in_w"] * input_group_words(cfg, narrow=bool(f["narrow_in"]))
        if f["add"]:
            read += comp_h * comp_w * sum(max(0, min(words, f["skip_pixel_words"] - o * cfg.wt_words))
                                          for o, words in enumerate(row_words))
        pixels = 1 if f["sum_pool"] else comp_h * comp_w // 4 if f["pool"] else comp_h * comp_w
        written += pixels * -(-tensor_lanes(f["out_ch"], cfg) // cfg.lanes_per_word) + 1
    return read, written


CONFIGS = {
    "16x24": (EngineConfig(rows=16, cols=24, width=8), 30, False),
    "16x22-holes": (EngineConfig(rows=16, cols=22, width=8), 30, False),
    "8x8-small": (EngineConfig(rows=8, cols=8, width=8), 12, True),
    # rows * W is not a multiple of 64: an input tile reads 3 of a word's 8 lanes, so tensors that
    # are read keep to 3 channels per output tile (test_unreadable_lanes_are_refused)
    "3x5-small": (EngineConfig(rows=3, cols=5, width=8), 3, True),
    "4x4-w16": (EngineConfig(rows=4, cols=4, width=16), 10, False),
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("config_name", list(CONFIGS))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_graphs_are_bit_exact_in_memory(config_name, batch, seed):
    config, max_mid, small = CONFIGS[config_name]
    rng = np.random.default_rng(seed)
    program = random_program(rng, config.width, max_mid)
    if small:
        config = small_depths(program, config)
    x = random_input(rng, program, batch)
    placement, memory, result = run_placed(program, config, x, batch=batch)
    assert result.done and not result.error and result.commands_done == placement.cmd_count
    check_every_tensor(program, placement, memory, x)
    assert (result.beats_read, result.beats_written) == expected_beats(placement)
    # the buffers force bands (unless a summed job needs a whole map): some convolution runs as several jobs
    summed = any(info.fields["sum_pool"] for info in placement.commands)
    if small and not summed:
        assert any(info.job > 0 for info in placement.commands if info.layer.startswith("l"))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_stream_orders_are_placed_as_drawn_and_stay_bit_exact(seed):
    """The self-test's random stream orders (runner.random_order): every job carries the order
    drawn for it, both orders of weights and strips of many sizes occur, and the list is
    bit-exact whatever they are (the order changes when words arrive, never what is computed)."""
    from radix.runner import random_order

    rng = np.random.default_rng(seed)
    program = random_program(rng, 8, 30)
    x = random_input(rng, program, 1)
    pick, drawn = random_order(np.random.default_rng(seed)), []

    def order(fields):
        drawn.append(pick(fields))
        return drawn[-1]

    placement, memory, result = run_placed(program, EngineConfig(), x, batch=1, order=order)
    assert result.done and not result.error
    check_every_tensor(program, placement, memory, x)
    assert [{k: info.fields[k] for k in ("strip_rows", "weights_first", "input_ahead", "input_follows")}
            for info in placement.commands] == drawn
    assert all(info.fields["strip_rows"] == 0 for info in placement.commands if info.fields["sum_pool"])


def test_random_orders_draw_every_choice():
    from radix.runner import random_order

    order = random_order(np.random.default_rng(1))
    draws = [order({"sum_pool": 0, "input_ahead": 1, "input_follows": 1}) for _ in range(200)]
    assert {d["weights_first"] for d in draws} == {0, 1}
    assert {d["strip_rows"] for d in draws} == set(range(16))
    assert {(d["input_ahead"], d["input_follows"]) for d in draws} == {(0, 0), (1, 1)}
    assert {order({"sum_pool": 1, "input_ahead": 0, "input_follows": 0})["strip_rows"] for _ in range(20)} == {0}
    assert {order({"sum_pool": 0, "input_ahead": 1, "input_follows": 0})["input_follows"] for _ in range(20)} == {0}
    assert {order({"sum_pool": 0, "input_ahead": 0, "input_follows": 0})["input_ahead"] for _ in range(20)} == {0}


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_inputs_load_ahead_where_the_engine_allows_and_follow_what_the_job_before_writes(seed):
    """Every job after the first loads its input ahead where the engine's checks allow it (the
    reference accepts the list), and follows the job before's writes wherever it reads a tensor
    the job before writes (or a concatenation holding it), and only where the two share memory."""
    rng = np.random.default_rng(seed)
    program = random_program(rng, 8, 30)
    placement = place(program, DEFAULT_CONFIG, base=BASE)
    readers = {layer.name: layer.inputs[0] for layer in program.layers}
    parts = {part: layer.name for layer in program.layers if not layer.operation.has_weights for part in layer.inputs}
    commands = placement.commands

    def root(name):
        while name in parts:
            name = parts[name]
        return name

    assert commands[0].fields["input_ahead"] == commands[0].fields["input_follows"] == 0
    for before, info in zip(commands, commands[1:]):
        fields, previous = info.fields, before.fields
        allowed = command_error(dict(fields, input_ahead=1), DEFAULT_CONFIG, previous) is None
        assert fields["input_ahead"] == int(allowed), info
        written = {before.layer, parts.get(before.layer), parts.get(parts.get(before.layer))}
        if allowed and readers[info.layer] in written:
            assert fields["input_follows"] == 1, info
        if fields["input_follows"]:
            assert root(readers[info.layer]) == root(before.layer), info


# -- the layout ------------------------------------------------------------------------------

def chain(width=8, *, c_in=3, h=8, c_mid=10, classes=7, seed=0) -> Program:
    """input -> conv 3x3 (pooled) -> conv 3x3 -> fc."""
    net = RandomNet(np.random.default_rng(seed), width, c_mid)
    net.tensors[INPUT] = ((c_in, h, h), net.input_fl, net.input_unsigned)
    a = net.layer("conv", INPUT, c_mid, kernel=3, padding=(1, 1, 1, 1), pool=True)
    b = net.layer("conv", a, c_mid, kernel=3, padding=(1, 1, 1, 1))
    net.layer("fc", b, classes, relu=False, unsigned_out=False, prefix="out")
    return net.program()


def test_layout_follows_the_docs():
    config = EngineConfig(rows=16, cols=22, width=8)
    program = chain(c_mid=30)
    placement = place(program, config, batch=2, base=BASE)
    conv = placement.tensors["l1"]
    # channel c at lane (c // cols) * tile_lanes + c % cols: 22 channels, then a 2-lane hole
    assert conv.lanes[:3] == (0, 1, 2) and conv.lanes[21:24] == (21, 24, 25)
    assert conv.pixel_words == 4 and conv.image_bytes == 4 * 4 * 4 * 8
    assert placement.tensors["out2"].addr == conv.addr + 2 * conv.image_bytes  # one copy per image, no gap
    addrs = [t.addr for t in placement.tensors.values()] + [a for a, _ in placement.weights.values()]
    assert all(a % 8 == 0 for a in addrs) and placement.cmd_base % 64 == 0 and placement.memory_bytes % 4096 == 0
    # regions: tensors, weight blocks, commands, stats words
    assert max(t.addr + 2 * t.image_bytes for t in placement.tensors.values()) <= min(
        a for a, _ in placement.weights.values())
    assert max(a + 8 * n for a, n in placement.weights.values()) <= placement.cmd_base
    assert placement.cmd_base + 64 * placement.cmd_count <= min(info.stat_addr for info in placement.commands)
    layers = [info.layer for info in placement.commands]
    assert layers == sorted(layers, key=["l0", "l1", "out2"].index)  # layer-major
    assert [info.fields["sync"] for info in placement.commands] == [
        int(i == 0 or layers[i - 1] != layers[i]) for i in range(len(layers))]
    assert all(info.fields["stats"] for info in placement.commands)
    assert len({info.stat_addr for info in placement.commands}) == placement.cmd_count
    for info in placement.commands:
        words = placement.memory[(placement.cmd_base - BASE) // 8 + info.index * COMMAND_WORDS:][:COMMAND_WORDS]
        assert decode_command(words) == info.fields


def test_fc_batching_reads_the_weights_once():
    config = EngineConfig(rows=16, cols=24, width=8)
    program = chain(c_mid=20, classes=30)
    rng = np.random.default_rng(5)
    x = random_input(rng, program, 4)
    _, _, single = run_placed(program, config, x[:1], batch=1)
    placement, memory, result = run_placed(program, config, x, batch=4)
    fc = [info for info in placement.commands if info.layer == "out2"]
    assert len(fc) == 1 and fc[0].images == (0, 1, 2, 3)
    assert fc[0].fields["in_w"] == fc[0].fields["out_w"] == 4
    check_every_tensor(program, placement, memory, x)
    # every other job reads four times what it read for one image; the fc job reads its command
    # and its weights once
    _, fc_words = placement.weights["out2"]
    assert result.beats_read == 4 * single.beats_read - 3 * (fc_words + COMMAND_WORDS)


def test_fc_jobs_take_as_many_images_as_fit():
    """Fully connected layers (one adding its input) on an accumulator of 2 pixels: jobs of two
    images, the last of one, each reading its own images' inputs and skips."""
    net = RandomNet(np.random.default_rng(6), 8, 20)
    net.tensors[INPUT] = ((20, 1, 1), net.input_fl, net.input_unsigned)
    hidden = net.layer("fc", INPUT, 20, prefix="fc")
    hidden = net.layer("fc", hidden, 20, skip=hidden, prefix="fc")
    net.layer("fc", hidden, 9, relu=False, unsigned_out=False, prefix="out")
    program = net.program()
    config = EngineConfig(rows=16, cols=24, width=8, acc_depth=2)
    x = random_input(np.random.default_rng(7), program, 5)
    placement, memory, result = run_placed(program, config, x, batch=5)
    assert result.done
    assert [info.images for info in placement.commands if info.layer == "fc1"] == [(0, 1), (2, 3), (4,)]
    check_every_tensor(program, placement, memory, x)


def concat_skip_program(c: int, *, as_skip: str = "cat") -> Program:
    """Two convs of ``c`` channels concatenated; a conv of ``2c`` channels adds ``as_skip``."""
    net = RandomNet(np.random.default_rng(1), 8, 2 * c)
    net.tensors[INPUT] = ((2, 6, 6), net.input_fl, False)
    net.input_unsigned = False
    a = net.layer("conv", INPUT, c, kernel=3, padding=(1, 1, 1, 1), unsigned_out=False)
    b = net.layer("conv", INPUT, c, kernel=1, unsigned_out=False)
    cat = net.name("cat")
    shapes = [net.tensors[a][0], net.tensors[b][0]]
    net.layers.append(Layer(name=cat, kind="concat", modules=[cat], in_shape=(2 * c, 6, 6), out_shape=(2 * c, 6, 6),
                            kernel=1, stride=1, padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=4, fl_w=[0],
                            fl_out=4, weight_bits=0, weights=np.zeros(0, dtype=np.int64),
                            bias=np.zeros(0, dtype=np.int64), inputs=[a, b], input_shapes=shapes))
    net.tensors[cat] = ((2 * c, 6, 6), 4, False)
    skip = {"cat": cat, "input": INPUT}[as_skip]
    net.layer("conv", cat, net.tensors[skip][0][0], kernel=1, skip=skip, prefix="add")
    return net.program()


def test_skip_layout_is_checked():
    # 8 + 8 channels on an 8-column engine: the concatenation's lanes are the canonical ones
    config = EngineConfig(rows=8, cols=8, width=8)
    program = concat_skip_program(8)
    x = random_input(np.random.default_rng(2), program, 2)
    placement, memory, result = run_placed(program, config, x, batch=2)
    assert result.done
    check_every_tensor(program, placement, memory, x)
    # 5 + 5 channels: the second part starts on a new word, channels 5..9 are not in lanes 5..9
    with pytest.raises(PlacementError, match="layer add3: its skip tensor cat2 .* canonical lanes"):
        place(concat_skip_program(5), config)
    # the network input added where it has the output's shape: accepted; the bias words of the
    # lanes past the output's 2 channels shift any skip to zero (W + 1)
    program = concat_skip_program(5, as_skip="input")
    placement, memory, result = run_placed(program, config, x, batch=2)
    check_every_tensor(program, placement, memory, x)
    addr, _ = placement.weights["add3"]
    _, _, skip_shift = stream_format.decode_bias_words(placement.memory[(addr - BASE) // 8 :][: config.cols])
    assert skip_shift.tolist() == list(program.layers[-1].skip_shift) + [config.width + 1] * 6
    # a fully connected layer adding the 2x3x3 network input as its 18 features: the input's
    # pixels are not the output's lanes
    net = RandomNet(np.random.default_rng(4), 8, 8)
    net.tensors[INPUT] = ((2, 3, 3), net.input_fl, net.input_unsigned)
    net.layer("fc", INPUT, 18, skip=INPUT, prefix="fc")
    with pytest.raises(PlacementError, match=r"layer fc0: its skip tensor input \(2 channels of 3x3 pixels\) is not"):
        place(net.program(), config)


def test_shifts_beyond_the_fields_are_clamped():
    """Data and skip shifts too large for a bias word's 8-bit fields mean the same as the largest
    the engine executes (docs/arithmetic.md §5, §9)."""
    config = EngineConfig(rows=8, cols=8, width=8)
    program = concat_skip_program(5, as_skip="input")
    add = program.layers[-1]
    add.fl_skip += 190  # a skip shift of about 180: the skip aligns to zero
    program.layers[0].fl_out -= 190  # a data shift of about 200: every output rounds to 0 or -1
    assert add.skip_shift.min() > 127 and program.layers[0].shift.min() > 127
    x = random_input(np.random.default_rng(8), program, 1)
    placement, memory, result = run_placed(program, config, x, batch=1)
    assert result.done
    check_every_tensor(program, placement, memory, x)


def test_unreadable_lanes_are_refused():
    # 3 rows at W=8: an input tile reads lanes 0..2 of a word, a 5-column output tile fills 0..4
    config = EngineConfig(rows=3, cols=5, width=8)
    with pytest.raises(PlacementError, match="layer l1: its input l0 holds a channel in memory lane 3"):
        place(chain(c_mid=4), config)
    place(chain(c_mid=3), config)


def test_other_refusals_name_the_layer():
    program = chain(c_mid=10)
    with pytest.raises(PlacementError, match="program is 8-bit, the engine's DATA_WIDTH is 16"):
        place(program, EngineConfig(rows=4, cols=4, width=16))
    with pytest.raises(PlacementError, match="layer l1: 144 weight rows per output tile exceed the engine's WT_DEPTH"):
        place(program, EngineConfig(rows=16, cols=24, width=8, wt_depth=100))
    with pytest.raises(PlacementError, match="layer out2: 128 input pixel groups exceed the engine's IN_DEPTH 100"):
        place(chain(h=16, c_mid=30), EngineConfig(rows=16, cols=24, width=8, in_depth=100))
    with pytest.raises(PlacementError, match="reach beyond the engine's 32-bit addresses"):
        place(program, EngineConfig(rows=16, cols=24, width=8), base=(1 << 32) - 4096)
    twice = concat_skip_program(8)
    second = Layer(**{**twice.layers[2].__dict__, "name": "cat9"})
    twice.layers.insert(3, second)
    with pytest.raises(PlacementError, match="tensor l0 is part of both concatenations cat2 and cat9"):
        place(twice, EngineConfig(rows=8, cols=8, width=8))


def test_input_and_tensor_access_check_their_arguments():
    program = chain()
    placement = place(program, EngineConfig(rows=16, cols=24, width=8), batch=2, base=BASE)
    with pytest.raises(ValueError, match=r"do not fit the placement's input: up to 2 images of \(3, 8, 8\)"):
        placement.input_words(np.zeros((3, 3, 8, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="outside the"):
        placement.input_words(np.full((1, 3, 8, 8), 1 << 12))
    with pytest.raises(ValueError, match="image 2 outside the placement's batch of 2"):
        placement.tensor(placement.memory, "l0", 2)


# -- errors ----------------------------------------------------------------------------------

def loaded(config=EngineConfig(rows=8, cols=8, width=8), *, batch=1):
    """The chain on a small-buffer engine, placed and loaded into a reference transport."""
    program = chain(c_mid=10)
    config = small_depths(program, config)
    transport = ReferenceBusTransport(config, base=BASE)
    placement = place(program, config, batch=batch, base=BASE)
    assert transport.allocate(placement.memory_bytes) == BASE
    transport.write_memory(0, placement.memory)
    x = random_input(np.random.default_rng(3), program, batch)
    transport.write_memory(*placement.input_words(x))
    return program, config, transport, placement, x


def reg(transport, name: str) -> int:
    return transport.read(bus_register(name).offset)


def start(transport, placement, *, cmd_base=None, count=None, win_base=BASE, win_size=None) -> None:
    for name, value in (("CMD_BASE", placement.cmd_base if cmd_base is None else cmd_base),
                        ("CMD_COUNT", placement.cmd_count if count is None else count), ("WIN_BASE", win_base),
                        ("WIN_SIZE", placement.memory_bytes if win_size is None else win_size)):
        transport.write(bus_register(name).offset, value)
    transport.write(bus_register("CTRL").offset, field_mask_of("CTRL", "START"))


def memory_after(transport, placement, commands: int) -> np.ndarray:
    """The memory as the first ``commands`` commands leave it, run on a copy."""
    memory = transport.read_memory(0, placement.memory_bytes // 8)
    result = execute(memory, cmd_base=placement.cmd_base, cmd_count=commands, win_base=BASE,
                     win_size=placement.memory_bytes, config=transport.config, base=BASE)
    assert result.done
    return memory, result


def corrupt(transport, placement, index: int, **changes) -> None:
    fields = dict(placement.commands[index].fields, **changes)
    transport.write_memory(placement.cmd_base - BASE + index * COMMAND_BYTES, np.array(
        encode_command(**fields), dtype=np.uint64))


def first_of_layer(placement, name: str) -> int:
    return next(info.index for info in placement.commands if info.layer == name)


@pytest.mark.parametrize("change, code, addr", [
    ({"opcode": 2}, "OPCODE", None),
    ({"out_h": 1}, "LIMIT", None),  # pooling a map of one row
    ({"kernel_h": 0}, "LIMIT", None),
    ({"kernel_w": 0}, "LIMIT", None),
    ({"stride_w": 5}, "LIMIT", None),
    ({"pad_left": "kernel_w"}, "LIMIT", None),  # the left padding checked against KW
    ({"in_ch": 12}, "LIMIT", None),
    ({"in_y0": "in_height"}, "BAND", None),
    ({"out_word_offset": 1}, "BAND", None),
    ({"narrow_in": 1, "in_ch": 16}, "BAND", None),  # a narrow input is one input tile
    ({"in_addr": "+4"}, "ALIGN", "in_addr"),
    ({"wt_addr": "+2"}, "ALIGN", "wt_addr"),
    ({"in_addr": "beyond"}, "BUS", "in_addr"),
])
def test_a_bad_command_stops_the_list(change, code, addr):
    program, config, transport, placement, _ = loaded()
    # the first job of the second layer (its first input row is row 0), or a pooling job
    index = first_of_layer(placement, "l0") + 1 if "out_h" in change else first_of_layer(placement, "l1")
    assert index > 0 and (placement.commands[index].fields["pool"] or "out_h" not in change)
    fields = placement.commands[index].fields
    (name, value), *others = change.items()
    if value in ("in_height", "kernel_w"):
        value = fields[value]
    elif value == "beyond":  # inside the window, past the memory: the bus answers DECERR
        value = BASE + placement.memory_bytes
    elif isinstance(value, str):
        value = fields[name] + int(value)
    corrupt(transport, placement, index, **{name: value}, **dict(others))
    expected, _ = memory_after(transport, placement, index)
    start(transport, placement, win_size=placement.memory_bytes + (1 << 20))
    assert reg(transport, "STATUS") == field_mask_of("STATUS", "ERROR")
    assert reg(transport, "ERR_CODE") == ERROR_CODE[code]
    assert reg(transport, "ERR_INDEX") == index and reg(transport, "CMD_DONE") == index
    assert reg(transport, "ERR_ADDR") == (value if addr else 0)
    # the commands before it completed, the bad one wrote nothing
    np.testing.assert_array_equal(transport.read_memory(0, placement.memory_bytes // 8), expected)


def test_unaligned_command_base_is_refused_before_any_access():
    _, _, transport, placement, _ = loaded()
    before = transport.read_memory(0, placement.memory_bytes // 8)
    start(transport, placement, cmd_base=placement.cmd_base + 8)
    assert (reg(transport, "ERR_CODE"), reg(transport, "ERR_INDEX"), reg(transport, "ERR_ADDR")) == (
        ERROR_CODE["ALIGN"], 0, placement.cmd_base + 8)
    assert reg(transport, "CMD_DONE") == reg(transport, "BEATS_READ") == reg(transport, "BEATS_WRITTEN") == 0
    np.testing.assert_array_equal(transport.read_memory(0, placement.memory_bytes // 8), before)


def test_window_faults_stop_before_the_burst():
    program, config, transport, placement, x = loaded()
    words = placement.memory_bytes // 8
    # a window ending inside the stats words: the commands before complete, the next one's stats
    # write is the first burst outside
    index = first_of_layer(placement, "out2")
    stat = placement.commands[index].stat_addr
    start(transport, placement, win_size=stat - BASE)
    assert (reg(transport, "ERR_CODE"), reg(transport, "ERR_INDEX"), reg(transport, "ERR_ADDR")) == (
        ERROR_CODE["WINDOW"], index, stat)
    assert reg(transport, "CMD_DONE") == index
    memory = transport.read_memory(0, words)
    assert not memory[(stat - BASE) // 8 :].any()  # nothing outside the window changed
    expected = network.run(program, x)
    np.testing.assert_array_equal(placement.tensor(memory, "l1", 0), expected[1].values[0])
    # the window starts at the second layer's weights: command 0's first read (its bias words) faults
    transport.write(bus_register("STATUS").offset, field_mask_of("STATUS", "ERROR"))
    assert reg(transport, "STATUS") == 0
    wt_addr = placement.weights["l1"][0]
    start(transport, placement, win_base=wt_addr, win_size=BASE + placement.memory_bytes - wt_addr)
    assert (reg(transport, "ERR_CODE"), reg(transport, "ERR_INDEX"), reg(transport, "ERR_ADDR")) == (
        ERROR_CODE["WINDOW"], 0, placement.weights["l0"][0])
    assert reg(transport, "BEATS_READ") == COMMAND_WORDS and reg(transport, "BEATS_WRITTEN") == 0
    np.testing.assert_array_equal(transport.read_memory(0, words), memory)
    # a window without the commands: the first fetch faults
    start(transport, placement, win_size=placement.cmd_base - BASE)
    assert (reg(transport, "ERR_CODE"), reg(transport, "ERR_INDEX"), reg(transport, "ERR_ADDR")) == (
        ERROR_CODE["WINDOW"], 0, placement.cmd_base)


def test_a_write_fault_completes_the_bursts_before_it():
    """Output words written up to the window's end: output tile 0 of pixel 0 is written, its
    pixel 1 is outside (and past the memory) and stops the list."""
    _, _, transport, placement, _ = loaded()
    index = first_of_layer(placement, "l1")
    end = BASE + placement.memory_bytes
    corrupt(transport, placement, index, out_addr=end - 16)
    before, done = memory_after(transport, placement, index)
    start(transport, placement)
    assert (reg(transport, "ERR_CODE"), reg(transport, "ERR_INDEX"), reg(transport, "ERR_ADDR")) == (
        ERROR_CODE["WINDOW"], index, end)
    assert reg(transport, "BEATS_WRITTEN") == done.beats_written + 1
    memory = transport.read_memory(0, placement.memory_bytes // 8)
    np.testing.assert_array_equal(np.delete(memory, -2), np.delete(before, -2))
    assert placement.commands[index].fields["out_pixel_words"] == 2 and memory[-2] != before[-2]


def test_bursts_split_at_16_beats_and_4k():
    """A run of 40 words from 8 words before a 4 KB boundary: bursts of 8, 16, 16 beats."""
    from radix.command_exec import _bursts

    addrs = np.arange(512 - 8, 512 + 32, dtype=np.int64)
    first, beats = _bursts(addrs)
    assert first.tolist() == [0, 8, 24] and beats.tolist() == [8, 16, 16]
    first, beats = _bursts(np.array([0, 1, 5, 6, 7], dtype=np.int64))
    assert first.tolist() == [0, 2] and beats.tolist() == [2, 3]


# -- the transport ---------------------------------------------------------------------------

def test_reference_transport_registers_and_run():
    program, config, transport, placement, x = loaded(batch=2)
    assert reg(transport, "ID") == ENGINE_ID and reg(transport, "VERSION") == BUS_ENGINE_VERSION
    assert (reg(transport, "ROWS"), reg(transport, "COLS"), reg(transport, "IN_DEPTH")) == (8, 8, config.in_depth)
    assert transport.name == "reference" and not transport.measures_cycles
    accesses = transport.register_accesses
    start(transport, placement)
    assert transport.register_accesses == accesses + 5
    assert transport.wait_done(1000)
    assert reg(transport, "STATUS") == field_mask_of("STATUS", "DONE") and reg(transport, "ERR_CODE") == 0
    assert reg(transport, "CMD_DONE") == placement.cmd_count
    memory = transport.read_memory(0, placement.memory_bytes // 8)
    check_every_tensor(program, placement, memory, x)
    # DONE follows the last stats word's write (radix.cycle_model)
    assert reg(transport, "CYCLES") == placement.command_stats(memory)[-1][0] + LIST_DONE
    expected = network.run(program, x)
    assert reg(transport, "SATURATED") == sum(layer.saturated for layer in expected)
    assert reg(transport, "BEATS_READ") > reg(transport, "BEATS_WRITTEN") > 0
    # read-only registers keep their values; DONE is write-1-to-clear; RESET clears the counters
    transport.write(bus_register("ID").offset, 0)
    assert reg(transport, "ID") == ENGINE_ID
    transport.write(bus_register("STATUS").offset, field_mask_of("STATUS", "ERROR"))
    assert reg(transport, "STATUS") == field_mask_of("STATUS", "DONE")
    transport.write(bus_register("STATUS").offset, field_mask_of("STATUS", "DONE"))
    assert not transport.wait_done(1000)
    transport.reset()
    assert reg(transport, "CMD_DONE") == reg(transport, "CYCLES") == reg(transport, "BEATS_READ") == 0
    assert reg(transport, "CMD_BASE") == placement.cmd_base  # configuration survives a reset
    with pytest.raises(ValueError, match="inside the"):
        transport.read_memory(placement.memory_bytes, 1)
    assert {reg.name for reg in BUS_REGISTERS} >= {"CMD_BASE", "WIN_SIZE", "ERR_ADDR"}


def test_an_empty_list_is_done_at_once():
    _, _, transport, placement, _ = loaded()
    start(transport, placement, count=0)
    assert reg(transport, "STATUS") == field_mask_of("STATUS", "DONE") and reg(transport, "BEATS_READ") == 0


# -- the command format ----------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({f.name: st.integers(0, (1 << f.width) - 1) for f in COMMAND_FIELDS}))
def test_commands_round_trip(fields):
    words = encode_command(**fields)
    assert len(words) == COMMAND_WORDS and all(0 <= w < 1 << 64 for w in words)
    assert decode_command(words) == fields


@pytest.mark.parametrize("name", [f.name for f in COMMAND_FIELDS])
def test_a_field_too_wide_is_refused(name):
    width = next(f.width for f in COMMAND_FIELDS if f.name == name)
    with pytest.raises(ValueError, match=f"command field {name}={1 << width} does not fit {width} bits"):
        encode_command(**{name: 1 << width})


def test_a_pooled_classifier_runs_as_one_summed_job_per_image():
    """An fc layer whose weights repeat over its input map (a global average pool folded in)
    reads C weights per output, not C*H*W, in one summed job per image, bit-exact."""
    config = EngineConfig(rows=16, cols=24, width=8)
    net = RandomNet(np.random.default_rng(11), 8, 30)
    net.tensors[INPUT] = ((3, 8, 8), net.input_fl, net.input_unsigned)
    conv = net.layer("conv", INPUT, 40, kernel=3, padding=(1, 1, 1, 1))
    net.layer("fc", conv, 10, relu=False, unsigned_out=False, prefix="out", summed=True)
    program = net.program()
    x = random_input(np.random.default_rng(12), program, 3)
    placement, memory, result = run_placed(program, config, x, batch=3)
    assert result.done
    fc = [info for info in placement.commands if info.layer == "out1"]
    assert [info.images for info in fc] == [(0,), (1,), (2,)]
    assert all(info.fields["sum_pool"] == 1 and (info.fields["in_h"], info.fields["in_w"]) == (8, 8) for info in fc)
    _, fc_words = placement.weights["out1"]
    # 40 channels: three input tiles; 10 classes: rows of the two words holding them
    assert fc_words == config.cols + 3 * config.rows * 2
    check_every_tensor(program, placement, memory, x)
    assert (result.beats_read, result.beats_written) == expected_beats(placement)


def test_few_channel_tensors_are_stored_narrow_where_every_reader_can_take_them():
    """A tensor of at most a word's channels is one word a pixel (narrow) when every reader reads
    it as a convolution's (grouped too) or a one-pixel fully connected layer's main input: those
    jobs read a word per pixel instead of an input tile's two, bit-exact. A skip or a many-pixel
    fully connected layer's input keeps whole input tiles. The few-channel depthwise layer runs
    folded like a dense one."""
    config = EngineConfig(rows=16, cols=24, width=8)
    net = RandomNet(np.random.default_rng(41), 8, 30)
    net.tensors[INPUT] = ((3, 8, 10), net.input_fl, net.input_unsigned)
    first = net.layer("conv", INPUT, 6, kernel=3, padding=(1, 1, 1, 1))
    sampled = net.layer("conv", first, 5, stride=2)  # a strided 1x1: a view of every other pixel
    plain = net.layer("conv", sampled, 4, kernel=3, padding=(1, 1, 1, 1))
    added = net.layer("conv", plain, 4, kernel=3, padding=(1, 1, 1, 1), skip=plain)
    depthwise = net.layer("conv", added, 4, kernel=3, padding=(1, 1, 1, 1), groups=4)
    vector = net.layer("fc", depthwise, 8, relu=False)
    net.layer("fc", vector, 3, relu=False, prefix="out")
    program = net.program()
    x = random_input(np.random.default_rng(42), program, 2)
    placement, memory, result = run_placed(program, config, x, batch=2)
    assert result.done and not result.error
    assert {info.fields["in_pixel_words"] for info in placement.commands if info.layer == sampled} == {2}  # the view
    narrow = {name for name, place in placement.tensors.items() if place.narrow}
    assert narrow == {INPUT, first, sampled, added, vector, "out6"}
    assert {(info.fields["fold_lanes"], info.fields["fold_taps"]) for info in placement.commands
            if info.layer == depthwise} == {(4, 3)}
    assert all(placement.tensors[name].pixel_words == (1 if name in narrow else 2) for name in placement.tensors)
    for info in placement.commands:
        src = program.layers[[layer.name for layer in program.layers].index(info.layer)].inputs[0]
        assert info.fields["narrow_in"] == int(src in narrow)
    check_every_tensor(program, placement, memory, x)
    assert (result.beats_read, result.beats_written) == expected_beats(placement)


@pytest.mark.parametrize("shape, stride, sampled", [
    ((20, 8, 12), (2, 2), True), ((20, 8, 12), (1, 3), True), ((20, 8, 12), (3, 2), False),  # 8 rows, SH 3
    ((20, 8, 12), (2, 1), False),  # SW 1: the row bands already read only the rows they need
])
def test_a_strided_pointwise_conv_reads_only_the_columns_it_samples(shape, stride, sampled):
    """A 1x1 convolution with a stride (a projection shortcut) reads its input as a map of every
    SW-th pixel and every SH-th row (rows ``in_row_pitch = SH`` view rows apart): only the pixels
    it samples, 1 / (SH * SW) of the input's words instead of all, bit-exact, within the input
    tensor's bytes."""
    config = EngineConfig(rows=16, cols=24, width=8)
    net = RandomNet(np.random.default_rng(21), 8, 30)
    net.tensors[INPUT] = (shape, net.input_fl, net.input_unsigned)
    net.layer("conv", INPUT, 24, kernel=1, stride=stride, relu=False, prefix="proj")
    program = net.program()
    x = random_input(np.random.default_rng(22), program, 2)
    placement, memory, result = run_placed(program, config, x, batch=2)
    assert result.done and not result.error
    check_every_tensor(program, placement, memory, x)
    assert (result.beats_read, result.beats_written) == expected_beats(placement)
    c, h, w = shape
    src_words = placement.tensors[INPUT].pixel_words
    read = sum(info.fields["in_h"] * info.fields["in_w"] for info in placement.commands) // 2  # per image
    views = {(info.fields["in_pixel_words"], info.fields["in_row_pitch"], info.fields["stride_h"],
              info.fields["stride_w"]) for info in placement.commands}
    if sampled:
        assert read == (h // stride[0]) * (w // stride[1])
        assert views == {(src_words * stride[1], stride[0], 1, 1)}
    else:
        assert views == {(src_words, 0, *stride)}
