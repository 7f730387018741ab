# amaranth: UnusedElaboratable=no
"""``radix_sim.axi_latency.AxiLatency`` on the Amaranth simulator.

Cycles are counted as in the other ``tests/test_hw_*.py``: inputs are set, the settled outputs
read, and a handshake happens in cycle ``t`` when ``valid`` and ``ready`` are both high after
the sets of cycle ``t``. A request accepted upstream in cycle ``t`` must not be offered
downstream before cycle ``t + latency``; requests keep their order and payload.
"""

from __future__ import annotations

import random

import pytest
from amaranth import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from radix_sim.axi_latency import DOWN_PREFIX, UP_PREFIX, AxiLatency, LatencyTop, address_payload


def _sig(dut, prefix: str, suffix: str):
    return getattr(dut, f"{prefix}_{suffix}")


def _clocked(dut) -> Module:
    """``dut`` with a ``sync`` domain even where it has no register (latency 0)."""
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut
    return m


def _random_request(rng: random.Random, channel: str) -> dict:
    return {suffix: rng.getrandbits(width) for suffix, width in address_payload(channel)}


def run_channel(dut: AxiLatency, channel: str, requests: list[dict], *, valid_p: float, ready_p: float,
                seed: int, max_cycles: int = 20_000, ready_pattern=None):
    """Offer ``requests`` upstream (VALID held until accepted) with probability ``valid_p`` per
    idle cycle, take them downstream with READY probability ``ready_p`` (or ``ready_pattern(cycle)``).

    Returns ``(accepted, delivered, up_ready)``: upstream handshake cycles, downstream
    ``(cycle, payload)`` in order, and ``up_ready`` of every cycle.
    """
    rng = random.Random(seed)
    accepted, delivered, up_ready_trace = [], [], []

    async def bench(ctx):
        index, offering = 0, False
        for cycle in range(max_cycles):
            if not offering and index < len(requests) and rng.random() < valid_p:
                offering = True
                for suffix, value in requests[index].items():
                    ctx.set(_sig(dut, UP_PREFIX, suffix), value)
            ctx.set(_sig(dut, UP_PREFIX, f"{channel}valid"), offering)
            ready = ready_pattern(cycle) if ready_pattern else rng.random() < ready_p
            ctx.set(_sig(dut, DOWN_PREFIX, f"{channel}ready"), ready)
            up_ready = ctx.get(_sig(dut, UP_PREFIX, f"{channel}ready"))
            up_ready_trace.append(up_ready)
            if offering and up_ready:
                accepted.append(cycle)
                index += 1
                offering = False
            if ctx.get(_sig(dut, DOWN_PREFIX, f"{channel}valid")) and ready:
                payload = {suffix: ctx.get(_sig(dut, DOWN_PREFIX, suffix)) for suffix in requests[0]}
                delivered.append((cycle, payload))
            if len(delivered) == len(requests):
                return
            await ctx.tick()
        raise AssertionError(f"{len(delivered)} of {len(requests)} requests delivered in {max_cycles} cycles")

    sim = Simulator(_clocked(dut))
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return accepted, delivered, up_ready_trace


def check_delivery(dut, requests, accepted, delivered):
    """In order, payload intact, never before ``latency`` cycles after acceptance."""
    assert [payload for _, payload in delivered] == requests
    early = [(n, a, d) for n, (a, (d, _)) in enumerate(zip(accepted, delivered)) if d < a + dut.latency]
    assert not early, f"requests delivered early (index, accepted, delivered): {early[:5]}"


@pytest.mark.parametrize("channel", ["ar", "aw"])
@pytest.mark.parametrize("latency,depth", [(1, 1), (2, 3), (5, 2), (30, 8), (30, 40)])
def test_order_payload_and_latency_under_backpressure(channel, latency, depth):
    rng = random.Random(latency * 100 + depth)
    requests = [_random_request(rng, channel) for _ in range(150)]
    dut = AxiLatency(latency=latency, depth=depth)
    accepted, delivered, _ = run_channel(dut, channel, requests, valid_p=0.7, ready_p=0.4, seed=depth)
    check_delivery(dut, requests, accepted, delivered)


