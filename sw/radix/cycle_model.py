"""Analytic cycle model of a command list on the engine (an estimate; bench/ compares it with the RTL).

**One job on the core** (:func:`core_cycles`) is replayed event by event from its stream
(radix.stream_format, docs/engine.md): the words arrive one a cycle in stream order (the first
output tile's bias words, then per input tile the first tap's weight rows, the input tile and
the rest of the tile's weight rows, or with ``weights_first`` all its weight rows and then the
input tiles, then its skip pixels; every later output tile whole),
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
job's start; the last stats word's response before DONE. Each job after the first has its
stream begun by the loader while the job before computes (docs/engine.md, "The next job loads
ahead"): where the loader could begin it (:func:`core_timeline`), its input no sooner than
``INPUT_AFTER_START`` cycles after the job's start. These constants were measured on the
Verilated RTL behind the simulation's memory model (``radix_sim.bus_build``: every request
delayed ``MEMORY_LATENCY`` cycles, no pauses) with one-layer programs (``bench/performance.py``)
and ResNet-8 (``bench/resnet8_performance.py``); ``tests/test_sim_network.py`` holds the model
to the RTL on other layers.
"""

from __future__ import annotations

import copy
import math

from .engine_spec import (MAX_BURST_BEATS, MEMORY_LATENCY, STRIP_ROWS_BITS, WRITE_BURSTS, EngineConfig, computed_map,
                          input_group_words, written_map)
from .stream_format import input_tile_words, tiles, tile_out_words

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
# From a strip's last skip word to its last pass's first pixel (the write, the count, its compare).
STRIP_SKIP_WAIT = 3
# From a job's last stream word to the next job's first: the next command's words follow the
# job's in the read stream, the command unit derives its sizes (18 steps of its multiplier, 5
# cycles each) and checks it, then its first reads cross the memory's latency. Measured on
# VWW's chains of small depthwise jobs, whose heads load during jobs of a few hundred cycles
# (48 before: the long jobs of ResNet-8 hide it).
NEXT_HEAD_DELAY = 140
# Cycles from a write burst's address to the release of its slot (WRITE_BURSTS of them): the
# memory's latency, the data, the response and the write master's registers (measured with the
# one-word bursts of ResNet-8's stack2 shortcut, whose second output tile is one word a pixel).
WRITE_TURNAROUND = MEMORY_LATENCY + 5
# From a job's start to its first input word where it waits for the earlier commands' writes
# (``sync``: its input reads go out as the job before completes); else a cycle.
INPUT_AFTER_START = 30
# From the job before's last word of an output row to an ``input_follows`` job's first word of
# that row: the write's response, the row's gate, the read across the memory's latency.
FOLLOW_DELAY = WRITE_TURNAROUND + MEMORY_LATENCY + 12


def job_strips(job: dict) -> list[tuple[int, int]]:
    """``(first row, rows)`` of each strip of computed rows a job's passes run over, in order
    (docs/engine.md, "Strips of rows"): one strip of the whole map without ``strip_rows``."""
    comp_h = computed_map(job["out_h"], job["out_w"], bool(job["pool"]))[0]
    strip = job.get("strip_rows", 0)
    if not strip or strip >= comp_h:
        return [(0, comp_h)]
    return [(i0, min(strip, comp_h - i0)) for i0 in range(0, comp_h, strip)]


def core_cycles(config: EngineConfig, job: dict, *, head: float | None = None,
                rows_ready: list[float] | None = None) -> int:
    """Cycles from the core's start to its last output word for a job's command fields ``job``
    (``radix.engine_spec.COMMAND_FIELDS`` by name). ``head`` is the cycle, from the core's start
    (negative: before it), at which the loader began the job's stream (None: at the start); the
    input then arrives no sooner than ``INPUT_AFTER_START`` cycles after the start (an
    ``input_ahead`` job's as soon as the loader reaches it; an ``input_follows`` job's row ``r``
    of the band no sooner than ``rows_ready[r]``)."""
    return core_timeline(config, job, head=head, rows_ready=rows_ready)[0]


