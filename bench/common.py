"""Helpers shared by the benchmarks (run as scripts: ``python bench/NAME.py``)."""

from __future__ import annotations

import argparse
import random
from dataclasses import replace

import numpy as np
import torch

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
