"""AXI4 master port members, flat and named as Vivado infers them (``m_axi_*``).

The bus-master engine's port to memory (docs/engine.md, "Memory and commands"): 64-bit data,
32-bit byte addresses, INCR bursts of at most 16 beats, one ID (0), so read data arrives in order.
"""

from __future__ import annotations

from amaranth.lib.wiring import In, Out

from radix.engine_spec import BUS_ADDR_BITS, BUS_BYTES

DATA_BITS = BUS_BYTES * 8
LEN_BITS = 8  # AXI4 AxLEN; the engine keeps to 16 beats, as the HP ports' AXI3 needs
BURST_INCR = 0b01
SIZE_8_BYTES = 0b011
CACHE_BUFFERABLE_MODIFIABLE = 0b0011  # what Xilinx masters drive by default
RESP_OKAY = 0b00
RESP_EXOKAY = 0b01


def axi4_master_members(prefix: str = "m_axi") -> dict:
    """Signature members of an AXI4 master port (flow seen from the master)."""
    out = {}
    for ch in ("ar", "aw"):
        out.update({
            f"{prefix}_{ch}id": Out(1),
            f"{prefix}_{ch}addr": Out(BUS_ADDR_BITS),
            f"{prefix}_{ch}len": Out(LEN_BITS),
            f"{prefix}_{ch}size": Out(3),
            f"{prefix}_{ch}burst": Out(2),
            f"{prefix}_{ch}lock": Out(1),
            f"{prefix}_{ch}cache": Out(4),
            f"{prefix}_{ch}prot": Out(3),
            f"{prefix}_{ch}qos": Out(4),
            f"{prefix}_{ch}valid": Out(1),
            f"{prefix}_{ch}ready": In(1),
        })
    out.update({
        f"{prefix}_rid": In(1),
        f"{prefix}_rdata": In(DATA_BITS),
        f"{prefix}_rresp": In(2),
        f"{prefix}_rlast": In(1),
        f"{prefix}_rvalid": In(1),
        f"{prefix}_rready": Out(1),
        f"{prefix}_wdata": Out(DATA_BITS),
        f"{prefix}_wstrb": Out(BUS_BYTES),
        f"{prefix}_wlast": Out(1),
        f"{prefix}_wvalid": Out(1),
        f"{prefix}_wready": In(1),
        f"{prefix}_bid": In(1),
        f"{prefix}_bresp": In(2),
        f"{prefix}_bvalid": In(1),
        f"{prefix}_bready": Out(1),
    })
    return out


def bus_master_control_members() -> dict:
    """The members both bus masters share with the engine around them: the window a burst must
    keep to (``win_base``, ``win_size``), ``stop`` (issue no new burst), ``flush`` (drop data) and
    the outcomes ``window_error`` / ``bus_error`` with ``error_addr`` (the failing burst's first
    byte; the first error wins) and ``quiet``."""
    return {
        "win_base": In(BUS_ADDR_BITS),
        "win_size": In(BUS_ADDR_BITS),
        "stop": In(1),
        "flush": In(1),
        "window_error": Out(1),
        "bus_error": Out(1),
        "error_addr": Out(BUS_ADDR_BITS),
        "quiet": Out(1),
    }
