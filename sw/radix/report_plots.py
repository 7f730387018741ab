"""Calibration plots (host only): where each layer's values lie against the fl calibration chose.

:func:`write_plots` writes one PNG per engine layer and one summary:

- per layer, two histograms of ``log2 |v|``: the float weights (BN folded, as the engine's
  weights are made) and the layer's float output activations on the calibration images. Each
  marks the chosen fl's representable range (docs/arithmetic.md §1): the step ``2^-fl`` (values
  below half of it become 0) and the saturation level ``(2^(bits-1) - 1) 2^-fl``, and states the
  share of values that saturate, that become 0, that are exactly 0 (not drawn: log2 0 is -inf)
  and the SQNR;
- ``sqnr.png``: the SQNR per layer of the weights and of the activations on the calibration
  images and, when given, on test images.

Activation SQNR compares the program's integer outputs (``radix.network.run``, the engine's
exact arithmetic, every earlier layer quantized too) with the float graph's, so on the
calibration images it is the ``act_sqnr_db`` that calibration reports. Images are processed in
chunks, so memory does not grow with their number. matplotlib draws through its Agg canvas
(``Figure.savefig``), never through pyplot, so no global backend is set.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import golden, network
from .errors import InputError
from .ingest import FloatGraph
from .program import Layer, Program

LOG2_EDGES = np.arange(-48.0, 48.0 + 0.125, 0.25)  # histogram bins of log2|v|: quarter octaves
CHUNK = 256  # images per pass of the float graph and the program
SUMMARY = "sqnr.png"


class PlotError(InputError):
    """The plots cannot be made from what was given; the message names it."""


@dataclass
class TensorStats:
    """One tensor's float values against their quantization with ``fl`` in ``bits`` bits,
    accumulated over batches: the histogram of ``log2 |v|`` over ``LOG2_EDGES`` (nonzero values),
    counts of zeros, of values that saturate and of nonzero values that quantize to 0, and the
    signal and noise energies of the SQNR."""

    fl: list[int]
    bits: int
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(LOG2_EDGES) - 1, dtype=np.int64))
    total: int = 0
    zeros: int = 0
    saturated: int = 0
    flushed: int = 0
    signal: float = 0.0
    noise: float = 0.0

    def add(self, values, approx, fl) -> None:
        """Accumulate float ``values``, their quantized approximation ``approx`` (floats) and the
        fl they were quantized with (a scalar, or per-channel column broadcasting to ``values``)."""
        values = np.asarray(values, dtype=np.float64)
        magnitude = np.abs(values)
        nonzero = magnitude[magnitude > 0]
        log2 = np.clip(np.log2(nonzero), LOG2_EDGES[0], LOG2_EDGES[-1])
        self.counts += np.histogram(log2, bins=LOG2_EDGES)[0]
        self.total += values.size
        self.zeros += values.size - nonzero.size
        rounded = _rounded(values, fl)
        self.saturated += int(np.count_nonzero(_saturates(rounded, self.bits)))
        self.flushed += int(np.count_nonzero((rounded == 0) & (magnitude > 0)))
        self.signal += float(np.sum(values**2))
        self.noise += float(np.sum((values - approx) ** 2))

    def share(self, count: int) -> float:
        return count / self.total if self.total else 0.0

    @property
    def sqnr_db(self) -> float:
        """``10 log10(signal / noise)``; inf when the quantization is exact."""
        if self.noise == 0.0:
            return math.inf
        return 10.0 * math.log10(self.signal / self.noise) if self.signal > 0 else -math.inf

    @property
    def step_log2(self) -> float:
        """log2 of the finest step, ``2^-fl`` (the largest fl with per-channel fls)."""
        return -float(max(self.fl))

    @property
    def saturation_log2(self) -> float:
        """log2 of the largest representable magnitude, ``(2^(bits-1) - 1) 2^-fl`` (the smallest
        fl with per-channel fls)."""
        return math.log2(golden.int_range(self.bits)[1]) - float(min(self.fl))


def _rounded(values, fl) -> np.ndarray:
    """``floor(v 2^fl + 1/2)`` before saturation (docs/arithmetic.md §2)."""
    return np.floor(np.asarray(values, dtype=np.float64) * np.ldexp(1.0, np.asarray(fl)) + 0.5)


def _saturates(rounded, bits: int) -> np.ndarray:
    lo, hi = golden.int_range(bits)
    return (rounded < lo) | (rounded > hi)


def saturated_share(values, fl, bits: int) -> float:
    """The share of ``values`` that quantizing with ``fl`` in ``bits`` bits saturates (§2).
    ``fl`` is a scalar or broadcasts to ``values`` (per-channel weights)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.count_nonzero(_saturates(_rounded(values, fl), bits)) / values.size) if values.size else 0.0


