"""Analytic cycle model of a command list on the engine (an estimate; bench/ compares it with the RTL).

**One job on the core** (:func:`core_cycles`) is replayed event by event from its stream
(radix.stream_format, docs/engine.md): the words arrive one a cycle in stream order (the first
output tile's bias words, then per input tile the first tap's weight rows, the input tile and
the rest of the tile's weight rows, then its skip pixels; every later output tile whole),
except that tile ``o``'s words wait for its weight bank (free once tile ``o - 2``'s last pass
began) and its skip pixels for its skip bank (free once that pass ended). A pass starts when
the running pass ends, its weight rows are in and shifted into the array (``rows + 1`` cycles,
no sooner than ``shift_gap`` = ``rows - 1`` cycles after the running pass began), for a tile's first
pass its accumulator bank is drained, and for a tile's last pass with ``add`` its skip pixels
are in; its pixels issue one a cycle, and the next pass starts no sooner than ``min_pass``
cycles after it. The first pass on an input tile of the first output tile
trails the tile as it streams in: its last output row issues once the input row that row's
first tap reads is in. The job's last pass issues every other cycle when it is not its tile's
first and the tile writes two or more words a pixel. A tile drains one cycle per computed pixel
read, a pixel's words one a cycle, and, where the tensor's pixel holds more words than the tile
writes (one burst per pixel), no faster than the write bursts in flight (``WRITE_BURSTS``) come
back from a memory ``MEMORY_LATENCY`` away; it starts once its last pass's first pixel is
through the array where that pass leaves the accumulator's read port free (a tile's only pass,
or a slow one), else once the last pixel is.

**A command list** (:class:`ListClock`) adds what the bus master costs around the jobs: the
list's start (command fetch, checks, the first reads) before the first job's core starts; each
job's end, from its last output word through its last write burst (whose beats follow the
burst's address across the memory's latency) to the responses, the stats word and the next
job's start; the last stats word's response before DONE. These constants were measured on the
Verilated RTL behind the simulation's memory model (``radix_sim.bus_build``: every request
delayed ``MEMORY_LATENCY`` cycles, no pauses) with one-layer programs (``bench/performance.py``)
and ResNet-8 (``bench/resnet8_performance.py``); ``tests/test_sim_network.py`` holds the model
to the RTL on other layers.
"""

from __future__ import annotations

import math

from .engine_spec import (MAX_BURST_BEATS, MEMORY_LATENCY, WRITE_BURSTS, EngineConfig, computed_map, input_group_words,
                          written_map)
from .stream_format import first_tap_words, input_tile_words, tiles, tile_out_words

# Measured list costs (module docstring), in cycles.
LIST_START = 185
JOB_END = 46
LIST_DONE = 42
# Cycles a pixel's issue takes to reach its accumulator write, beyond rows + cols.
ARRAY_PIPELINE = 8
# The registered wait of the first pass on an input row.
ROW_WAIT = 2
# From a tile's last skip word to its last pass's first pixel (the loader's flag, then the take).
SKIP_WAIT = 2


