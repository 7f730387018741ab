"""Analytic cycle model of one engine job (an estimate; bench/ compares it with the RTL).

Phases (docs/engine.md, radix.stream_format): the first output tile's bias words and skip
pixels (residual add) stream in, then each input tile followed by that tile's weight rows of
the first output tile. The first pass starts once the first input tile and the first pass's
weight rows are in; the first output tile then runs its ``T_in * k * k`` passes of
``max(P, min_pass)`` cycles, unless the stream is slower, when it ends one pass after the
stream's last word of the tile. Every later output tile runs its passes overlapped with loading
the next tile's words and draining the previous tile's outputs, whichever is longest; the last
tile's outputs drain at the end; plus the array's pipeline latency.
"""

from __future__ import annotations

from .engine_spec import EngineConfig, computed_map, field_mask
from .stream_format import cotile_header_words, cotile_word_count, input_tile_words, input_word_count, tiles


def job_cycles(config: EngineConfig, layer: dict) -> int:
    """Cycles from START to the last output word for the layer registers ``layer`` (by name)."""
    t_in = tiles(layer["IN_CH"], config.rows)
    t_out = tiles(layer["OUT_CH"], config.cols)
    k = layer["KERNEL"]
    pool = bool(layer["FLAGS"] & field_mask("FLAGS", "POOL"))
    h, w = computed_map(layer["OUT_H"], layer["OUT_W"], pool)
    p = h * w
    pooled = (h // 2) * (w // 2) if pool else p
    skip = p if layer["FLAGS"] & field_mask("FLAGS", "ADD") else 0
    load_input = input_word_count(layer["IN_CH"], layer["IN_H"], layer["IN_W"], config)
    tile_words = cotile_word_count(layer["IN_CH"], k, config, skip_pixels=skip)
    header = cotile_header_words(config, skip_pixels=skip)
    pass_cycles = max(p, config.min_pass)
    tile_compute = t_in * k * k * pass_cycles
    first_pass_ready = header + input_tile_words(layer["IN_H"], layer["IN_W"], config) + config.rows * config.wt_words
    first_tile = max(first_pass_ready + tile_compute, load_input + tile_words + pass_cycles)
    tile_drain = pooled * config.wt_words
    steady = max(tile_compute, tile_words, tile_drain)
    latency = config.rows + config.cols + 8
    return first_tile + (t_out - 1) * steady + tile_drain + latency


def ideal_cycles(config: EngineConfig, layer: dict) -> int:
    """MACs of the job divided by the number of PEs: the utilisation denominator."""
    macs = layer["IN_CH"] * layer["OUT_CH"] * layer["KERNEL"] ** 2 * layer["OUT_H"] * layer["OUT_W"]
    return -(-macs // (config.rows * config.cols))
