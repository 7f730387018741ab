"""The timing estimate's delay model on a hand-made netlist (the engine's own timing bounds are in
tests/test_synthesis.py, which synthesises once for both reports)."""

import math

import pytest

from radix_hw import timing


def _ff(d, q):
    return {"type": "FDRE", "port_directions": {"C": "input", "D": "input", "CE": "input", "R": "input", "Q": "output"},
            "connections": {"C": [1], "D": [d], "CE": ["1"], "R": ["0"], "Q": [q]}}


def _lut(inputs, out):
    pins = {f"I{k}": [bit] for k, bit in enumerate(inputs)}
    return {"type": f"LUT{len(inputs)}",
            "port_directions": {**{pin: "input" for pin in pins}, "O": "output"},
            "connections": {**pins, "O": [out]}}


def test_analyse_follows_the_delay_model():
    # ff_a -> lut1 -> lut2 -> ff_b, and ff_a also drives three more loads (fan-out 4 at its Q)
    cells = {"ff_a": _ff(20, 10), "lut1": _lut([10], 11), "lut2": _lut([11, 10], 12), "ff_b": _ff(12, 20),
             "ff_c": _ff(10, 30), "ff_d": _ff(10, 31)}
    netlist = {"modules": {"top": {"cells": cells, "netnames": {"a": {"bits": [10]}, "b": {"bits": [20]}}}}}
    result = timing.analyse(netlist, top="top")
    path = result["critical_path"]
    q_net = timing.NET_BASE_DELAY + timing.NET_FANOUT_DELAY * math.log2(4)
    expected = timing.FF_CLK_TO_Q + q_net + 2 * (timing.LUT_DELAY + timing.NET_BASE_DELAY) + timing.FF_SETUP
    assert path["delay_ns"] == pytest.approx(expected, abs=1e-3)
    assert path["lut_levels"] == 2 and path["carry4"] == 0 and path["max_fanout"] == 4
    assert path["start_net"] == "a" and path["end_net"] == "b"
    assert result["max_lut_levels"] == 2 and result["max_fanout"]["fanout"] == 4
    assert result["fmax_mhz_estimate"] == pytest.approx(1000 / expected, abs=0.1)


def test_analyse_rejects_a_missing_module():
    with pytest.raises(timing.SynthesisError):
        timing.analyse({"modules": {}}, top="top")