def core_cycles(config: EngineConfig, job: dict) -> int:
    """Cycles from the core's start to its last output word for a job's command fields ``job``
    (``radix.engine_spec.COMMAND_FIELDS`` by name)."""
    rows, cols = config.rows, config.cols
    t_in, t_out = tiles(job["in_ch"], rows), tiles(job["out_ch"], cols)
    taps = job["kernel_h"] * job["kernel_w"]
    pool, summed = bool(job["pool"]), bool(job.get("sum_pool", 0))
    comp_h, comp_w = computed_map(job["out_h"], job["out_w"], pool)
    pixels = comp_h * comp_w
    written = math.prod(written_map(job["out_h"], job["out_w"], pool=pool, sum_pool=summed))
    chunk = first_tap_words(config)
    narrow = bool(job.get("narrow_in", 0))
    in_tile = input_tile_words(job["in_h"], job["in_w"], config, narrow=narrow)
    skip = pixels * config.wt_words if job["add"] else 0
    pass_cycles = max(pixels, config.min_pass)
    to_accumulator = rows + cols + ARRAY_PIPELINE
    # the input row that the last output row's first tap reads, and the words up to its end
    last_row = min(max((comp_h - 1) * job["stride_h"] - job["pad_top"], 0), job["in_h"] - 1)
    rows_needed = (last_row + 1) * job["in_w"] * input_group_words(config, narrow=narrow)
    write_burst = (MEMORY_LATENCY + 2) / WRITE_BURSTS  # cycles per burst the writes' responses allow

    stream = 0  # cycles at which the stream's next word can arrive
    started = ended = -math.inf  # the running pass
    last_started, last_ended, drained = [], [], []
    drain_end = 0
    for o in range(t_out):
        if o >= 2:
            stream = max(stream, last_started[o - 2] + 1)
        stream += cols
        passes = []  # (weight rows in, end of the input rows the pass trails or None)
        for _ in range(t_in):
            stream += chunk
            if o == 0:
                passes.append((stream, stream + rows_needed))
                stream += in_tile
            else:
                passes.append((stream, None))
            for _ in range(taps - 1):
                stream += chunk
                passes.append((stream, None))
        stream += 1  # the loader's cycle at the tile's end
        skip_in = 0
        if skip:
            if o >= 2:
                stream = max(stream, last_ended[o - 2])
            stream += skip
            skip_in = stream + SKIP_WAIT
        words = tile_out_words(job["out_ch"], o, config)
        # the job's last pass issues every other cycle when it reads the accumulator and its
        # tile writes two or more words a pixel
        slow = o == t_out - 1 and len(passes) > 1 and words >= 2
        for index, (rows_in, trailed) in enumerate(passes):
            start = max(ended, rows_in + rows + 1, started + config.shift_gap + rows + 1)
            if index == 0 and o >= 2:
                start = max(start, drained[o - 2])
            if index == len(passes) - 1:
                start = max(start, skip_in)
            issued = start + pixels * (2 if slow and index == len(passes) - 1 else 1)  # its last pixel
            if trailed is not None:
                issued = max(issued, trailed + comp_w + ROW_WAIT)
            started, ended = start, max(issued, start + pass_cycles)
        last_started.append(started)
        last_ended.append(issued + to_accumulator)
        per_pixel = words if job["out_pixel_words"] == words else max(words, write_burst)
        # a pooled tile reads every computed pixel, a pixel's words taking a cycle each beyond the
        # first; a summed tile holds its one pixel in a register
        drain = max(pixels + written * (words - 1), written * per_pixel) if pool else written * per_pixel
        # the drain follows the last pass where that pass leaves the accumulator's read port free
        # (a tile's only pass reads no accumulator word; a slow pass every other cycle)
        early = (len(passes) == 1 or slow) and not summed
        begin = max((started if early else issued) + to_accumulator, drain_end)
        drain_end = max(begin + math.ceil(drain), issued + to_accumulator + math.ceil(per_pixel))
        drained.append(drain_end)
    return drain_end


def last_burst_beats(config: EngineConfig, job: dict) -> int:
    """Beats of a job's last write burst (about: bursts end at 128-byte boundaries), which go
    out after the burst's address has crossed the memory's latency."""
    pool, summed = bool(job["pool"]), bool(job.get("sum_pool", 0))
    written = math.prod(written_map(job["out_h"], job["out_w"], pool=pool, sum_pool=summed))
    words = tile_out_words(job["out_ch"], tiles(job["out_ch"], config.cols) - 1, config)
    run = written * words if job["out_pixel_words"] == words else words
    return min(run, MAX_BURST_BEATS)


class ListClock:
    """The cycles of a command list, job by job: :meth:`job` returns the cycle from START at
    which a job's stats word is written, :attr:`done` the cycle of DONE after the last job."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.cycles = 0
        self.jobs = 0

    def job(self, fields: dict) -> int:
        """Account one job (its command fields by name); the cycle of its stats word."""
        if self.jobs == 0:
            self.cycles += LIST_START
        self.cycles += core_cycles(self.config, fields) + JOB_END + last_burst_beats(self.config, fields)
        self.jobs += 1
        return self.cycles

    @property
    def done(self) -> int:
        """The cycle of DONE (0 for an empty list)."""
        return self.cycles + LIST_DONE if self.jobs else 0


def list_cycles(config: EngineConfig, jobs) -> int:
    """START to DONE of a command list of the command fields ``jobs``."""
    clock = ListClock(config)
    for fields in jobs:
        clock.job(fields)
    return clock.done
