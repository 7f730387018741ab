"""The analytic cycle model (radix.cycle_model): bounds it must respect and how the reference uses it.

Its agreement with the RTL is checked on the simulation in tests/test_sim_network.py.
"""

import copy
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from radix.command_exec import ReferenceBusTransport
from radix.cycle_model import (INPUT_AFTER_START, JOB_END, LIST_DONE, ListClock, core_cycles, fastest_order,
                                last_burst_beats, list_cycles)
from radix.driver import Driver
from radix.engine_spec import DEFAULT_CONFIG, EngineConfig, bus_register, computed_map, pixel_words
from radix.placement import place
from radix.stream_format import cotile_word_count, input_word_count, tiles
from test_placement import random_input, random_program

CONFIG = EngineConfig(rows=8, cols=8, width=8, in_depth=4096, wt_depth=4096, acc_depth=1024)


@st.composite
def jobs(draw, config=CONFIG):
    """Command fields of a one-band convolution job that fits ``config``."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    out_h, out_w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    in_ch = config.rows * draw(st.integers(1, 4))
    out_ch = draw(st.integers(1, 3 * config.cols))
    pool = draw(st.booleans()) and out_h >= 2 and out_w >= 2
    words = pixel_words(out_ch, config)
    return dict(kernel_h=kh, kernel_w=kw, stride_h=1, pad_top=0, in_ch=in_ch, out_ch=out_ch,
                in_h=out_h + kh - 1, in_w=out_w + kw - 1, out_h=out_h, out_w=out_w, pool=int(pool),
                add=int(draw(st.booleans())), sum_pool=0, sync=1, out_pixel_words=words)


def passes_floor(job) -> int:
    """A job's passes back to back: no job on the core is shorter."""
    pixels = math.prod(computed_map(job["out_h"], job["out_w"], bool(job["pool"])))
    t_in, t_out = tiles(job["in_ch"], CONFIG.rows), tiles(job["out_ch"], CONFIG.cols)
    passes = t_out * t_in * job["kernel_h"] * job["kernel_w"]
    return (passes - 1) * max(pixels, CONFIG.min_pass) + pixels


@settings(max_examples=200, deadline=None)
@given(jobs())
def test_a_job_takes_at_least_its_passes_and_its_stream(job):
    pixels = math.prod(computed_map(job["out_h"], job["out_w"], bool(job["pool"])))
    t_out = tiles(job["out_ch"], CONFIG.cols)
    cycles = core_cycles(CONFIG, job)
    assert cycles >= passes_floor(job)
    skip = pixels if job["add"] else 0
    stream = (input_word_count(job["in_ch"], job["in_h"], job["in_w"], CONFIG)
              + t_out * cotile_word_count(job["in_ch"], (job["kernel_h"], job["kernel_w"]), CONFIG, skip_pixels=skip))
    assert cycles >= stream


@settings(max_examples=100, deadline=None)
@given(jobs(), st.integers(1, CONFIG.cols))
def test_more_output_channels_never_take_fewer_cycles(job, more):
    wider = dict(job, out_ch=job["out_ch"] + more, out_pixel_words=pixel_words(job["out_ch"] + more, CONFIG))
    assert core_cycles(CONFIG, wider) >= core_cycles(CONFIG, job)


@settings(max_examples=50, deadline=None)
@given(st.lists(jobs(), min_size=1, max_size=5))
def test_a_list_clock_counts_every_job_and_done_after_the_last(fields):
    clock = ListClock(CONFIG)
    stats = [clock.job(job) for job in fields]
    # a later job's head loads while the job before computes: it takes at least its passes, and
    # at most what it takes alone (but that its input may wait for the writes before it)
    for earlier, later, job in zip(stats, stats[1:], fields[1:]):
        alone = core_cycles(CONFIG, job) + JOB_END + last_burst_beats(CONFIG, job)
        assert passes_floor(job) < later - earlier <= alone + INPUT_AFTER_START
    assert stats[0] > core_cycles(CONFIG, fields[0])
    assert clock.done == stats[-1] + LIST_DONE == list_cycles(CONFIG, fields)
    assert ListClock(CONFIG).done == 0


