"""Engine performance: measured RTL cycles against the ideal and the analytic model.

For LeNet-5's layers and VGG-16-style 3x3 layers (64-512 channels, spatially reduced so they
simulate in minutes), one simulation of the default engine runs each layer through the host
driver (weights, bias and input streaming included) and reads the CYCLES register. It prints:

- measured cycles, and the ideal = MACs / PEs;
- PE utilisation = ideal / measured;
- the analytic cycle model (radix.cycle_model) and its error against the RTL;
- GOP/s at 100 and 150 MHz from the measured cycles (2 ops per MAC): ESTIMATES at an assumed
  clock, not timed measurements.

Usage: ``python bench/performance.py [--json] [--quick]`` (``--quick``: the small layers only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from radix.console import table
from radix.engine_spec import DEFAULT_CONFIG

LENET = [
    dict(name="lenet5 conv1", kind="conv", c_in=1, c_out=6, size=28, kernel=5, stride=1, pad=2, pool=True),
    dict(name="lenet5 conv2", kind="conv", c_in=6, c_out=16, size=14, kernel=5, stride=1, pad=0, pool=True),
    dict(name="lenet5 fc1", kind="fc", c_in=400, c_out=120),
    dict(name="lenet5 fc2", kind="fc", c_in=120, c_out=84),
    dict(name="lenet5 fc3", kind="fc", c_in=84, c_out=10),
]
VGG = [
    dict(name="vgg 3x3 64->64 @16x16", kind="conv", c_in=64, c_out=64, size=16, kernel=3, stride=1, pad=1, pool=False),
    dict(name="vgg 3x3 128->128 @16x16", kind="conv", c_in=128, c_out=128, size=16, kernel=3, stride=1, pad=1, pool=False),
    dict(name="vgg 3x3 256->256 @8x8", kind="conv", c_in=256, c_out=256, size=8, kernel=3, stride=1, pad=1, pool=False),
    dict(name="vgg 3x3 512->512 @8x8", kind="conv", c_in=512, c_out=512, size=8, kernel=3, stride=1, pad=1, pool=False),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="LeNet-5 and the 64-channel layer only")
    args = parser.parse_args(argv)
    from radix_sim.hostrun import run_host

    layers = LENET + (VGG[:1] if args.quick else VGG)
    config = DEFAULT_CONFIG
    start = time.perf_counter()
    results = run_host("radix.runner:measure_layers", {"layers": layers, "seed": 0}, config)
    seconds = time.perf_counter() - start
    pes = config.rows * config.cols
    rows = []
    for r in results:
        ideal = -(-r["macs"] // pes)
        r.update(ideal=ideal, utilisation=ideal / r["cycles"],
                 model_error=(r["model_cycles"] - r["cycles"]) / r["cycles"],
                 gops_100mhz_estimate=2 * r["macs"] * 100e6 / r["cycles"] / 1e9,
                 gops_150mhz_estimate=2 * r["macs"] * 150e6 / r["cycles"] / 1e9)
        rows.append([r["name"], r["macs"], r["cycles"], ideal, f"{100 * r['utilisation']:.1f}%", r["model_cycles"],
                     f"{100 * r['model_error']:+.1f}%", f"{r['gops_100mhz_estimate']:.1f}",
                     f"{r['gops_150mhz_estimate']:.1f}", "yes" if r["bit_exact"] else "NO"])
    if args.json:
        print(json.dumps({"config": config.as_dict(), "seconds": seconds, "layers": results}, indent=2))
    else:
        print(f"engine {config.rows}x{config.cols} W={config.width} ({pes} PEs), RTL simulated with Verilator; "
              f"{seconds:.0f} s")
        print(table(["layer", "MACs", "RTL cycles", "ideal", "PE util", "model cycles", "model err",
                     "GOP/s@100MHz (est.)", "GOP/s@150MHz (est.)", "bit-exact"], rows))
    return 0 if all(r["bit_exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
