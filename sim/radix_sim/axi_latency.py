"""A fixed memory latency for simulation: AXI4 address requests delayed on their way to memory.

:class:`AxiLatency` sits between an AXI4 master (the bus-master engine) and a memory model.
Every AR and AW request accepted from the master becomes visible to the memory ``latency``
cycles later; R, W and B pass straight through. So read data reaches the master at least
``latency`` cycles after its AR handshake, and write responses at least ``latency`` cycles after
its AW handshake, however fast the memory model answers. Requests are pipelined: with the
memory always ready, a stream of requests still leaves one per cycle, each ``latency`` cycles
after it entered.

:class:`LatencyTop` wraps a master component with one, for a simulation top level whose
``m_axi_*`` port is the memory side of the latency.
"""

from __future__ import annotations

from amaranth import Cat, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from radix_hw.axi4 import axi4_master_members
from radix_hw.helpers import delay

UP_PREFIX = "up_axi"  # AxiLatency's slave port, toward the master
DOWN_PREFIX = "m_axi"  # AxiLatency's master port, toward the memory (and LatencyTop's)
ADDRESS_CHANNELS = ("ar", "aw")
HANDSHAKE = ("valid", "ready")


def address_payload(channel: str) -> list[tuple[str, int]]:
    """``(member suffix, width)`` of the payload of address channel ``channel`` (e.g. ``araddr``)."""
    members = axi4_master_members("x")
    return [(name[2:], Shape.cast(members[name].shape).width) for name in members
            if name.startswith(f"x_{channel}") and name[2 + len(channel):] not in HANDSHAKE]


def _passthrough_members() -> list[tuple[str, bool]]:
    """``(member suffix, flows toward the memory)`` of the R, W and B channels."""
    members = axi4_master_members("x")
    return [(name[2:], members[name].flow == wiring.Out) for name in members
            if not name[2:].startswith(ADDRESS_CHANNELS)]


