"""Engine backends: run a blocking host function (the driver's runner) on an engine by name.

``reference`` (the golden model executing the engine's command lists) and ``pynq`` (the board) are
transports of this package; ``sim`` and any other backend come from :mod:`radix.plugins`. Every
backend is called the same way, so the CLI and the benchmarks name a backend and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from .engine_spec import EngineConfig
from .errors import InputError
from .plugins import BACKENDS, load, names

BUILT_IN = ("reference", "pynq")


class BackendError(RuntimeError):
    """A backend could not produce a result (e.g. the simulation died); the message says why."""


class BackendUnavailable(InputError):
    """A backend that this machine cannot run (e.g. ``pynq`` off the board): the user's choice,
    not a bug, so it is an input error naming what is missing."""


def available() -> list[str]:
    """Backend names: the built-in ones and those registered by installed packages."""
    return list(BUILT_IN) + [name for name in names(BACKENDS) if name not in BUILT_IN]


def run(backend: str, function: str, kwargs: dict, config: EngineConfig, *,
        progress: Callable[[int], None] | None = None, options: dict | None = None) -> dict:
    """``function(transport, **kwargs)`` on ``backend``; ``function`` is ``"module:name"``.

    ``progress`` is called with the running count of units of work; ``options`` are the
    backend's own (``overlay`` for pynq; ``pause``/``seed`` for sim).
    """
    options = dict(options or {})
    if backend in BUILT_IN:
        transport = _open(backend, config, options)
        if "clock_mhz" in kwargs and kwargs["clock_mhz"] is None:
            kwargs = {**kwargs, "clock_mhz": getattr(transport, "clock_mhz", 100.0)}
        count = [0]

        def tick() -> None:
            count[0] += 1
            if progress:
                progress(count[0])

        try:
            return _resolve(function)(transport, **kwargs, tick=tick)
        finally:
            transport.close()
    return load(BACKENDS, backend)(function, kwargs, config, progress=progress, options=options)


def _open(backend: str, config: EngineConfig, options: dict):
    if backend == "reference":
        from .command_exec import ReferenceBusTransport

        return ReferenceBusTransport(config)
    try:
        from .pynq_transport import PynqBusTransport
    except ImportError as exc:
        if exc.name != "pynq":  # only a missing pynq is the machine's; anything else is a bug
            raise
        raise BackendUnavailable(f"--backend {backend}: {exc.msg}") from None

    return PynqBusTransport(options.get("overlay", "radix.bit"))


def _resolve(function: str):
    module, _, name = function.partition(":")
    return getattr(import_module(module), name)