@settings(max_examples=100, deadline=None)
@given(jobs(), st.integers(0, 4))
def test_weights_loaded_well_ahead_never_make_a_job_slower(job, strip_rows):
    """With its whole head loaded long before it starts, a job whose first output tile's weight
    rows all precede its input (weights_first) is never slower than the interleaved order: its
    input and later tiles stream no later, its weight rows sooner."""
    early = -10 ** 6
    interleaved = core_cycles(CONFIG, dict(job, strip_rows=strip_rows), head=early)
    first = core_cycles(CONFIG, dict(job, strip_rows=strip_rows, weights_first=1), head=early)
    assert passes_floor(job) <= first <= interleaved


@settings(max_examples=100, deadline=None)
@given(jobs(), jobs(), st.integers(0, 3))
def test_an_input_loaded_ahead_never_makes_a_job_slower(before, job, strip_rows):
    """The job after ``before``, its input loaded ahead (``input_ahead``) or following the job
    before's written rows (``input_follows``), takes at least its passes and never longer than
    waiting for the job before to complete; loaded ahead it takes no longer than following."""
    def second(**order) -> int:
        clock = ListClock(CONFIG)
        clock.job(before)
        start = clock.cycles
        return clock.job(dict(job, strip_rows=strip_rows, **order)) - start

    waits = second()
    follows = second(input_ahead=1, input_follows=1)
    ahead = second(input_ahead=1)
    assert passes_floor(job) < ahead <= follows <= waits


def conv_job(in_ch, out_ch, size, *, stride=1):
    """Command fields of a 3x3 "same" convolution on the default engine."""
    out = (size - 1) // stride + 1
    return dict(kernel_h=3, kernel_w=3, stride_h=stride, stride_w=stride, pad_top=1, pad_left=1, in_ch=in_ch,
                out_ch=out_ch, in_h=size, in_w=size, out_h=out, out_w=out, pool=0, add=0, sum_pool=0, sync=1,
                out_pixel_words=pixel_words(out_ch, DEFAULT_CONFIG))


def test_the_order_puts_weights_first_only_where_the_job_before_leaves_time():
    """ResNet-8's stride-2 layer into 64 channels: as a list's first job its first pass must trail
    the input as soon as it can (interleaved); after a long layer, whose passes leave the loader
    time for all its first tile's weight rows, weights first is the faster order."""
    job = conv_job(32, 64, 16, stride=2)
    assert fastest_order(DEFAULT_CONFIG, job)["weights_first"] == 0
    clock = ListClock(DEFAULT_CONFIG)
    before = conv_job(32, 32, 16)
    clock.job(dict(before, **fastest_order(DEFAULT_CONFIG, before, clock=clock)))
    order = fastest_order(DEFAULT_CONFIG, job, clock=clock)
    assert order["weights_first"] == 1
    cycles = {first: ListClock.job(copy.copy(clock), dict(job, strip_rows=order["strip_rows"], weights_first=first))
              for first in (0, 1)}
    assert cycles[1] < cycles[0]


def test_the_reference_engine_reports_the_model_of_its_list():
    rng = np.random.default_rng(5)
    program = random_program(rng, DEFAULT_CONFIG.width, 6)
    transport = ReferenceBusTransport(DEFAULT_CONFIG)
    driver = Driver(transport)
    loaded = driver.load(program)
    run = driver.run(loaded, random_input(rng, program, 1), keep_memory=True)
    expected = list_cycles(DEFAULT_CONFIG, [info.fields for info in place(program, DEFAULT_CONFIG).commands])
    assert run.engine_cycles == expected == transport.read(bus_register("CYCLES").offset)
    # each layer's stats cycles run from the previous layer's last command to its own
    assert sum(cycles for cycles, _ in run.layer_stats().values()) == expected - LIST_DONE
