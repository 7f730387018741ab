"""The four MLPerf Tiny topologies on the engine: measured RTL cycles per image, beside published FPGA results.

Each topology is the project's trained built-in on its offline data set (``resnet8`` on
``mnist32rgb``, ``mobilenet_vww`` on ``digitwake96``, ``dscnn`` on ``mnist49x10``, ``autoencoder``
on ``machine640``: stand-ins for CIFAR-10, Visual Wake Words, Speech Commands and ToyADMOS, which
do not ship offline; ``radix.tiny_datasets``). The bench calibrates an 8-bit program on
``--calibration-images`` of the training split, runs ``--images`` test inputs through the host
driver on the Verilated RTL of the default engine (bit for bit against the reference), and
prints: MACs, measured cycles per image (START to DONE), the share of the packed array's peak,
latency at 100 and 142.86 MHz (ESTIMATES: no timing closure was run), the 8-bit program's score
against the float model's on ``--check-images`` test inputs (top-1, or the anomaly AUC of the
reconstruction error with the output's SQNR against float), and the published FPGA result on an
XC7Z020 for the same benchmark (measured on boards by their authors, on the real data sets: the
scores are not comparable, the cycles are).

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
from radix.datasets import load_split, subset
from radix.engine_spec import DEFAULT_CONFIG
from radix.ingest import ingest
from radix.network import quantize_input, run as run_program
from radix.evaluate import infer_task, program_outputs, reconstruction_report
from radix_models import get_spec, load_builtin

CLOCKS_MHZ = (100.0, 1000.0 / 7)
# (benchmark, published result on an XC7Z020 board, ms per inference)
PUBLISHED = {
    "resnet8": ("fpgaConvNet, ZedBoard, v1.1 closed", 0.411),
    "mobilenet_vww": ("fpgaConvNet, ZedBoard, v1.1 closed", 9.49),
    "dscnn": ("fpgaConvNet, ZedBoard, v1.1 closed", 0.324),
    "autoencoder": (None, None),
}


BENCHMARKS = {"resnet8": "image classification", "mobilenet_vww": "visual wake words",
              "dscnn": "keyword spotting", "autoencoder": "anomaly detection"}


def score(program, graph, x, y, task) -> str:
    """The 8-bit program's test score beside the float model's, on ``x`` with labels ``y``."""
    with torch.no_grad():
        reference = graph.forward(x)[graph.output].reshape(len(x), -1)
    last = program.layers[-1]
    got = run_program(program, quantize_input(program, x))[-1].values.reshape(len(x), -1) * 2.0 ** -last.fl_out
    if task == "classify":
        return (f"top-1 {100 * np.mean(got.argmax(1) == y):.1f}% (float {100 * np.mean(reference.argmax(1) == y):.1f}%)")
    report = reconstruction_report(program, x, y, program_outputs(program, x)[0], reference)
    return f"AUC {report['auc']:.3f} (float {report['float_auc']:.3f}), output SQNR {report['output_sqnr_db']:.1f} dB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1, help="inputs run on the RTL per topology (default 1)")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--check-images", type=int, default=1000, help="test inputs scored (default: the whole split)")
    parser.add_argument("--only", choices=list(BENCHMARKS), action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from radix_sim.hostrun import run_host

    config = DEFAULT_CONFIG
    peak = config.rows * config.cols
    results = []
    for name, benchmark in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        spec = get_spec(name)
        graph, _ = ingest(load_builtin(name), spec.input_shape)
        calibration, _ = subset(*load_split(spec.dataset, "train"), args.calibration_images)  # as --images N
        program = calibrate(graph, calibration, CalibrationSettings(bits=config.width))
        test_x, test_y = load_split(spec.dataset, "test")
        checked_x, checked_y = subset(test_x, test_y, args.check_images)
        with tempfile.TemporaryDirectory() as tmp:
            path, data = Path(tmp) / f"{name}.radix", Path(tmp) / f"{name}.npz"
            program.save(path)
            np.savez(data, x=test_x[: args.images], y=test_y[: args.images])
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
            "dataset": spec.dataset,
            "score": score(program, graph, checked_x, checked_y, infer_task(program)[0]),
            "published": PUBLISHED[name], "simulation_seconds": round(seconds, 1)})
    if args.json:
        print(json.dumps({"config": config.as_dict(), "topologies": results}, indent=2))
        return 0 if all(r["bit_exact"] for r in results) else 1
    rows = [[r["name"], r["benchmark"], f"{r['macs']:,}", f"{r['cycles']:,.0f}",
             f"{100 * r['depthwise_cycles'] / r['cycles']:.0f}%" if r["depthwise_cycles"] else "-",
             f"{100 * r['peak_share']:.1f}%", *(f"{ms:.3f}" for ms in r["latency_ms"].values()),
             "yes" if r["bit_exact"] else "NO", f"{r['score']} on {r['dataset']}",
             f"{r['published'][1]} ms ({r['published'][0]})" if r["published"][0] else "-"] for r in results]
    print(f"MLPerf Tiny topologies on the engine {config.rows}x{config.cols} W={config.width} ({peak} MACs per "
          f"cycle), Verilated RTL through the host driver, {args.images} input(s) each")
    print(table(["topology", "benchmark", "MACs", "RTL cycles/image (measured)", "depthwise share", "of peak",
                 "ms @100 MHz (est.)", "ms @142.86 MHz (est.)", "bit-exact", "8-bit score (float) on the test split",
                 "published on an XC7Z020 (measured)"], rows))
    return 0 if all(r["bit_exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