def weight_stats(layer: Layer, weight: np.ndarray) -> TensorStats:
    """The float weights ``weight`` of ``layer`` against the program's integer weights."""
    fl = np.asarray(layer.fl_w).reshape((-1,) + (1,) * (weight.ndim - 1))
    stats = TensorStats([int(f) for f in layer.fl_w], layer.weight_bits)
    stats.add(weight, np.ldexp(layer.weights.astype(np.float64), -fl), fl)
    return stats


def activation_stats(graph: FloatGraph, program: Program, x) -> dict[str, TensorStats]:
    """Per engine layer, its float outputs on images ``x`` (N, C, H, W) against the program's
    integer outputs on the same images, ``q 2^-fl_out``."""
    x = np.asarray(x)
    _check(graph, program, x)
    layers = [layer for layer in program.layers if layer.operation.has_weights]
    stats = {layer.name: TensorStats([layer.fl_out], program.width) for layer in layers}
    for start in range(0, len(x), CHUNK):
        chunk = x[start:start + CHUNK]
        floats = graph.forward(chunk)
        results = {r.name: r.values for r in network.run(program, network.quantize_input(program, chunk))}
        for layer in layers:
            reference = floats[layer.name]
            approx = np.ldexp(results[layer.name].astype(np.float64).reshape(reference.shape), -layer.fl_out)
            stats[layer.name].add(reference, approx, layer.fl_out)
    return stats


def layer_sqnr(graph: FloatGraph, program: Program, x) -> dict[str, float]:
    """Per engine layer, the SQNR in dB of its outputs on images ``x`` (inf when exact)."""
    return {name: s.sqnr_db for name, s in activation_stats(graph, program, x).items()}


