"""The resource report: a small packed build synthesised by Yosys maps every multiply to a DSP48E1."""

import pytest

from radix.engine_spec import EngineConfig
from radix_hw.resources import count_cells, format_report, synthesize

# 3 rows x 5 columns at W=8: two packed pairs and one half-used DSP per row; small buffers keep
# the synthesis to about a minute and a half.
PACKED = EngineConfig(rows=3, cols=5, width=8, in_depth=64, wt_depth=64, acc_depth=64)


@pytest.fixture(scope="module")
def packed_resources():
    return synthesize(PACKED)


def test_packed_build_maps_every_multiply_to_one_dsp48e1(packed_resources):
    r = packed_resources
    assert r["macs_per_cycle"] == 15 and r["macs_per_dsp"] == 2 and r["array_dsps"] == 9
    # one $mul per DSP pair in the RTL, each exactly one DSP48E1, none left to LUTs
    assert r["rtl_multipliers"] == 9
    assert r["dsp"] == 9 == r["cells"]["DSP48E1"]
    assert not [cell for cell in r["cells"] if "mul" in cell.lower()]


def test_report_says_how_dsps_are_used(packed_resources):
    text = format_report(packed_resources)
    assert "9 DSP48E1 in the array, packed: 2 8x8 MACs per DSP48E1; 15 MACs/cycle peak" in text
    assert "9 RTL multiplies ($mul) for 9 DSP48E1" in text


def test_count_cells_maps_cell_types():
    counts = count_cells({"LUT6": 3, "LUT2": 1, "FDRE": 5, "RAMB18E1": 3, "DSP48E1": 2, "SRL16E": 4})
    assert counts == {"lut": 4, "ff": 5, "bram36": 1.5, "dsp": 2, "lutram": 4}
