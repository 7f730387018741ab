"""Simulation of the Radix engine: cached Verilator builds and a cocotb testbench.

``build`` compiles the generated Verilog once per configuration, ``tb`` drives the engine over
AXI4-Lite and AXI4-Stream, ``test_engine_cocotb`` holds the cocotb tests that the pytest
wrappers in ``tests/test_sim_*.py`` run.
"""