@pytest.mark.parametrize("channel", ["ar", "aw"])
@pytest.mark.parametrize("latency", [1, 3, 32])
def test_back_to_back_one_per_cycle(channel, latency):
    """Upstream always valid, downstream always ready, depth = latency + 1: every request is
    accepted in consecutive cycles and delivered exactly ``latency`` cycles later."""
    rng = random.Random(latency)
    requests = [_random_request(rng, channel) for _ in range(3 * latency + 20)]
    dut = AxiLatency(latency=latency, depth=latency + 1)
    accepted, delivered, _ = run_channel(dut, channel, requests, valid_p=1.0, ready_p=1.0, seed=0)
    check_delivery(dut, requests, accepted, delivered)
    assert accepted == list(range(len(requests)))
    assert [cycle for cycle, _ in delivered] == [a + latency for a in accepted]


@pytest.mark.parametrize("latency,depth", [(1, 1), (4, 3), (6, 10)])
def test_full_holds_depth_requests(latency, depth):
    """With the memory stalled, exactly ``depth`` requests are accepted, then READY stays low
    until the memory takes one; after the stall everything drains in order."""
    stall = 3 * (latency + depth) + 10
    rng = random.Random(depth)
    requests = [_random_request(rng, "ar") for _ in range(depth + 5)]
    dut = AxiLatency(latency=latency, depth=depth)
    accepted, delivered, up_ready = run_channel(dut, "ar", requests, valid_p=1.0, ready_p=1.0, seed=0,
                                                ready_pattern=lambda cycle: cycle >= stall)
    check_delivery(dut, requests, accepted, delivered)
    assert accepted[:depth] == list(range(depth))
    assert len([a for a in accepted if a <= stall]) == depth
    assert not any(up_ready[depth:stall + 1])
    assert delivered[0][0] == stall  # ripe long ago: offered as soon as the memory is ready


def test_latency_zero_passes_straight_through():
    rng = random.Random(5)
    requests = [_random_request(rng, "aw") for _ in range(60)]
    dut = AxiLatency(latency=0, depth=1)
    accepted, delivered, _ = run_channel(dut, "aw", requests, valid_p=0.8, ready_p=0.5, seed=3)
    check_delivery(dut, requests, accepted, delivered)
    assert [cycle for cycle, _ in delivered] == accepted


@pytest.mark.parametrize("latency", [0, 7])
def test_r_w_b_pass_combinationally(latency):
    """R, W and B in the same cycle, in their own direction, with the address channels stalled."""
    dut = AxiLatency(latency=latency, depth=2)
    toward_memory = {"wdata": 0x0123456789ABCDEF, "wstrb": 0xA5, "wlast": 1, "wvalid": 1, "rready": 1,
                     "bready": 1}
    toward_master = {"rid": 1, "rdata": 0xFEDCBA9876543210, "rresp": 2, "rlast": 1, "rvalid": 1, "wready": 1,
                     "bid": 1, "bresp": 3, "bvalid": 1}

    async def bench(ctx):
        for step in range(3):
            for suffix, value in toward_memory.items():
                ctx.set(_sig(dut, UP_PREFIX, suffix), value if step != 1 else 0)
            for suffix, value in toward_master.items():
                ctx.set(_sig(dut, DOWN_PREFIX, suffix), value if step != 1 else 0)
            for suffix, value in toward_memory.items():
                assert ctx.get(_sig(dut, DOWN_PREFIX, suffix)) == (value if step != 1 else 0), suffix
            for suffix, value in toward_master.items():
                assert ctx.get(_sig(dut, UP_PREFIX, suffix)) == (value if step != 1 else 0), suffix
            await ctx.tick()

    sim = Simulator(_clocked(dut))
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kwargs,error", [
    ({"latency": -1, "depth": 4}, ValueError),
    ({"latency": 4, "depth": 0}, ValueError),
    ({"latency": 2.0, "depth": 4}, TypeError),
    ({"latency": 2, "depth": True}, TypeError),
])
def test_parameters_are_checked(kwargs, error):
    with pytest.raises(error):
        AxiLatency(**kwargs)


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        AxiLatency(30, 8)


def test_latency_top_needs_a_master_port():
    with pytest.raises(ValueError, match="m_axi_arid"):
        LatencyTop(wiring.Component({"x": Out(1)}), latency=1, depth=1)