class AxiLatency(wiring.Component):
    """Delay the AR and AW requests of an AXI4 master by a fixed number of cycles.

    Parameters
    ----------
    latency:
        Cycles from a request's handshake on the ``up_axi`` side to the first cycle it is
        offered (``VALID``) on the ``m_axi`` side. 0 passes every channel straight through.
    depth:
        Requests each of AR and AW holds at once, in flight and waiting for the memory;
        ``up_axi_*ready`` is high while fewer are held. One request per cycle needs
        ``depth >= latency + 1``. Ignored when ``latency`` is 0.

    Ports: ``up_axi_*`` (the flipped members of ``axi4_master_members("up_axi")``: a slave
    toward the master) and ``m_axi_*`` (``axi4_master_members("m_axi")``: a master toward the
    memory). Requests leave in the order they came. ``up_axi_*ready`` depends on registers
    only, so no combinational path runs from the memory's ready to the master.
    """

    def __init__(self, *, latency: int, depth: int):
        for name, value, least in (("latency", latency, 0), ("depth", depth, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < least:
                raise ValueError(f"{name} must be at least {least}, not {value}")
        self._latency = latency
        self._depth = depth
        upstream = {name: member.flip() for name, member in axi4_master_members(UP_PREFIX).items()}
        super().__init__({**upstream, **axi4_master_members(DOWN_PREFIX)})

    @property
    def latency(self) -> int:
        return self._latency

    @property
    def depth(self) -> int:
        return self._depth

    def _port(self, prefix: str, suffix: str) -> Signal:
        return getattr(self, f"{prefix}_{suffix}")

    def elaborate(self, platform):
        m = Module()
        for suffix, toward_memory in _passthrough_members():
            up, down = self._port(UP_PREFIX, suffix), self._port(DOWN_PREFIX, suffix)
            m.d.comb += down.eq(up) if toward_memory else up.eq(down)
        for channel in ADDRESS_CHANNELS:
            if self._latency:
                self._delay(m, channel)
            else:
                self._connect(m, channel)
        return m

    def _connect(self, m: Module, channel: str) -> None:
        """Latency 0: the channel straight through."""
        for suffix, _ in address_payload(channel):
            m.d.comb += self._port(DOWN_PREFIX, suffix).eq(self._port(UP_PREFIX, suffix))
        m.d.comb += [
            self._port(DOWN_PREFIX, f"{channel}valid").eq(self._port(UP_PREFIX, f"{channel}valid")),
            self._port(UP_PREFIX, f"{channel}ready").eq(self._port(DOWN_PREFIX, f"{channel}ready")),
        ]

    def _delay(self, m: Module, channel: str) -> None:
        """Requests into a FIFO; a shift register of handshakes says which of them are ripe.

        The payload waits in the FIFO from its handshake on. A request accepted in cycle ``t`` is
        counted ripe from cycle ``t + latency`` on, when the handshake bit, delayed
        ``latency - 1`` cycles, increments ``ripe`` (requests leave in order, so the ripe ones
        are the oldest ``ripe`` of the FIFO). This costs ``latency`` bits, not ``latency``
        copies of the payload, and stays exact however long the memory stalls.
        """
        payload = address_payload(channel)
        fifo = SyncFIFO(width=sum(width for _, width in payload), depth=self._depth)
        m.submodules[f"{channel}_fifo"] = fifo
        up_valid, up_ready = self._port(UP_PREFIX, f"{channel}valid"), self._port(UP_PREFIX, f"{channel}ready")
        down_valid, down_ready = self._port(DOWN_PREFIX, f"{channel}valid"), self._port(DOWN_PREFIX, f"{channel}ready")

        accepted = Signal(name=f"{channel}_accepted")
        m.d.comb += [
            up_ready.eq(fifo.w_rdy),
            accepted.eq(up_valid & fifo.w_rdy),
            fifo.w_en.eq(accepted),
            fifo.w_data.eq(Cat(*(self._port(UP_PREFIX, suffix) for suffix, _ in payload))),
            Cat(*(self._port(DOWN_PREFIX, suffix) for suffix, _ in payload)).eq(fifo.r_data),
        ]
        # reset, so that a reset forgets requests in flight along with the FIFO
        ripening = delay(m, accepted, self._latency - 1, name=f"{channel}_accepted", reset_less=False)

        ripe = Signal(range(self._depth + 1), name=f"{channel}_ripe")
        leaving = Signal(name=f"{channel}_leaving")
        m.d.comb += [
            down_valid.eq(ripe != 0),
            leaving.eq(down_valid & down_ready),
            fifo.r_en.eq(leaving),
        ]
        m.d.sync += ripe.eq(ripe + ripening - leaving)


class LatencyTop(wiring.Component):
    """A simulation top level: ``master``'s ``m_axi_*`` port behind an :class:`AxiLatency`.

    ``master`` is a component with the members of ``axi4_master_members("m_axi")`` (the
    engine, or a test master). The top has the master's other members (``s_axi_*``,
    ``interrupt``, ...) connected straight through, and ``m_axi_*``: the latency's memory side.
    The submodules are ``master`` and ``latency``, so a testbench finds the master's side of
    the bus at ``dut.latency.up_axi_*``.
    """

    def __init__(self, master: wiring.Component, *, latency: int, depth: int):
        bus = axi4_master_members(DOWN_PREFIX)
        members = master.signature.members
        wrong = [name for name, member in bus.items() if name not in members or members[name] != member]
        if wrong:
            raise ValueError(f"the master's {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''} "
                             f"differ from axi4_master_members({DOWN_PREFIX!r}) or are missing")
        self._master = master
        self._latency = AxiLatency(latency=latency, depth=depth)
        self._others = [name for name in members if name not in bus]
        super().__init__({**{name: members[name] for name in self._others}, **bus})

    def elaborate(self, platform):
        m = Module()
        m.submodules.master = master = self._master
        m.submodules.latency = latency = self._latency
        for name, member in axi4_master_members(DOWN_PREFIX).items():
            up = getattr(latency, UP_PREFIX + name[len(DOWN_PREFIX):])
            if member.flow == wiring.Out:
                m.d.comb += [up.eq(getattr(master, name)), getattr(self, name).eq(getattr(latency, name))]
            else:
                m.d.comb += [getattr(master, name).eq(up), getattr(latency, name).eq(getattr(self, name))]
        for name in self._others:
            if self.signature.members[name].flow == wiring.Out:
                m.d.comb += getattr(self, name).eq(getattr(master, name))
            else:
                m.d.comb += getattr(master, name).eq(getattr(self, name))
        return m
