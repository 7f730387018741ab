"""The bus-master engine in Amaranth's simulator (tests/bus_pysim.py): bus rules and CTRL.RESET."""

from __future__ import annotations

import numpy as np

from bus_pysim import run_list
from radix.command_exec import execute
from radix.engine_spec import BURST_BOUNDARY, ERROR_CODE, MAX_BURST_BEATS, EngineConfig
from radix.placement import place
from test_placement import BASE, check_every_tensor, random_input, random_program

CONFIG = EngineConfig(rows=8, cols=8, width=8, in_depth=512, wt_depth=1024, acc_depth=256)


def placed(seed: int):
    rng = np.random.default_rng(seed)
    program = random_program(rng, CONFIG.width, 8)
    placement = place(program, CONFIG, batch=1, base=BASE)
    x = random_input(rng, program, 1)
    memory = placement.memory.copy()
    offset, words = placement.input_words(x)
    memory[offset // 8: offset // 8 + words.size] = words
    return program, placement, x, memory


def test_bursts_keep_to_16_beats_and_4k_pages_under_latency_and_pauses():
    program, placement, x, memory = placed(4)
    reference = memory.copy()
    expected = execute(reference, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count, win_base=BASE,
                       win_size=placement.memory_bytes, config=CONFIG, base=BASE)
    run = run_list(CONFIG, memory, base=BASE, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count,
                   latency=30, pause=0.25, seed=2)
    assert run.registers["STATUS"] & 0b110 == 0b010, run.registers
    check_every_tensor(program, placement, memory, x)
    for addr, beats in run.reads + run.writes:
        assert 1 <= beats <= MAX_BURST_BEATS
        assert addr // BURST_BOUNDARY == (addr + beats * 8 - 1) // BURST_BOUNDARY
        assert BASE <= addr and addr + beats * 8 <= BASE + placement.memory_bytes
    assert run.first_read_latency >= 30 and run.max_outstanding_reads > 1
    assert run.registers["BEATS_READ"] == expected.beats_read


def test_reset_aborts_a_running_list_and_leaves_the_engine_idle():
    _, placement, _, memory = placed(6)
    run = run_list(CONFIG, memory, base=BASE, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count,
                   latency=30, pause=0.25, seed=3, reset_after=400)
    regs = run.registers
    assert regs["STATUS"] & 0b111 == 0, regs  # neither busy, done nor error
    assert regs["CMD_DONE"] < placement.cmd_count
    # every write burst that went out was whole: the bus model raises on a short one
    assert all(beats >= 1 for _, beats in run.writes)


def test_a_start_once_busy_falls_after_a_reset_runs_the_whole_list_again():
    program, placement, x, memory = placed(7)
    run = run_list(CONFIG, memory, base=BASE, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count,
                   latency=30, pause=0.25, seed=5, reset_after=300, restart=True)
    regs = run.registers
    assert regs["STATUS"] & 0b111 == 0b010, regs
    assert regs["CMD_DONE"] == placement.cmd_count
    check_every_tensor(program, placement, memory, x)


def test_an_error_response_stops_the_list_after_the_commands_before_it():
    _, placement, _, memory = placed(8)
    reference = memory.copy()
    bad = placement.cmd_count - 1
    weights = placement.commands[bad].fields["wt_addr"]  # the last command's first weight read fails
    run = run_list(CONFIG, memory, base=BASE, cmd_base=placement.cmd_base, cmd_count=placement.cmd_count,
                   latency=30, pause=0.25, seed=4, error_at=weights)
    regs = run.registers
    assert regs["STATUS"] & 0b111 == 0b100, regs
    assert (regs["ERR_CODE"], regs["ERR_INDEX"], regs["ERR_ADDR"]) == (ERROR_CODE["BUS"], bad, weights)
    assert regs["CMD_DONE"] == bad
    expected = execute(reference, cmd_base=placement.cmd_base, cmd_count=bad, win_base=BASE,
                       win_size=placement.memory_bytes, config=CONFIG, base=BASE)
    assert expected.done  # the commands before it ran whole: their outputs are in memory
    for info in placement.commands[:bad]:
        name = info.layer
        np.testing.assert_array_equal(placement.tensor(memory, name), placement.tensor(reference, name))
