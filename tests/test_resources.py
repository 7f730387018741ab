"""The resource report's cell counting (the synthesised engine's DSP48E1 mapping is checked in
tests/test_synthesis.py, which synthesises once for both reports)."""

from radix_hw.resources import count_cells


def test_count_cells_maps_cell_types():
    counts = count_cells({"LUT6": 3, "LUT2": 1, "FDRE": 5, "RAMB18E1": 3, "DSP48E1": 2, "SRL16E": 4})
    assert counts == {"lut": 4, "ff": 5, "bram36": 1.5, "dsp": 2, "lutram": 4}
