"""The Radix PYNQ-Z2 overlay as software sees it, without PYNQ: cell names, the DMA, the clock.

``boards/pynq_z2/build_overlay.tcl`` builds the overlay these constants describe, and
``tests/test_board_tcl.py`` keeps the two in step; :mod:`radix.pynq_transport` (which needs PYNQ)
uses them on the board. Standard library only.

FCLK_CLK0, the engine's clock, comes from the Zynq PS: its IO PLL (1000 MHz on the PYNQ-Z2: the
50 MHz crystal times ``PCW_IOPLL_CTRL_FBDIV`` 20 in PYNQ's base design) divided by two 6-bit
dividers, so the PS makes 1000 MHz / n for n = d0 * d1 (1 <= d0, d1 <= 63); the fabric clock
tops out at 250 MHz. :func:`check_fclk_mhz` refuses any other frequency, naming the nearest ones.
"""

from __future__ import annotations

ENGINE_CELL = "engine"  # block design cell of the engine: its key in the overlay's ip_dict
DMA_CELL = "axi_dma"  # block design cell of the AXI DMA
DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"  # what PYNQ 3.0.1's pynq.lib.dma.DMA binds to
BUFFER_LENGTH_WIDTH = 23  # the DMA's buffer length register (c_sg_length_width in the Tcl)

FCLK_SOURCE_MHZ = 1000.0  # the PS IO PLL that FCLK_CLK0 divides
FCLK_DIVIDER_MAX = 63  # each of FPGA0_CLK_CTRL's two dividers is 6 bits
FCLK_MIN_MHZ, FCLK_MAX_MHZ = 10.0, 250.0  # the range the flow accepts (250 MHz: the fabric's limit)
FCLK_TOLERANCE = 5e-4  # relative: 142.86 or 142.857 name 1000/7 MHz, 143 does not
DEFAULT_FCLK_MHZ = 100.0


class ClockError(ValueError):
    """A clock frequency the PS cannot make; the message names the nearest ones it can."""


def fclk_frequencies() -> tuple[float, ...]:
    """Every FCLK_CLK0 frequency the PS makes within the accepted range, highest first."""
    products = {d0 * d1 for d0 in range(1, FCLK_DIVIDER_MAX + 1) for d1 in range(1, FCLK_DIVIDER_MAX + 1)}
    return tuple(FCLK_SOURCE_MHZ / n for n in sorted(products)
                 if FCLK_MIN_MHZ <= FCLK_SOURCE_MHZ / n <= FCLK_MAX_MHZ)


def format_mhz(mhz: float) -> str:
    """``142.857``, ``100``: a frequency with at most three decimals, as the flow prints them."""
    return f"{mhz:.3f}".rstrip("0").rstrip(".")


def check_fclk_mhz(mhz: float, *, what: str = "FCLK_CLK0") -> float:
    """The exact PS frequency that ``mhz`` names (within :data:`FCLK_TOLERANCE`), else :class:`ClockError`."""
    choices = fclk_frequencies()
    mhz = float(mhz)
    nearest = min(choices, key=lambda f: abs(f - mhz))
    if abs(nearest - mhz) <= FCLK_TOLERANCE * nearest:
        return nearest
    below = [f for f in choices if f < mhz]
    above = [f for f in choices if f > mhz]
    neighbours = [format_mhz(f) for f in (below[:1] + above[-1:])]
    nearest_text = f"the nearest are {neighbours[0]} and {neighbours[1]}" if len(neighbours) == 2 \
        else f"the nearest is {neighbours[0]}"
    raise ClockError(f"{what} {format_mhz(mhz)} MHz is not a frequency the PS can make "
                     f"({format_mhz(FCLK_SOURCE_MHZ)} MHz IO PLL / an integer divisor, "
                     f"{format_mhz(FCLK_MIN_MHZ)}..{format_mhz(FCLK_MAX_MHZ)} MHz): {nearest_text} MHz")
