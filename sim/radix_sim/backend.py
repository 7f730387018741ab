"""The ``sim`` backend of :mod:`radix.backends`: host functions run inside the RTL simulation."""

from __future__ import annotations

from collections.abc import Callable

from radix.engine_spec import EngineConfig

from .hostrun import run_host


def run(function: str, kwargs: dict, config: EngineConfig, *, progress: Callable[[int], None] | None = None,
        options: dict | None = None) -> dict:
    """Build (or reuse) the Verilated engine of ``config`` and run ``function`` in it."""
    options = options or {}
    return run_host(function, kwargs, config, idle=options.get("idle", 0.0),
                    backpressure=options.get("backpressure", 0.0), seed=options.get("seed", 1), progress=progress)
