"""The ``sim`` backend of :mod:`radix.backends`: host functions run inside the RTL simulation."""

from __future__ import annotations

import sys
from collections.abc import Callable

from radix.engine_spec import EngineConfig

from .hostrun import run_host


def run(function: str, kwargs: dict, config: EngineConfig, *, progress: Callable[[int], None] | None = None,
        options: dict | None = None) -> dict:
    """Build (or reuse) the Verilated engine of ``config`` and run ``function`` in it.

    When the model has to be compiled, which takes minutes, a line on stderr says so.
    """
    options = options or {}
    return run_host(function, kwargs, config, pause=options.get("pause", 0.0), seed=options.get("seed", 1),
                    progress=progress,
                    on_build=lambda: announce_build(config))


def announce_build(config: EngineConfig) -> None:
    """Say on stderr (stdout may be JSON) that the simulation of ``config`` is being built."""
    from tqdm import tqdm

    # tqdm.write keeps a progress bar the caller has open on stderr intact
    tqdm.write(f"radix: building the RTL simulation for {config.rows}x{config.cols} W={config.width} "
               "(2-3 minutes, once per configuration)...", file=sys.stderr)
