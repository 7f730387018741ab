"""Engine performance: measured RTL cycles against the ideal and the analytic model.

For LeNet-5's layers, two RGB first layers (ResNet-8's stem, VGG-16's conv1_1) and VGG-16-style
3x3 layers (64-512 channels, spatially reduced so they simulate in minutes), one simulation of the default engine runs each layer through the host
driver (weights, bias and input streaming included) and reads the CYCLES register. It prints:

- measured cycles, and the ideal = MACs / PEs;
- PE utilisation = ideal / measured;
- the analytic cycle model (radix.cycle_model) and its error against the RTL;
- GOP/s at 100 and 142.86 MHz (PS7 FCLK0 choices) from the measured cycles (2 ops per MAC):
  ESTIMATES at an assumed clock, not timed measurements;
- VGG-16's thirteen convolutions at 224x224 through the cycle model alone (not simulated).

Usage: ``python bench/performance.py [--json] [--quick] [--config ROWSxCOLS ...]``
(``--quick``: the small layers only). ``--config`` names one or more W=8 array shapes, run
side by side on the same layers, each against its own peak; the default is the default
engine (16x24, two 8x8 MACs per DSP48E1). A shape whose ``cols * 8`` is not a multiple of 64
(e.g. 16x12) leaves empty lanes in every output tile in memory, which the next layer reads too
(docs/engine.md, "Tensors in memory"), so wide layers may not fit its weight buffer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import engine_shape  # bench/common.py, beside this script
from radix.console import table
from radix.engine_spec import DEFAULT_CONFIG, EngineConfig
from radix.runner import model_layers

CLOCKS_MHZ = (100.0, 1000.0 / 7)

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


# few-channel first layers, which the engine runs folded (docs/engine.md, "Few-channel layers");
# VGG-16's conv1_1 spatially reduced from 224x224 like the layers above
FIRST_LAYERS = [
    dict(name="resnet8 stem 3->16 @32x32", kind="conv", c_in=3, c_out=16, size=32, kernel=3, stride=1, pad=1, pool=False),
    dict(name="vgg16 conv1_1 3->64 @32x32", kind="conv", c_in=3, c_out=64, size=32, kernel=3, stride=1, pad=1,
         pool=False),
]

# VGG-16's thirteen convolutions at 224x224 (each block's last one with its 2x2 max pool fused),
# through the cycle model only: far too large to simulate here
VGG16_STACK = [
    dict(name=name, kind="conv", c_in=c_in, c_out=c_out, size=size, kernel=3, stride=1, pad=1, pool=pool)
    for name, c_in, c_out, size, pool in [
        ("conv1_1", 3, 64, 224, False), ("conv1_2", 64, 64, 224, True),
        ("conv2_1", 64, 128, 112, False), ("conv2_2", 128, 128, 112, True),
        ("conv3_1", 128, 256, 56, False), ("conv3_2", 256, 256, 56, False), ("conv3_3", 256, 256, 56, True),
        ("conv4_1", 256, 512, 28, False), ("conv4_2", 512, 512, 28, False), ("conv4_3", 512, 512, 28, True),
        ("conv5_1", 512, 512, 14, False), ("conv5_2", 512, 512, 14, False), ("conv5_3", 512, 512, 14, True),
    ]
]


def run(config: EngineConfig, layers: list[dict]) -> tuple[list[dict], float]:
    """Measure ``layers`` on the RTL of ``config``; per layer the runner's record plus derived
    ideal cycles, utilisation of this build's peak, model error and GOP/s estimates."""
    from radix_sim.hostrun import run_host

    start = time.perf_counter()
    results = run_host("radix.runner:measure_layers", {"layers": layers, "seed": 0}, config)
    seconds = time.perf_counter() - start
    peak = config.macs_per_cycle
    for r in results:
        ideal = -(-r["macs"] // peak)
        r.update(ideal=ideal, utilisation=ideal / r["cycles"],
                 model_error=(r["model_cycles"] - r["cycles"]) / r["cycles"],
                 **{f"gops_{mhz:.2f}mhz_estimate": 2 * r["macs"] * mhz * 1e6 / r["cycles"] / 1e9
                    for mhz in CLOCKS_MHZ})
    return results, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="LeNet-5 and the 64-channel layer only")
    parser.add_argument("--config", nargs="+", type=engine_shape, default=[DEFAULT_CONFIG], metavar="ROWSxCOLS",
                        help="array shapes to run side by side (default: the default engine)")
    args = parser.parse_args(argv)

    layers = LENET + FIRST_LAYERS + (VGG[:1] if args.quick else VGG)
    runs = [(config, *run(config, layers)) for config in args.config]
    stacks = [(config, model_layers(config, layers=VGG16_STACK)) for config in args.config]
    if args.json:
        print(json.dumps([{"config": c.as_dict(), "macs_per_cycle": c.macs_per_cycle, "dsps": c.dsps,
                           "seconds": s, "layers": res, "vgg16_stack_model": stack}
                          for (c, res, s), (_, stack) in zip(runs, stacks)], indent=2))
    else:
        gops = [f"GOP/s@{mhz:g}MHz (est.)" for mhz in (100, 142.86)]
        for config, results, seconds in runs:
            print(f"engine {config.rows}x{config.cols} W={config.width}: peak {config.macs_per_cycle} MACs/cycle "
                  f"on {config.dsps} DSP48E1 ({config.macs_per_dsp} per DSP at this shape), RTL simulated with "
                  f"Verilator; {seconds:.0f} s")
            rows = [[r["name"], r["macs"], r["cycles"], r["ideal"], f"{100 * r['utilisation']:.1f}%",
                     r["model_cycles"], f"{100 * r['model_error']:+.1f}%",
                     *(f"{r[f'gops_{mhz:.2f}mhz_estimate']:.1f}" for mhz in CLOCKS_MHZ),
                     "yes" if r["bit_exact"] else "NO"] for r in results]
            print(table(["layer", "MACs", "RTL cycles", "ideal", "util (own peak)", "model cycles", "model err",
                         *gops, "bit-exact"], rows))
        for config, stack in stacks:
            total_macs, total = sum(r["macs"] for r in stack), sum(r["model_cycles"] for r in stack)
            print(f"\nVGG-16's convolutions at 224x224 on the engine {config.rows}x{config.cols} W={config.width}: "
                  f"the analytic cycle model only (radix.cycle_model), NOT simulated; each a one-layer program")
            rows = [[r["name"], r["macs"], r["jobs"], r["model_cycles"],
                     f"{100 * r['macs'] / config.macs_per_cycle / r['model_cycles']:.1f}%"] for r in stack]
            rows.append(["total", total_macs, sum(r["jobs"] for r in stack), total,
                         f"{100 * total_macs / config.macs_per_cycle / total:.1f}%"])
            print(table(["layer", "MACs", "jobs", "model cycles", "util (own peak)"], rows))
            print("the 13 convolutions: " + ", ".join(f"{1e3 * total / (mhz * 1e6):.1f} ms at {mhz:g} MHz"
                                                       for mhz in (100, 142.86)) + " (estimates)")
    return 0 if all(r["bit_exact"] for _, results, _ in runs for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
