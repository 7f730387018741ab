"""The resource report: a small packed bus engine synthesised by Yosys maps every multiply of the
array to one DSP48E1, and the command unit's shared multiplier to DSP48E1 of its own."""

from radix.engine_spec import EngineConfig
from radix_hw.resources import count_cells, format_report, synthesize
from radix_hw.verilog import MODULE_NAME

# 3 rows x 5 columns at W=8: two packed pairs and one half-used DSP per row; small buffers keep
# the synthesis of the bus engine (core, command unit, read and write masters) to about a minute
# and a half.
PACKED = EngineConfig(rows=3, cols=5, width=8, in_depth=64, wt_depth=64, acc_depth=64)


def test_packed_bus_engine_maps_every_array_multiply_to_one_dsp48e1_and_says_so():
    # One test for one synthesis (about a minute and a half): separate tests would synthesise once
    # per pytest-xdist worker that runs one of them.
    r = synthesize(PACKED)
    assert r["top"] == MODULE_NAME
    assert r["macs_per_cycle"] == 15 and r["macs_per_dsp"] == 2 and r["array_dsps"] == 9
    # the command unit's multiplier is in DSP48E1 (counted by their names in the netlist), and
    # every other DSP48E1 is one of the array's: one per multiply pair, none left to LUTs
    assert r["command_dsps"] >= 1
    assert r["dsp"] == r["cells"]["DSP48E1"] == 9 + r["command_dsps"]
    assert r["rtl_multipliers"] >= 9 + 1  # the array's pairs and the command unit's multiplier
    assert not [cell for cell in r["cells"] if "mul" in cell.lower()]
    # the masters' FIFOs and the core's buffers: small, but the design is all there
    assert r["bram36"] > 0 and r["ff"] > 0 and r["lut"] > 0
    # the report says how the DSPs are used
    text = format_report(r)
    assert "9 DSP48E1 in the array, packed: 2 8x8 MACs per DSP48E1; 15 MACs/cycle peak" in text
    assert f"{r['command_dsps']} DSP48E1 in the command unit (its shared address multiplier)" in text
    assert f"{r['rtl_multipliers']} RTL multiplies ($mul) for {r['dsp']} DSP48E1" in text


def test_count_cells_maps_cell_types():
    counts = count_cells({"LUT6": 3, "LUT2": 1, "FDRE": 5, "RAMB18E1": 3, "DSP48E1": 2, "SRL16E": 4})
    assert counts == {"lut": 4, "ff": 5, "bram36": 1.5, "dsp": 2, "lutram": 4}
