"""Analytic cycle model of one engine job (an estimate; bench/ compares it with the RTL).

Phases (docs/engine.md, radix.stream_format): the first output tile's bias words and skip
pixels (residual add) stream in, then for each input tile the first pass's weight rows, the
input tile and the rest of that tile's weight rows of the first output tile. The first pass
starts once its weight rows are in and trails the input tile as it streams in, ending about one
output row after the tile's last word or after ``max(P, min_pass)`` cycles, whichever is later;
the first output tile then runs the rest of its ``T_in * KH * KW`` passes, unless the stream is
slower, when it ends one pass after the stream's last word of the tile. Every later output tile runs its passes overlapped with loading
the next tile's words and draining the previous tile's outputs, whichever is longest; the last
tile's outputs drain at the end (only the words holding channels); plus the array's pipeline
latency.
"""

from __future__ import annotations

import math

from .engine_spec import EngineConfig, computed_map, written_map
from .stream_format import (cotile_header_words, cotile_word_count, first_tap_words, input_tile_words,
                            input_word_count, tile_out_words, tiles)


def job_cycles(config: EngineConfig, job: dict) -> int:
    """Cycles from the core's start to its last output word for a job's command fields ``job``
    (``radix.engine_spec.COMMAND_FIELDS`` by name: in_ch, in_h, in_w, out_ch, out_h, out_w,
    kernel_h, kernel_w, pool, add, sum_pool)."""
    t_in = tiles(job["in_ch"], config.rows)
    t_out = tiles(job["out_ch"], config.cols)
    k = (job["kernel_h"], job["kernel_w"])
    pool = bool(job["pool"])
    h, w = computed_map(job["out_h"], job["out_w"], pool)
    p = h * w
    pooled = math.prod(written_map(job["out_h"], job["out_w"], pool=pool, sum_pool=bool(job.get("sum_pool", 0))))
    skip = p if job["add"] else 0
    load_input = input_word_count(job["in_ch"], job["in_h"], job["in_w"], config)
    tile_words = cotile_word_count(job["in_ch"], k, config, skip_pixels=skip)
    header = cotile_header_words(config, skip_pixels=skip)
    pass_cycles = max(p, config.min_pass)
    tile_compute = t_in * math.prod(k) * pass_cycles
    first_pass_start = header + first_tap_words(config)
    first_pass_end = first_pass_start + max(pass_cycles, input_tile_words(job["in_h"], job["in_w"], config) + w)
    first_tile = max(first_pass_end + tile_compute - pass_cycles, load_input + tile_words + pass_cycles)
    tile_drain = pooled * config.wt_words
    last_drain = pooled * tile_out_words(job["out_ch"], t_out - 1, config)  # the last tile's words only
    steady = max(tile_compute, tile_words, tile_drain)
    latency = config.rows + config.cols + 8
    return first_tile + (t_out - 1) * steady + last_drain + latency
