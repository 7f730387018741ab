"""The bus-master engine's RTL (Verilator, 32-cycle memory latency, AxiRam pauses on every
channel) against the reference bus engine: random networks bit-exact in memory, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from radix.command_exec import execute
from radix.engine_spec import ERROR_CODE, EngineConfig, decode_command, encode_command, input_band_groups
from radix.placement import PlacementError, place
from radix_sim.bus_build import LATENCY, run_image
from test_placement import BASE, INPUT, RandomNet, check_every_tensor, random_input, random_program

# small buffers, so layers split into bands and batched fully connected layers into several jobs
CONFIG = EngineConfig(rows=8, cols=8, width=8, in_depth=160, wt_depth=640, acc_depth=64)
# two words per output pixel from the core: a layer of up to 8 channels drops the second
WIDE_CONFIG = EngineConfig(rows=8, cols=16, width=8, in_depth=160, wt_depth=640, acc_depth=64)


def fitting_program(seed: int, config: EngineConfig = CONFIG):
    """A random graph (adds, concatenations, fc) that fits ``config``, with its placement for batch 2."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        program = random_program(rng, config.width, 12)
        try:
            return program, place(program, config, batch=2, base=BASE), rng
        except PlacementError:
            continue
    raise RuntimeError(f"no random program of seed {seed} fits {config}")


