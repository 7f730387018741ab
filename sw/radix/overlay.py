"""The Radix PYNQ-Z2 overlay as software sees it, without PYNQ: cells, addresses, ports, the clock.

``boards/pynq_z2/build_overlay.tcl`` builds the overlay these constants describe (engine version
5, the bus master), and ``tests/test_board_tcl.py`` keeps the two in step; :mod:`radix.pynq_transport`
(which needs PYNQ) uses them on the board. Standard library only.

The block design: the PS7's ``M_AXI_GP0`` reaches the engine's AXI4-Lite registers (cell
:data:`ENGINE_CELL`, module ``radix_bus_engine``) and an AXI interrupt controller
(:data:`INTC_CELL`); the engine's AXI4 master reaches the DDR through the PS7's 64-bit
``S_AXI_HP0`` (:data:`HP_PORT`; an AXI interconnect converts AXI4 to the port's AXI3); the
engine's ``interrupt`` goes to the interrupt controller, whose output drives ``IRQ_F2P[0]``.
PYNQ 3.0.1 hands a design's interrupts to Python only through an AXI interrupt controller
(``pynq.Interrupt``): with it the transport sleeps until the engine is done; an overlay without it
still works, polling STATUS. There is no AXI DMA: the engine moves its own data.

FCLK_CLK0, the engine's clock, comes from the Zynq PS: its IO PLL (1000 MHz on the PYNQ-Z2: the
50 MHz crystal times ``PCW_IOPLL_CTRL_FBDIV`` 20 in PYNQ's base design) divided by two 6-bit
dividers, so the PS makes 1000 MHz / n for n = d0 * d1 (1 <= d0, d1 <= 63); the fabric clock
tops out at 250 MHz. :func:`check_fclk_mhz` refuses any other frequency, naming the nearest ones.
"""

from __future__ import annotations

ENGINE_CELL = "engine"  # block design cell of the engine: its key in the overlay's ip_dict
ENGINE_MODULE = "radix_bus_engine"  # the Verilog module the cell references (radix_hw.verilog.MODULE_NAME)
ENGINE_VLNV = f"xilinx.com:module_ref:{ENGINE_MODULE}:1.0"  # what the .hwh calls a module reference
ENGINE_BASE, ENGINE_RANGE = 0x43C00000, 0x1000  # the engine's registers on M_AXI_GP0 (12-bit addresses)
INTERRUPT_PIN = "engine/interrupt"  # the engine's interrupt, as PYNQ names the pin (ip_dict[...]["interrupts"])
INTC_CELL = "axi_intc"  # the AXI interrupt controller between the engine and IRQ_F2P
INTC_VLNV = "xilinx.com:ip:axi_intc:4.1"
INTC_BASE, INTC_RANGE = 0x41800000, 0x10000  # where PYNQ's base designs put theirs
IRQ_F2P_FIRST = 61  # the GIC interrupt of IRQ_F2P[0] on the Zynq-7000 (what PYNQ's UIO node takes)
HP_PORT = "S_AXI_HP0"  # the PS7 slave port the engine's master reaches the DDR through
HP_DATA_BITS = 64
HP_SEGMENT = "HP0_DDR_LOWOCM"  # the DDR segment of S_AXI_HP0 in Vivado's address editor
DDR_BASE, DDR_RANGE = 0x00000000, 512 << 20  # the PYNQ-Z2's 512 MiB of DDR, as S_AXI_HP0 sees it

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
