"""Helpers shared by the benchmarks (run as scripts: ``python bench/NAME.py``)."""

from __future__ import annotations

import argparse
import random
from dataclasses import replace

import numpy as np
import torch

from radix.calibrate import CalibrationSettings
from radix.engine_spec import DEFAULT_CONFIG, EngineConfig


def engine_shape(text: str) -> EngineConfig:
    """``ROWSxCOLS`` (an argparse type): the default W=8 engine with that array shape."""
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
        return replace(DEFAULT_CONFIG, rows=rows, cols=cols)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROWSxCOLS, e.g. 16x22 ({error})") from None


def seed_everything(seed: int) -> None:
    """Python, numpy and torch seeded alike, so a benchmark prints the same numbers twice."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def top1(predictions, labels) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def scheme_rows() -> list[tuple[str, str, str, CalibrationSettings]]:
    """The accuracy benches' common Radix rows, ``(scheme, weight bits, activation bits,
    settings)``: the default (scheme chosen, unsigned tensors) at 16 and 8 bits, then the paper's
    scheme and its single-option variants, signed as they were before either existed."""
    def paper(**options):
        return CalibrationSettings.paper(unsigned=False, **options)

    return [
        ("Radix 16-bit default (scheme chosen, unsigned where non-negative)", "16", "16", CalibrationSettings(bits=16)),
        ("Radix 8-bit default (scheme chosen, unsigned where non-negative)", "8", "8", CalibrationSettings(bits=8)),
        ("Radix 16-bit dynamic, the paper's scheme (greedy)", "16", "16", paper(bits=16)),
        ("Radix 8-bit dynamic, the paper's scheme (greedy)", "8", "8", paper(bits=8)),
        ("Radix 8-bit dynamic, max-abs rule", "8", "8", paper(bits=8, activation_rule="maxabs")),
        ("Radix 8-bit dynamic, per-channel weights", "8", "8", paper(bits=8, per_channel=True)),
    ]
