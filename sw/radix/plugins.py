"""What other packages add to radix: engine backends and gateware tools, found by entry point.

``radix`` is the base package: it never imports the simulation (``radix_sim``) or the gateware
(``radix_hw``). Those packages declare entry points (pyproject.toml) in two groups:

``radix.backends``
    ``name = "module:function"``: ``function(function_path, kwargs, config, *, progress, options)``
    runs the blocking host function ``function_path`` (``"radix.runner:selftest"``) against that
    backend and returns its JSON result (the ``sim`` backend runs it inside the RTL simulation).
``radix.gateware``
    ``verilog`` (``generate(config) -> str``) and ``resources`` (``synthesize(config) -> dict``,
    ``format_report(report) -> str``) as ``"module"``.

On the board only ``radix`` is installed, so these are missing there: :class:`PluginError` says
which package provides them.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from .errors import InputError

BACKENDS = "radix.backends"
GATEWARE = "radix.gateware"
PROVIDERS = {BACKENDS: "radix_sim (the host tools: pip install radix[host])",
             GATEWARE: "radix_hw (the host tools: pip install radix[host])"}


class PluginError(InputError):
    """A backend or gateware tool that is not installed here."""


def names(group: str) -> list[str]:
    """The registered names of ``group``."""
    return sorted(ep.name for ep in entry_points(group=group))


def load(group: str, name: str):
    """The object registered as ``name`` in ``group``, imported only now."""
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if not matches:
        raise PluginError(f"no {group} entry {name!r} is installed (known: {', '.join(names(group)) or 'none'}); "
                          f"it comes with {PROVIDERS[group]}")
    try:
        return matches[0].load()
    except ImportError as exc:
        raise PluginError(f"{group} entry {name!r} cannot be imported ({exc}); it needs {PROVIDERS[group]}") from None


def gateware(name: str):
    """The gateware module registered as ``name`` (``verilog`` or ``resources``)."""
    target = load(GATEWARE, name)
    return import_module(target) if isinstance(target, str) else target