def core_timeline(config: EngineConfig, job: dict, *, head: float | None = None,
                  rows_ready: list[float] | None = None) -> tuple[int, float, list[tuple[int, float]]]:
    """``(cycles, loader free, rows written)``: :func:`core_cycles`; the cycle from the core's
    start at which the loader could begin the next job's stream: its own stream is in, and the
    bank the next job's first tile takes is free (its tile before the last has begun its last
    pass); and, per strip of the last output tile, ``(end, cycle)``: the output tensor's rows
    below ``end`` are all written at ``cycle`` (their last word leaves the core)."""
    rows, cols = config.rows, config.cols
    t_in, t_out = tiles(job["in_ch"], rows), tiles(job["out_ch"], cols)
    kernel = (job["kernel_h"], job["kernel_w"])
    taps = math.prod(kernel)
    pool, summed = bool(job["pool"]), bool(job.get("sum_pool", 0))
    comp_w = computed_map(job["out_h"], job["out_w"], pool)[1]
    pixels = math.prod(computed_map(job["out_h"], job["out_w"], pool))
    strips = job_strips(job)
    passes = t_in * taps  # per strip of an output tile
    leading = taps if job.get("strip_rows", 0) else 1  # taps of weight rows before an input tile
    weights_first = bool(job.get("weights_first", 0))  # all the first tile's rows before its input
    narrow = bool(job.get("narrow_in", 0))
    in_tile = input_tile_words(job["in_h"], job["in_w"], config, narrow=narrow)
    row_words = job["in_w"] * input_group_words(config, narrow=narrow)
    to_accumulator = rows + cols + ARRAY_PIPELINE
    write_burst = WRITE_TURNAROUND / WRITE_BURSTS  # cycles per burst the writes' responses allow

    def input_rows_in(rows_in: list[float], last_row: int, u: int) -> float:
        """When the input row that output row ``last_row`` reads at kernel row ``u`` is in."""
        return rows_in[min(max(last_row * job["stride_h"] + u - job["pad_top"], 0), job["in_h"] - 1)]

    stream = 0 if head is None else head  # cycles at which the stream's next word can arrive
    input_floor = -math.inf if head is None else (INPUT_AFTER_START if job.get("sync", 1) else 1)
    skip_floor = input_floor
    if job.get("input_ahead", 0):
        input_floor = -math.inf
    started, ended = -math.inf, 0  # the running pass (none before the core's start)
    tile_started, tile_ended, strip_drained = [], [], []  # per output tile's last pass; per strip
    written_rows = []  # the last output tile's strips: (output rows below, cycle)
    drain_end = 0
    for o in range(t_out):
        words = tile_out_words(job["out_ch"], o, config)  # a weight row's, skip pixel's, output pixel's
        chunk = rows * words  # one tap's weight rows of one input tile
        skip = pixels * words if job["add"] else 0
        if o >= 2:
            stream = max(stream, tile_started[o - 2] + 1)
        stream += cols
        weights_in, tile_rows = [], []  # per input tile: each tap's weight rows in; each of its rows in
        interleaved = o == 0 and not weights_first

        def input_tile():
            nonlocal stream
            stream = max(stream, input_floor)
            if rows_ready is None:
                tile_rows.append([stream + (r + 1) * row_words for r in range(job["in_h"])])
                stream += in_tile
                return
            tile_rows.append([])
            for r in range(job["in_h"]):
                stream = max(stream, rows_ready[r]) + row_words
                tile_rows[-1].append(stream)

        for _ in range(t_in):
            arrivals = []
            for tap in range(taps):
                if interleaved and tap == leading:
                    input_tile()
                stream += chunk
                arrivals.append(stream)
            if interleaved and leading == taps:
                input_tile()
            weights_in.append(arrivals)
        if o == 0 and weights_first:
            for _ in range(t_in):
                input_tile()
        stream += 1  # the loader's cycle at the tile's end
        skip_in = skip_start = 0
        if skip:
            if o >= 2:
                stream = max(stream, tile_ended[o - 2])
            stream = max(stream, skip_floor)
            skip_start = stream
            stream += skip
            skip_in = stream + SKIP_WAIT
            stream += 1  # and its cycle after the skip pixels
        per_pixel = words if job["out_pixel_words"] == words else max(words, write_burst)
        for b, (i0, n) in enumerate(strips):
            strip_pixels = n * comp_w
            pass_cycles = max(strip_pixels, config.min_pass)
            last_strip = b == len(strips) - 1
            # the job's last pass issues every other cycle when it reads the accumulator and its
            # tile writes two or more words a pixel
            slow = o == t_out - 1 and last_strip and passes > 1 and words >= 2
            index = 0
            for t in range(t_in):
                for tap in range(taps):
                    start = max(ended, weights_in[t][tap] + rows + 1, started + config.shift_gap + rows + 1)
                    if index == 0 and len(strip_drained) >= 2:
                        start = max(start, strip_drained[-2])
                    if index == passes - 1 and skip:  # the skip pixels up to the strip's end
                        start = max(start, skip_in if last_strip else
                                    skip_start + (i0 + n) * comp_w * words + STRIP_SKIP_WAIT)
                    issued = start + strip_pixels * (2 if slow and index == passes - 1 else 1)  # its last pixel
                    first_issued = start  # and its first
                    if o == 0:  # the pass trails its input rows
                        issued = max(issued, input_rows_in(tile_rows[t], i0 + n - 1, tap // kernel[1])
                                     + comp_w + ROW_WAIT)
                        first_issued = max(start, input_rows_in(tile_rows[t], i0, tap // kernel[1]) + ROW_WAIT)
                    started, ended = start, max(issued, start + pass_cycles)
                    index += 1
            if last_strip:
                tile_started.append(started)
                tile_ended.append(issued + to_accumulator)
            # a pooled strip reads every computed pixel, a pixel's words taking a cycle each beyond
            # the first (an odd row emits); a summed tile holds its one pixel in a register
            if summed:
                written = 1
            elif pool:
                written = sum(1 for i in range(i0, i0 + n) if i % 2) * (comp_w // 2)
            else:
                written = strip_pixels
            drain = max(strip_pixels + written * (words - 1), written * per_pixel) if pool else written * per_pixel
            # the drain follows the last pass where that pass leaves the accumulator's read port
            # free (a strip's only pass reads no accumulator word; a slow pass every other cycle)
            early = (passes == 1 or slow) and not summed
            begin = max((first_issued if early else issued) + to_accumulator, drain_end)
            drain_end = max(begin + math.ceil(drain), issued + to_accumulator + math.ceil(per_pixel))
            strip_drained.append(drain_end)
            if o == t_out - 1:  # the strip's rows drain one after another
                for k in range(1, n + 1):
                    below = 1 if summed else (i0 + k) // 2 if pool else i0 + k
                    written_rows.append((job.get("out_y0", 0) + below, min(drain_end, begin + drain * k / n)))
    bank_free = tile_started[-2] if t_out >= 2 else -math.inf
    return math.ceil(drain_end), max(stream + NEXT_HEAD_DELAY, bank_free), written_rows


def fastest_order(config: EngineConfig, job: dict, *, clock: ListClock | None = None) -> dict:
    """The ``strip_rows`` (0 for one strip) and ``weights_first`` with which ``job`` finishes
    soonest: on the core alone (:func:`core_cycles`), or, with ``clock`` (the list's jobs before
    it, which it leaves as it is), as the list's next job, whose head loads while the job before
    computes. Strips help a job of several passes, whose first strip trails the input and whose
    strips' drains overlap the next strips' passes; a strip of fewer pixels than ``min_pass``
    wastes the rest of each pass, so smaller ones are not tried. A summed job has one strip.
    Weights first helps a job whose weights can load during the job before: only its input is
    then left to stream. On a tie the plainer order wins (no strips, interleaved)."""
    comp_h, comp_w = computed_map(job["out_h"], job["out_w"], bool(job["pool"]))
    taps = job["kernel_h"] * job["kernel_w"]
    t_in = tiles(job["in_ch"], config.rows)
    strips = [0]
    if not (job.get("sum_pool", 0) or t_in * taps == 1 or comp_h < 2):
        smallest = max(1, -(-config.min_pass // comp_w))
        strips += list(range(smallest, min(comp_h - 1, (1 << STRIP_ROWS_BITS) - 1) + 1))

    def cycles(order: dict) -> float:
        if clock is None:
            return core_cycles(config, dict(job, **order))
        return copy.copy(clock).job(dict(job, **order))

    # weights first differs from the interleaved order only where a tile's weight rows would
    # follow some of its input: several input tiles, or several taps without strips
    orders = [{"strip_rows": rows, "weights_first": first} for first in (0, 1) for rows in strips
              if not first or t_in > 1 or (taps > 1 and not rows)]
    return min(orders, key=cycles)  # min keeps the first of equals


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
        self._loader_free = 0.0  # the cycle at which the loader can begin the next job's stream
        self._written: list[tuple[int, float]] = []  # the job before's (output rows below, cycle)
        self._written_from = 0  # and its band's first row

    def job(self, fields: dict) -> int:
        """Account one job (its command fields by name); the cycle of its stats word."""
        if self.jobs == 0:
            self.cycles += LIST_START
            head = None
        else:  # the loader began this job while the one before computed
            head = min(0.0, self._loader_free - self.cycles)
        start = self.cycles
        rows_ready = self._rows_ready(fields, start) if fields.get("input_follows", 0) and self.jobs else None
        end, loader_free, written = core_timeline(self.config, fields, head=head, rows_ready=rows_ready)
        self._loader_free = start + loader_free
        self._written = [(rows, start + cycle) for rows, cycle in written]
        self._written_from = fields.get("out_y0", 0)
        self.cycles = start + end + JOB_END + last_burst_beats(self.config, fields)
        self.jobs += 1
        return self.cycles

    def _rows_ready(self, fields: dict, start: int) -> list[float]:
        """When each input row of an ``input_follows`` job's band may arrive, from its start: its
        rows of the tensor (``in_row_pitch`` rows a view row) written by the job before, its
        writes answered and its reads back (``FOLLOW_DELAY``), or once the job before is
        complete (``INPUT_AFTER_START``)."""
        pitch = max(1, fields.get("in_row_pitch", 0))
        ready = []
        for r in range(fields["in_h"]):
            below = (fields.get("in_y0", 0) + r + 1) * pitch  # the tensor rows the row's read waits for
            if below <= self._written_from:  # written by the jobs before the job before
                ready.append(-math.inf)
                continue
            cycle = next((when for rows, when in self._written if rows >= below), self._written[-1][1])
            ready.append(min(cycle + FOLLOW_DELAY - start, INPUT_AFTER_START))
        return ready

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
