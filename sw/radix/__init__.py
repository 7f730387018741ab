"""Radix: per-layer dynamic fixed point CNNs on a systolic FPGA engine.

The runtime part of this package (``golden``, ``program``, ``datasets``, the driver and the CLI)
needs numpy alone, so that it runs on a PYNQ-Z2 (Python 3.10, numpy 1.21, no torch). Host-only
modules (ingestion, calibration, gateware, simulation) import torch or amaranth lazily.
"""

__version__ = "0.1.0"
