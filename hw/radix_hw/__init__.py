"""Radix gateware: the Amaranth systolic convolution engine (docs/engine.md)."""
