"""ResNet-8 (MLPerf Tiny) on the engine: measured RTL cycles per layer and per image.

The built-in ``resnet8`` is calibrated at 8 bits on ``mnist32rgb`` (``--calibration-images``
from the training split), then ``--images`` test images run through the host driver on the
Verilated RTL of the default engine (or ``--config ROWSxCOLS``, e.g. ``16x11``: the shape of the
one-MAC-per-DSP engine on the same 176 DSP48E1s), every layer checked bit for bit against the reference. It
prints per layer: MACs, measured cycles (the CYCLES register, input/bias/skip/weight streaming
included), the ideal (MACs / PEs), PE utilisation, the analytic model's cycles; then per image
the measured total, latency at 100 and 142.86 MHz and images/s — ESTIMATES at an assumed clock
(no timing closure was run) — beside the published PYNQ-Z2 figures for this benchmark.

The memory answers reads after a fixed latency (``radix_sim.bus_build.LATENCY`` cycles); with
``--pause P`` every AXI channel also pauses at random with probability P (``--seed``).

Usage: ``python bench/resnet8_performance.py [--images N] [--calibration-images N] [--config ROWSxCOLS]
[--pause P] [--seed S] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import engine_shape  # bench/common.py, beside this script
from radix.calibrate import CalibrationSettings, calibrate
from radix.console import table
from radix.datasets import load_split
from radix.engine_spec import DEFAULT_CONFIG
from radix.ingest import ingest
from radix.runner import run_files
from radix.command_exec import ReferenceBusTransport
from radix_models import get_spec, load_builtin

MODEL = "resnet8"
CLOCKS_MHZ = (100.0, 1000.0 / 7)
# MLPerf Tiny v0.7/v1.0 image classification results on a PYNQ-Z2 (CIFAR-10 top-1)
PUBLISHED = [
    ("hls4ml RN08 (MLPerf Tiny)", "ResNet-8 (CIFAR-10)", 7.6, 83.5),
    ("FINN CNV-W1A1 (MLPerf Tiny)", "CNV, 1-bit (CIFAR-10)", 1000.0 / 661, 84.5),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="test images run on the RTL (default 4)")
    parser.add_argument("--calibration-images", type=int, default=1000)
    parser.add_argument("--config", type=engine_shape, default=DEFAULT_CONFIG, metavar="ROWSxCOLS",
                        help="W=8 array shape (default: the default engine)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="probability of a pause on every AXI channel each cycle (default 0: never)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the pauses (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0.0 <= args.pause < 1.0:
        parser.error(f"--pause {args.pause}: a probability in [0, 1)")
    config = args.config
    from radix_sim.hostrun import run_host

    spec = get_spec(MODEL)
    x_train, _ = load_split(spec.dataset, "train")
    graph, _ = ingest(load_builtin(MODEL), spec.input_shape)
    program = calibrate(graph, x_train[: args.calibration_images], CalibrationSettings(bits=config.width))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet8.radix"
        program.save(path)
        start = time.perf_counter()
        result = run_host("radix.runner:run_files", {"program": str(path), "data": spec.dataset,
                                                     "images": args.images}, config,
                          pause=args.pause, seed=args.seed)
        seconds = time.perf_counter() - start
        # the reference backend reports the analytic cycle model for the same job plan
        modelled = run_files(ReferenceBusTransport(config), program=str(path), data=spec.dataset,
                             images=1)["cycles"]["per_layer_mean"]
    pes = config.rows * config.cols
    measured = result["cycles"]["per_layer_mean"]
    rows, layers = [], []
    for layer in program.layers:
        cycles = measured[layer.name]
        ideal = -(-layer.macs // pes)
        entry = {"name": layer.name, "macs": layer.macs, "cycles": cycles, "ideal": ideal,
                 "utilisation": ideal / cycles if cycles else None, "model_cycles": modelled[layer.name]}
        layers.append(entry)
        rows.append([layer.name, "+".join(f for f, on in (("add", layer.skip), ("relu", layer.relu)) if on) or "-",
                     layer.macs, f"{cycles:.0f}", ideal, f"{100 * entry['utilisation']:.1f}%" if cycles else "-",
                     f"{modelled[layer.name]:.0f}"])
    total = result["cycles"]["per_image_mean"]
    macs = sum(layer.macs for layer in program.layers)
    summary = {"images": result["images"], "bit_exact": result["bit_exact"], "pause": args.pause,
               "seed": args.seed, "cycles_per_image": total,
               "macs_per_image": macs, "utilisation": macs / pes / total,
               "estimates": {f"{mhz:.2f}MHz": {"latency_ms": 1e3 * total / (mhz * 1e6),
                                               "images_per_s": mhz * 1e6 / total} for mhz in CLOCKS_MHZ},
               "simulation_seconds": round(seconds, 1)}
    if args.json:
        print(json.dumps({"config": config.as_dict(), "layers": layers, **summary}, indent=2))
        return 0 if result["bit_exact"] else 1
    print(f"ResNet-8 on the engine {config.rows}x{config.cols} W={config.width} "
          f"({pes} PEs), Verilated RTL, {result['images']} mnist32rgb test images, {seconds:.0f} s of simulation, "
          f"AXI pauses with probability {args.pause} (seed {args.seed}); "
          f"bit-exact with the reference: {'yes' if result['bit_exact'] else 'NO'}")
    print(table(["layer", "fused", "MACs", "RTL cycles (measured)", "ideal", "PE util", "model cycles"], rows))
    print()
    estimate_rows = [["Radix (this engine)", "ResNet-8 (mnist32rgb)", f"{total:.0f}",
                      *(f"{1e3 * total / (mhz * 1e6):.3f}" for mhz in CLOCKS_MHZ), "measured cycles; clock assumed"]]
    estimate_rows += [[name, net, "-", f"{ms:.1f}", "-", f"published, top-1 {top1}%"] for name, net, ms, top1 in PUBLISHED]
    print(table(["system", "network (data)", "cycles/image", "ms @100 MHz (est.)", "ms @142.86 MHz (est.)", "note"],
                estimate_rows))
    print(f"\n{macs} MACs per image, PE utilisation {100 * summary['utilisation']:.1f}% over the whole image")
    return 0 if result["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
