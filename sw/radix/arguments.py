"""Argument types shared by the command lines: every numeric option is checked where it is parsed,
so a value that makes no sense (0 or a negative count, NaN, infinity, a fraction outside its
range) is a usage error naming the option, never a silent nonsense result."""

from __future__ import annotations

import argparse
import math

from .datasets import DATASETS


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of images, layers, rounds, ...)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. fine-tuning epochs, where 0 means none)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a clock frequency, a learning rate)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a sparsity, a share of MACs to remove)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction strictly between 0 and 1")
    return value


def unit_fraction(text: str) -> float:
    """A number in (0, 1] (a share of energy to keep, a threshold relative to a maximum)."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1]")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


# The built-in models' names for the commands' help. They are defined with their weights in
# radix_models, which imports torch; the help must print on the board without it, so the names
# are repeated here and tests/test_cli.py keeps the two in step.
BUILT_IN_MODELS = ("lenet5", "digitsnet", "resnet8", "vggnet", "mobilenet_vww", "dscnn", "autoencoder")

# "--data" in every command's help: the named sets (radix.datasets) or a file
DATA_CHOICES = ", ".join(DATASETS) + " or a .npz"
