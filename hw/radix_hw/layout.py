"""Data layouts shared between the gateware modules and the shell.

``LayerConfigLayout`` is the job description the command unit holds stable from ``start`` to
``done`` (field order and widths are part of the core's interface). ``pixel_meta_layout`` describes the
bookkeeping that travels with every pixel slot from the sequencer to the accumulator, and
``OUTPUT_WORD_LAYOUT`` is the payload of the output stream.
"""

from amaranth.lib import data
from amaranth.utils import ceil_log2

from radix.engine_spec import CORE_LAYER_FIELDS

LayerConfigLayout = data.StructLayout(CORE_LAYER_FIELDS)  # engine_spec's one definition

OUTPUT_WORD_LAYOUT = data.StructLayout({"data": 64, "last": 1})


def pixel_meta_layout(acc_depth: int) -> data.StructLayout:
    """Metadata of one pixel slot of a pass.

    ``valid`` marks a real pixel (bubbles have it clear), ``addr`` is its accumulator address
    (from 0 in each strip of rows), ``first`` marks the first pass of a strip of an output-channel
    tile (write bias + sum), ``final`` the strip's last pass (each pixel it writes is finished),
    ``last`` the strip's final pixel (its bank is complete once written), ``bank`` the
    accumulator bank, ``tile_end`` the output tile's last strip; ``skip_bank`` (the tile's
    weight bank) and ``skip_addr`` (the pixel's place in the tile's computed map) address its
    skip pixel.
    """
    addr_bits = max(1, ceil_log2(acc_depth))
    return data.StructLayout({
        "valid": 1,
        "addr": addr_bits,
        "first": 1,
        "final": 1,
        "last": 1,
        "bank": 1,
        "tile_end": 1,
        "skip_bank": 1,
        "skip_addr": addr_bits,
    })


def input_address_bits(config) -> int:
    """Address width of the input buffer (``in_depth`` pixel groups), written by the loader and
    read by the sequencer: both take it from here so their ports agree."""
    return ceil_log2(config.in_depth)


def weight_address_bits(config) -> int:
    """Address width of the two weight banks, one memory of ``2 * wt_depth`` rows."""
    return max(1, ceil_log2(2 * config.wt_depth))
