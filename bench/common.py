"""Helpers shared by the accuracy benchmarks (run as scripts: ``python bench/NAME.py``)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python, numpy and torch seeded alike, so a benchmark prints the same numbers twice."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def top1(predictions, labels) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(np.mean(np.asarray(predictions) == np.asarray(labels)))