def check_plot_dir(out_dir) -> None:
    """Refuse, before any long work, a plot directory that cannot be used: its parent must exist
    (as for ``-o``: a typo in a path is not silently turned into new directories) and it must be a
    writable directory if it exists."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PlotError(f"{out_dir}: exists and is not a directory")
        if not os.access(out_dir, os.W_OK):
            raise PlotError(f"{out_dir}: the plot directory is not writable")
        return
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise PlotError(f"{out_dir}: cannot create the plot directory, {parent} is not a directory")
    if not parent.is_dir():
        raise PlotError(f"{out_dir}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PlotError(f"{out_dir}: cannot create it, {parent} is not writable")


def write_plots(graph: FloatGraph, program: Program, x_calib, out_dir, *, x_test=None) -> list[Path]:
    """Write the calibration plots of ``program`` into ``out_dir`` (created if missing; its parent
    must exist, as a program's directory must).

    ``graph`` is the float graph the program was calibrated from (:func:`radix.ingest.ingest`),
    ``x_calib`` the calibration images and ``x_test``, optional, test images, both float
    ``(N, C, H, W)`` as the model expects them. Returns the files written: one
    ``NN-<layer>.png`` per engine layer in program order, then ``sqnr.png``.
    """
    out_dir = Path(out_dir)
    check_plot_dir(out_dir)
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise PlotError(f"{out_dir}: cannot create the plot directory: {exc.strerror or exc}") from None
    floats = {layer.name: layer for layer in graph.layers}
    calib = activation_stats(graph, program, x_calib)
    test = activation_stats(graph, program, x_test) if x_test is not None else None
    weights = {}
    paths = []
    for index, layer in enumerate(layer for layer in program.layers if layer.operation.has_weights):
        weights[layer.name] = weight_stats(layer, floats[layer.name].weight)
        figure = _layer_figure(program, layer, weights[layer.name], calib[layer.name], len(x_calib))
        paths.append(_save(figure, out_dir / f"{index:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', layer.name)}.png"))
    counts = (len(x_calib), None if x_test is None else len(x_test))
    paths.append(_save(_summary_figure(program, weights, calib, test, counts), out_dir / SUMMARY))
    return paths


def _check(graph: FloatGraph, program: Program, x) -> None:
    if tuple(x.shape[1:]) != tuple(program.input_shape) or not len(x):
        shape = ", ".join(map(str, program.input_shape))
        raise PlotError(f"images of shape {x.shape}: the program's input is (N, {shape}), N > 0")
    names = {layer.name for layer in graph.layers}
    missing = [layer.name for layer in program.layers if layer.name not in names]
    if missing:
        raise PlotError(f"program layer(s) {', '.join(missing)} are not in the float graph: pass the graph the "
                        "program was calibrated from")


def _save(figure: Figure, path: Path) -> Path:
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise PlotError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    return path


def _layer_figure(program: Program, layer: Layer, weights: TensorStats, acts: TensorStats, images: int) -> Figure:
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    fl_w = str(layer.fl_w[0]) if len(set(layer.fl_w)) == 1 else f"{min(layer.fl_w)}..{max(layer.fl_w)} per channel"
    _histogram(left, weights, f"weights: {layer.weight_bits} bits, fl_w = {fl_w}", "w")
    _histogram(right, acts, f"output activations ({images} images): {program.width} bits, fl_out = {layer.fl_out}",
               "a")
    what = layer.kind + (f" {layer.role}" if layer.role else "")
    figure.suptitle(f"{layer.name} ({what}: {' + '.join(layer.modules)})", fontweight="bold")
    return figure


def _histogram(axes, stats: TensorStats, title: str, symbol: str) -> None:
    centres = (LOG2_EDGES[:-1] + LOG2_EDGES[1:]) / 2
    percent = 100.0 * stats.counts / max(stats.total, 1)
    step, saturation = stats.step_log2, stats.saturation_log2
    filled = np.nonzero(stats.counts)[0]
    low = min(centres[filled[0]] if filled.size else step, step) - 1.5
    high = max(centres[filled[-1]] if filled.size else saturation, saturation) + 1.5
    # from half a step up a value rounds to a nonzero integer; above the level it saturates
    axes.axvspan(step - 1, saturation, color="tab:green", alpha=0.08, label="representable")
    axes.bar(centres, percent, width=LOG2_EDGES[1] - LOG2_EDGES[0], color="tab:blue", alpha=0.85)
    axes.axvline(step, color="tab:green", linestyle="--", label=f"step $2^{{{int(step)}}}$")
    level = golden.int_range(stats.bits)[1]
    axes.axvline(saturation, color="tab:red",
                 label=f"saturation ${level} \\cdot 2^{{{-min(stats.fl)}}}$ = {2.0 ** saturation:.4g}")
    axes.set_xlim(low, high)
    axes.set_ylim(0, 1.45 * max(float(percent.max()), 1e-9))  # headroom for the legend and the numbers
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(f"log2 |{symbol}|")
    axes.set_ylabel(f"% of {symbol}")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper right", fontsize=8)
    sqnr = "exact" if math.isinf(stats.sqnr_db) else f"{stats.sqnr_db:.1f} dB"
    axes.text(0.02, 0.97, f"above saturation {100 * stats.share(stats.saturated):.2f}%\n"
                          f"rounded to 0 {100 * stats.share(stats.flushed):.2f}%\n"
                          f"exactly 0 (not drawn) {100 * stats.share(stats.zeros):.1f}%\n"
                          f"SQNR {sqnr}", transform=axes.transAxes, va="top", fontsize=8,
              bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})


def _summary_figure(program: Program, weights: dict, calib: dict, test: dict | None, counts) -> Figure:
    names = list(weights)
    series = [("weights", "s", [weights[n].sqnr_db for n in names]),
              (f"activations, calibration ({counts[0]} images)", "o", [calib[n].sqnr_db for n in names])]
    if test is not None:
        series.append((f"activations, test ({counts[1]} images)", "^", [test[n].sqnr_db for n in names]))
    finite = [v for _, _, values in series for v in values if math.isfinite(v)]
    ceiling = (max(finite) if finite else 0.0) + 6  # where an exact (infinite SQNR) point is drawn
    figure = Figure(figsize=(max(6.0, 1.1 * len(names) + 2.5), 4.2), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(names))
    for label, marker, values in series:
        shown = [ceiling if v == math.inf else v for v in values]
        axes.plot(positions, shown, marker=marker, label=label)
        for x, v in zip(positions, values):
            if v == math.inf:
                axes.annotate("exact", (x, ceiling), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axes.set_xticks(positions, names, rotation=30, ha="right")
    axes.set_ylabel("SQNR (dB)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(f"SQNR per layer, {program.width}-bit program", fontweight="bold")
    return figure