def loaded_memory(placement, x) -> np.ndarray:
    memory = placement.memory.copy()
    offset, words = placement.input_words(x)
    memory[offset // 8: offset // 8 + words.size] = words
    return memory


def stats_mask(placement) -> np.ndarray:
    """Words compared between RTL and reference: all but the stats words' cycle counts (the
    reference's are estimates)."""
    keep = np.ones(placement.memory.size, dtype=bool)
    for info in placement.commands:
        keep[(info.stat_addr - BASE) // 8] = False
    return keep


@pytest.mark.parametrize("config, seed", [(CONFIG, 3), (CONFIG, 11), (CONFIG, 20261206), (WIDE_CONFIG, 4),
                                          (WIDE_CONFIG, 77013)])
def test_random_networks_are_bit_exact_on_the_rtl(config, seed):
    program, placement, rng = fitting_program(seed, config)
    check_on_rtl(program, placement, random_input(rng, program, 2), config, seed)


def test_a_summed_classifier_is_bit_exact_on_the_rtl():
    """A global-average-pooled classifier as one summed job per image: two input tiles, two
    output tiles, a map of exactly ACC_DEPTH pixels."""
    net = RandomNet(np.random.default_rng(21), CONFIG.width, 16)
    net.tensors[INPUT] = ((3, 8, 8), net.input_fl, net.input_unsigned)
    conv = net.layer("conv", INPUT, 16, kernel=3, padding=(1, 1, 1, 1))
    net.layer("fc", conv, 10, relu=False, unsigned_out=False, prefix="out", summed=True)
    program = net.program()
    placement = place(program, CONFIG, batch=2, base=BASE)
    assert [info.fields["sum_pool"] for info in placement.commands if info.layer == "out1"] == [1, 1]
    check_on_rtl(program, placement, random_input(np.random.default_rng(22), program, 2), CONFIG, 22)


@pytest.mark.parametrize("channels, seed", [(1, 31), (3, 32)])
def test_folded_few_channel_layers_are_bit_exact_on_the_rtl(channels, seed):
    """Few-channel layers run folded (docs/engine.md, "Few-channel layers"): a rectangular first
    layer padded on every side, one with a residual add, a strided and pooled one; every lane
    group's column bounds and the unused lanes matter at the map's edges."""
    net = RandomNet(np.random.default_rng(seed), CONFIG.width, 8)
    net.tensors[INPUT] = ((channels, 9, 13), net.input_fl, net.input_unsigned)
    first = net.layer("conv", INPUT, 4, kernel=(3, 5), padding=(1, 2, 1, 2))
    second = net.layer("conv", first, 4, kernel=3, padding=(1, 1, 1, 1), skip=first)
    third = net.layer("conv", second, 3, kernel=(2, 3), stride=(1, 2), padding=(0, 1, 1, 1), pool=True)
    net.layer("fc", third, 7, relu=False, unsigned_out=False, prefix="out")
    program = net.program()
    placement = place(program, CONFIG, batch=2, base=BASE)
    folds = {info.layer: (info.fields["fold_lanes"], info.fields["fold_taps"], info.fields["kernel_w"])
             for info in placement.commands if info.fields["fold_lanes"]}
    assert set(folds) == {first, second, third} and folds[first][0] == channels
    check_on_rtl(program, placement, random_input(np.random.default_rng(seed), program, 2), CONFIG, seed)


@pytest.mark.parametrize("config, seed", [(WIDE_CONFIG, 42)])
def test_strips_of_rows_are_bit_exact_on_the_rtl(config, seed):
    """Every command rewritten with a random ``weights_first``, an ``input_ahead`` (and
    ``input_follows``) kept or cleared at random and, but the summed ones, a random ``strip_rows`` (0 to past the job's rows;
    docs/engine.md, "Strips of rows", "Weights first", "The input loads ahead"), whatever the
    placement chose: the striped and weights-first stream orders, the strips' accumulator banks
    and skip addresses, the input buffer's halves, under pauses."""
    program, placement, rng = fitting_program(seed, config)
    for info in placement.commands:
        ahead = info.fields["input_ahead"] & int(rng.integers(0, 2))
        corrupt(placement.memory, placement, info.index, weights_first=int(rng.integers(0, 2)), input_ahead=ahead,
                input_follows=info.fields["input_follows"] & ahead)
        if not info.fields["sum_pool"]:
            corrupt(placement.memory, placement, info.index, strip_rows=int(rng.integers(0, 16)))
    striped = [info for info in placement.commands if info.fields["out_h"] > 1 and not info.fields["sum_pool"]]
    assert striped, "no job of several rows to cut into strips"
    check_on_rtl(program, placement, random_input(rng, program, 2), config, seed)


def test_inputs_following_the_job_before_are_bit_exact_on_the_rtl():
    """A chain whose every layer reads the one before's output (docs/engine.md, "The input
    follows the job before"): each job's input rows are read as the job before's writes are
    answered, under pauses, into the input buffer's other half; pooled, strided, multi-tile,
    striped and summed producers, a residual add whose skip the job before wrote."""
    config = EngineConfig(rows=8, cols=8, width=8, in_depth=512, wt_depth=640, acc_depth=128)
    net = RandomNet(np.random.default_rng(61), config.width, 8)
    net.tensors[INPUT] = ((8, 10, 11), net.input_fl, net.input_unsigned)
    a = net.layer("conv", INPUT, 12, kernel=3, padding=(1, 1, 1, 1))
    b = net.layer("conv", a, 12, kernel=3, padding=(1, 1, 1, 1), pool=True)
    c = net.layer("conv", b, 8, kernel=1)
    d = net.layer("conv", c, 8, kernel=3, padding=(1, 1, 1, 1), skip=c)
    e = net.layer("conv", d, 16, kernel=3, stride=2, padding=(1, 1, 1, 1))
    net.layer("fc", e, 6, relu=False, unsigned_out=False, prefix="out", summed=True)
    program = net.program()
    placement = place(program, config, batch=1, base=BASE)
    follows = [info.fields["input_follows"] for info in placement.commands]
    assert follows == [0] + [1] * (len(follows) - 1), follows
    check_on_rtl(program, placement, random_input(np.random.default_rng(62), program, 1), config, 62)


def check_on_rtl(program, placement, x, config, seed) -> None:
    """The RTL under latency and pauses leaves the reference's memory, registers and beats."""
    memory = loaded_memory(placement, x)
    reference = memory.copy()
    expected = execute(reference, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count, win_base=BASE,
                       win_size=placement.memory_bytes, config=config, base=BASE)
    rtl = run_image(config, memory, base=BASE, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count,
                    seed=seed, pause=0.3)
    regs, bus = rtl["registers"], rtl["bus"]
    assert regs["STATUS"] & 0b110 == 0b010 and regs["ERR_CODE"] == 0, regs
    assert regs["CMD_DONE"] == placement.cmd_count
    check_every_tensor(program, placement, rtl["memory"], x)
    keep = stats_mask(placement)
    np.testing.assert_array_equal(rtl["memory"][keep], reference[keep])
    stats = rtl["memory"][~keep]
    np.testing.assert_array_equal(stats >> np.uint64(32), reference[~keep] >> np.uint64(32))  # saturations
    assert (regs["BEATS_READ"], regs["BEATS_WRITTEN"], regs["SATURATED"]) == (
        expected.beats_read, expected.beats_written, expected.saturated)
    assert bus["violations"] == 0 and bus["min_read_latency"] >= LATENCY and bus["max_outstanding_reads"] > 1


def corrupt(memory, placement, index: int, **fields) -> None:
    """Rewrite fields of command ``index`` in ``memory``."""
    start = (placement.cmd_base - BASE) // 8 + index * 8
    values = decode_command(memory[start:start + 8])
    values.update(fields)
    memory[start:start + 8] = encode_command(**values)


@pytest.mark.parametrize("case", ["opcode", "limit", "limit_rectangular", "summed", "summed_strips", "fold", "ahead",
                                  "follows", "band", "narrow", "align", "window"])
def test_errors_stop_the_list_on_the_rtl(case):
    program, placement, rng = fitting_program(5)
    x = random_input(rng, program, 2)
    memory = loaded_memory(placement, x)
    bad = 1  # early in the list, so the simulation is short: command 0 completes, 1 fails
    win_size = placement.memory_bytes
    if case == "opcode":
        corrupt(memory, placement, bad, opcode=7)
    elif case == "limit":
        corrupt(memory, placement, bad, stride_w=5)
    elif case == "limit_rectangular":  # the left padding is checked against KW, not KH
        corrupt(memory, placement, bad, kernel_h=2, kernel_w=1, pad_top=0, pad_left=1)
    elif case == "summed":  # a summed job is 1x1 with stride 1
        corrupt(memory, placement, bad, sum_pool=1, stride_w=2)
    elif case == "summed_strips":  # a 1x1 stride-1 job without add could be summed, but not in strips
        bad = next(info.index for info in placement.commands
                   if (info.fields["kernel_h"], info.fields["kernel_w"], info.fields["stride_h"],
                       info.fields["stride_w"], info.fields["pool"], info.fields["add"]) == (1, 1, 1, 1, 0, 0))
        corrupt(memory, placement, bad, sum_pool=1, fold_lanes=0, strip_rows=1)
    elif case == "fold":  # 5 lanes folded over 2 taps need 10 of the 8 rows
        corrupt(memory, placement, bad, fold_lanes=5, fold_taps=2)
    elif case == "ahead":  # an input loaded ahead whose band and the job before's overflow IN_DEPTH
        commands = placement.commands
        bad = next(i for i in range(1, len(commands)) if input_band_groups(commands[i].fields, CONFIG)
                   + input_band_groups(commands[i - 1].fields, CONFIG) > CONFIG.in_depth)
        corrupt(memory, placement, bad, input_ahead=1)
    elif case == "follows":  # following the job before's writes is a way of loading ahead
        corrupt(memory, placement, bad, input_ahead=0, input_follows=1)
    elif case == "band":
        fields = decode_command(memory[(placement.cmd_base - BASE) // 8 + bad * 8:][:8])
        corrupt(memory, placement, bad, in_y0=fields["in_height"])
    elif case == "narrow":  # a narrow input is one input tile
        bad = next(info.index for info in placement.commands if info.fields["in_ch"] > CONFIG.rows)
        corrupt(memory, placement, bad, narrow_in=1)
    elif case == "align":
        corrupt(memory, placement, bad, wt_addr=placement.commands[bad].fields["wt_addr"] + 4)
    else:  # the output tensor of command `bad` moved past the window's end
        corrupt(memory, placement, bad, out_addr=BASE + win_size)
    reference = memory.copy()
    expected = execute(reference, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count, win_base=BASE,
                       win_size=win_size, config=CONFIG, base=BASE)
    rtl = run_image(CONFIG, memory, base=BASE, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count,
                    win_size=win_size, seed=7, pause=0.3)
    regs = rtl["registers"]
    assert regs["STATUS"] & 0b111 == 0b100, regs  # ERROR, not DONE, not BUSY
    code = {"limit_rectangular": "LIMIT", "summed": "LIMIT", "summed_strips": "LIMIT", "fold": "LIMIT", "ahead": "LIMIT", "follows": "LIMIT",
            "narrow": "BAND"}.get(case, case.upper())
    assert (regs["ERR_CODE"], regs["ERR_INDEX"]) == (expected.error, expected.error_index) == (ERROR_CODE[code], bad)
    assert regs["ERR_ADDR"] == expected.error_addr
    assert regs["CMD_DONE"] == bad
    assert rtl["bus"]["violations"] == 0
