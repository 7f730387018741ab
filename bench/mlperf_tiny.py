"""The four MLPerf Tiny topologies on the engine: measured RTL cycles per image, beside published FPGA results.

For each topology (ResNet-8 with the project's trained weights on ``mnist32rgb``; the Visual Wake
Words, Keyword Spotting and Anomaly Detection topologies of ``radix_models.mlperf_tiny`` with
seeded random weights, since their data sets do not ship offline) the bench calibrates an 8-bit
program on ``--calibration-images`` inputs, runs ``--images`` of them through the host driver on
the Verilated RTL of the default engine (bit for bit against the reference), and prints: MACs,
measured cycles per image (START to DONE), the share of the packed array's peak, latency at 100
and 142.86 MHz (ESTIMATES: no timing closure was run), the 8-bit program's agreement with the
float model of the same weights (top-1 agreement, or the reconstruction's SQNR), and the
published FPGA result on an XC7Z020 for the same benchmark (measured on boards by their authors).

Random inputs stand in for the untrained topologies' data (uniform images in [0, 1), normal MFCC
maps and feature vectors): cycles do not depend on the values, and the agreement with float is
the quantization's own fidelity on those weights, not an accuracy.

Usage: ``python bench/mlperf_tiny.py [--images N] [--calibration-images N] [--only NAME] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from radix.calibrate import CalibrationSettings, calibrate
from radix.console import table
from radix.datasets import load_split
from radix.engine_spec import DEFAULT_CONFIG
from radix.ingest import ingest
from radix.network import quantize_input, run as run_program
from radix_models import get_spec, load_builtin
from radix_models.mlperf_tiny import autoencoder, dscnn, mobilenet_vww

CLOCKS_MHZ = (100.0, 1000.0 / 7)
# (benchmark, published result on an XC7Z020 board, ms per inference)
PUBLISHED = {
    "resnet8": ("fpgaConvNet, ZedBoard, v1.1 closed", 0.411),
    "mobilenet_vww": ("fpgaConvNet, ZedBoard, v1.1 closed", 9.49),
    "dscnn": ("fpgaConvNet, ZedBoard, v1.1 closed", 0.324),
    "autoencoder": (None, None),
}


def topologies():
    """(name, benchmark, model, input shape, calibration inputs, task) per topology."""
    rng = np.random.default_rng(0)
    spec = get_spec("resnet8")
    images, _ = load_split(spec.dataset, "train")
    return [
        ("resnet8", "image classification", load_builtin("resnet8"), spec.input_shape, images, "classify"),
        ("mobilenet_vww", "visual wake words", mobilenet_vww(), (3, 96, 96),
         rng.uniform(0, 1, (600, 3, 96, 96)).astype(np.float32), "classify"),
        ("dscnn", "keyword spotting", dscnn(), (1, 49, 10), rng.normal(size=(600, 1, 49, 10)).astype(np.float32),
         "classify"),
        ("autoencoder", "anomaly detection", autoencoder(), (640,), rng.normal(size=(600, 640)).astype(np.float32),
         "reconstruct"),
    ]


def fidelity(program, graph, x, task) -> str:
    """The 8-bit program against the float model of the same weights on ``x``."""
    with torch.no_grad():
        reference = graph.forward(x)[graph.output].reshape(len(x), -1)
    last = program.layers[-1]
    got = run_program(program, quantize_input(program, x))[-1].values.reshape(len(x), -1) * 2.0 ** -last.fl_out
    if task == "classify":
        return f"top-1 agreement {100 * np.mean(got.argmax(1) == reference.argmax(1)):.1f}%"
    noise = np.sum((got - reference) ** 2)
    return f"output SQNR {10 * np.log10(np.sum(reference ** 2) / noise):.1f} dB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1, help="inputs run on the RTL per topology (default 1)")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--check-images", type=int, default=100, help="inputs for the agreement with float")
    parser.add_argument("--only", choices=[t[0] for t in topologies()], action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from radix_sim.hostrun import run_host

    config = DEFAULT_CONFIG
    peak = config.rows * config.cols
    results = []
    for name, benchmark, model, shape, x, task in topologies():
        if args.only and name not in args.only:
            continue
        graph, _ = ingest(model, shape)
        program = calibrate(graph, x[: args.calibration_images], CalibrationSettings(bits=config.width))
        held_out = x[len(x) - args.check_images:]
        with tempfile.TemporaryDirectory() as tmp:
            path, data = Path(tmp) / f"{name}.radix", Path(tmp) / f"{name}.npz"
            program.save(path)
            np.savez(data, x=held_out[: args.images], y=np.zeros(args.images, dtype=np.int64))
            start = time.perf_counter()
            run = run_host("radix.runner:run_files", {"program": str(path), "data": str(data),
                                                      "images": args.images}, config)
            seconds = time.perf_counter() - start
        cycles = run["cycles"]["per_image_mean"]
        macs = sum(layer.macs for layer in program.layers)
        grouped = [layer.name for layer in program.layers if layer.groups > 1]
        results.append({
            "name": name, "benchmark": benchmark, "macs": macs, "cycles": cycles, "bit_exact": run["bit_exact"],
            "peak_share": macs / peak / cycles,
            "depthwise_cycles": sum(run["cycles"]["per_layer_mean"][n] for n in grouped),
            "latency_ms": {f"{mhz:.2f}MHz": 1e3 * cycles / (mhz * 1e6) for mhz in CLOCKS_MHZ},
            "fidelity": fidelity(program, graph, held_out, task), "weights": "trained" if name == "resnet8" else
            "random (topology only)", "published": PUBLISHED[name], "simulation_seconds": round(seconds, 1)})
    if args.json:
        print(json.dumps({"config": config.as_dict(), "topologies": results}, indent=2))
        return 0 if all(r["bit_exact"] for r in results) else 1
    rows = [[r["name"], r["benchmark"], f"{r['macs']:,}", f"{r['cycles']:,.0f}",
             f"{100 * r['depthwise_cycles'] / r['cycles']:.0f}%" if r["depthwise_cycles"] else "-",
             f"{100 * r['peak_share']:.1f}%", *(f"{ms:.3f}" for ms in r["latency_ms"].values()),
             "yes" if r["bit_exact"] else "NO", f"{r['fidelity']} ({r['weights']})",
             f"{r['published'][1]} ms ({r['published'][0]})" if r["published"][0] else "-"] for r in results]
    print(f"MLPerf Tiny topologies on the engine {config.rows}x{config.cols} W={config.width} ({peak} MACs per "
          f"cycle), Verilated RTL through the host driver, {args.images} input(s) each")
    print(table(["topology", "benchmark", "MACs", "RTL cycles/image (measured)", "depthwise share", "of peak",
                 "ms @100 MHz (est.)", "ms @142.86 MHz (est.)", "bit-exact", "8-bit vs float",
                 "published on an XC7Z020 (measured)"], rows))
    return 0 if all(r["bit_exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
