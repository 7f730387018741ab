"""Quantization benchmark: LeNet-5 on mnist5k, Radix dynamic fixed point against float and Brevitas.

Usage::

    .venv/bin/python bench/quantization.py          # a table
    .venv/bin/python bench/quantization.py --json   # one JSON object

Every scheme is calibrated on the 4,000-image ``train`` split of mnist5k and scored (top-1) on the
1,000-image ``test`` split. The Radix rows run the calibrated program on the golden model
(``radix.network``), i.e. the engine's exact integer arithmetic (docs/arithmetic.md). The Brevitas
row is a post-training twin of LeNet-5 built from Brevitas's own power-of-two fixed-point
quantizers, its activation ranges calibrated with ``brevitas.graph.calibrate.calibration_mode``.
See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
import warnings

import numpy as np
import torch

import radix
from radix import network
from radix.calibrate import CalibrationSettings, calibrate
from radix.datasets import load_split
from radix.ingest import ingest
from common import scheme_rows, seed_everything, top1  # bench/common.py, beside this script
from radix_models import get_spec, load_builtin

MODEL = "lenet5"
SEED = 0
BREVITAS_BATCH = 500

# (scheme, weight bits, activation bits, settings)
RADIX_ROWS = scheme_rows() + [
    ("Radix 8-bit static (one fl for W, one for A)", "8", "8", CalibrationSettings.paper(bits=8, static=True, unsigned=False)),
    ("Radix 8-bit, 4-bit FC weights (scheme chosen)", "8 conv / 4 fc", "8",
     CalibrationSettings(bits=8, weight_bits={"fc": 4})),
]


def float_row(model, x_test, y_test) -> dict:
    with torch.no_grad():
        logits = model(torch.from_numpy(np.array(x_test)))
    return {"scheme": "float (PyTorch, fp32)", "weight_bits": "fp32", "activation_bits": "fp32",
            "top1": top1(logits.argmax(1).numpy(), y_test), "calibration_s": None, "note": ""}


def radix_row(model, input_shape, x_train, x_test, y_test, scheme, wbits, abits, settings) -> tuple[dict, object]:
    start = time.perf_counter()
    layers, _ = ingest(model, input_shape)
    program = calibrate(layers, x_train, settings)
    seconds = time.perf_counter() - start
    predictions = network.predict(network.logits(program, x_test))
    return ({"scheme": scheme, "weight_bits": wbits, "activation_bits": abits,
             "top1": top1(predictions, y_test), "calibration_s": seconds, "note": ""}, program)


# ----------------------------------------------------------------------------------------- Brevitas


def build_brevitas_twin(model):
    """LeNet-5 rebuilt from Brevitas layers with power-of-two fixed-point quantizers, float weights copied in.

    Weights: ``Int8WeightPerTensorFixedPoint`` (narrow signed 8 bit, scale 2^ceil(log2(max|w|/127))).
    Activations (network input, every ReLU output, the logits): ``Int8ActPerTensorFixedPoint``
    (signed 8 bit, power-of-two scale from the 99.999th percentile collected in calibration) —
    signed like Radix's engine, which keeps every activation in signed W-bit integers.
    Bias: ``Int32Bias``, at the accumulator's scale (input scale x weight scale), like Radix (§4).
    """
    from torch import nn

    import brevitas.nn as qnn
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint
    from brevitas.quant.scaled_int import Int32Bias

    act = {"act_quant": Int8ActPerTensorFixedPoint, "return_quant_tensor": True}
    wb = {"weight_quant": Int8WeightPerTensorFixedPoint, "bias_quant": Int32Bias}
    twin = nn.Sequential()
    twin.add_module("input_quant", qnn.QuantIdentity(**act))
    twin.add_module("conv1", qnn.QuantConv2d(1, 6, 5, padding=2, **wb))
    twin.add_module("relu1", qnn.QuantReLU(**act))
    twin.add_module("pool1", nn.MaxPool2d(2))
    twin.add_module("conv2", qnn.QuantConv2d(6, 16, 5, **wb))
    twin.add_module("relu2", qnn.QuantReLU(**act))
    twin.add_module("pool2", nn.MaxPool2d(2))
    twin.add_module("flatten", nn.Flatten())
    twin.add_module("fc1", qnn.QuantLinear(400, 120, **wb))
    twin.add_module("relu3", qnn.QuantReLU(**act))
    twin.add_module("fc2", qnn.QuantLinear(120, 84, **wb))
    twin.add_module("relu4", qnn.QuantReLU(**act))
    twin.add_module("fc3", qnn.QuantLinear(84, 10, **wb))
    twin.add_module("output_quant", qnn.QuantIdentity(**act))
    sources = {"conv1": model.features[0], "conv2": model.features[3], "fc1": model.classifier[1],
               "fc2": model.classifier[3], "fc3": model.classifier[5]}
    with torch.no_grad():
        for name, source in sources.items():
            target = getattr(twin, name)
            if target.weight.shape != source.weight.shape:
                raise ValueError(f"{name}: twin weight {tuple(target.weight.shape)} != model {tuple(source.weight.shape)}")
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
    return twin


def _value(output):
    return output.value if hasattr(output, "value") else output


def brevitas_scales(twin) -> list[dict]:
    """Every quantizer's scale, its log2 and whether it is a power of two (fl = -log2 scale)."""
    import brevitas.nn as qnn

    rows = []
    with torch.no_grad():
        for name, module in twin.named_modules():
            if isinstance(module, (qnn.QuantConv2d, qnn.QuantLinear)):
                scale = module.quant_weight().scale
                kind = "weight"
            elif isinstance(module, (qnn.QuantIdentity, qnn.QuantReLU)):
                scale = module.act_quant.scale()
                kind = "activation"
            else:
                continue
            for s in torch.as_tensor(scale).flatten().tolist():
                exponent = math.log2(s)
                rows.append({"tensor": f"{name} {kind}", "scale": s, "log2": exponent,
                             "power_of_two": exponent == round(exponent), "fl": -round(exponent)})
    return rows


def brevitas_row(model, x_train, x_test, y_test) -> tuple[dict, list[dict], str]:
    """Post-training Brevitas fixed point; the row says so if a Brevitas piece fails."""
    scheme = "Brevitas PoT fixed point 8-bit (PTQ)"
    try:
        import brevitas
        from brevitas.graph.calibrate import calibration_mode

        version = brevitas.__version__
        start = time.perf_counter()
        twin = build_brevitas_twin(model)
        twin.eval()
        with torch.no_grad(), calibration_mode(twin):
            for i in range(0, len(x_train), BREVITAS_BATCH):
                twin(torch.from_numpy(np.array(x_train[i:i + BREVITAS_BATCH])))
        seconds = time.perf_counter() - start
        twin.eval()
        with torch.no_grad():
            logits = _value(twin(torch.from_numpy(np.array(x_test))))
        row = {"scheme": scheme, "weight_bits": "8", "activation_bits": "8",
               "top1": top1(logits.argmax(1).numpy(), y_test), "calibration_s": seconds,
               "note": f"brevitas {version}, bias Int32Bias"}
        return row, brevitas_scales(twin), version
    except Exception as exc:  # report, never fake: the row carries the failure
        row = {"scheme": scheme, "weight_bits": "8", "activation_bits": "8", "top1": None,
               "calibration_s": None, "note": f"FAILED: {type(exc).__name__}: {exc}"}
        return row, [], None


def radix_fls(program) -> list[tuple[str, int]]:
    """The Radix program's fls in the order of ``brevitas_scales``' tensors."""
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    acts = ["relu1", "relu2", "relu3", "relu4", "output_quant"]
    fls = [("input_quant activation", program.input_fl)]
    for layer, wname, aname in zip(program.layers, names, acts):
        fls.append((f"{wname} weight", layer.fl_w[0]))
        fls.append((f"{aname} activation", layer.fl_out))
    return fls


# ------------------------------------------------------------------------------------------ output


def format_table(rows: list[dict]) -> str:
    header = ["scheme", "weights / activations bits", "top-1 %", "Δ vs float (pp)", "calibration s"]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        acc = "—" if r["top1"] is None else f"{r['top1']:.1f}"
        delta = "—" if r["delta_pp"] is None else f"{r['delta_pp']:+.1f}"
        secs = "—" if r["calibration_s"] is None else f"{r['calibration_s']:.2f}"
        scheme = r["scheme"] + (f" ({r['note']})" if r["note"].startswith("FAILED") else "")
        lines.append(f"| {scheme} | {r['weight_bits']} / {r['activation_bits']} | {acc} | {delta} | {secs} |")
    return "\n".join(lines)


def format_scales(scales: list[dict], radix: list[tuple[str, int]]) -> str:
    radix_by_tensor = dict(radix)
    lines = ["| tensor | Brevitas scale | power of two | Brevitas fl | Radix 8-bit greedy fl |",
             "| --- | ---: | --- | ---: | ---: |"]
    for s in scales:
        lines.append(f"| {s['tensor']} | 2^{s['log2']:g} | {'yes' if s['power_of_two'] else 'NO'} | {s['fl']} | "
                     f"{radix_by_tensor.get(s['tensor'], '—')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module=r"brevitas(\..*)?")  # e.g. fast_hadamard_transform missing

    seed_everything(SEED)
    total_start = time.perf_counter()
    spec = get_spec(MODEL)
    weights_sha = hashlib.sha256(spec.weights.read_bytes()).hexdigest()
    model = load_builtin(MODEL)
    if hashlib.sha256(spec.weights.read_bytes()).hexdigest() != weights_sha:
        raise RuntimeError(f"{spec.weights} changed while it was being loaded: run again")
    x_train, _ = load_split(spec.dataset, "train")
    x_test, y_test = load_split(spec.dataset, "test")

    rows = [float_row(model, x_test, y_test)]
    float_top1 = rows[0]["top1"]
    greedy8 = None
    for scheme, wbits, abits, settings in RADIX_ROWS:
        row, program = radix_row(model, spec.input_shape, x_train, x_test, y_test, scheme, wbits, abits, settings)
        rows.append(row)
        if settings == CalibrationSettings.paper(bits=8, unsigned=False):
            greedy8 = program
    seed_everything(SEED)
    row, scales, brevitas_version = brevitas_row(model, x_train, x_test, y_test)
    rows.append(row)
    for r in rows:
        r["delta_pp"] = None if r["top1"] is None else r["top1"] - float_top1
    fls = radix_fls(greedy8)
    total = time.perf_counter() - total_start

    if args.json:
        print(json.dumps({
            "model": MODEL, "dataset": spec.dataset, "calibration_split": "train", "calibration_images": len(x_train),
            "test_split": "test", "test_images": len(x_test), "seed": SEED,
            "weights": spec.weights.name, "weights_sha256": weights_sha,
            "rows": rows,
            "brevitas_scales": [{**s, "radix_8bit_greedy_fl": dict(fls).get(s["tensor"])} for s in scales],
            "brevitas_scales_all_power_of_two": bool(scales) and all(s["power_of_two"] for s in scales),
            "versions": {"radix": getattr(radix, "__version__", None), "torch": torch.__version__,
                         "brevitas": brevitas_version, "numpy": np.__version__, "python": platform.python_version()},
            "total_s": total,
        }, indent=2))
        return 0
    print(f"{MODEL} on {spec.dataset}: calibrated on {len(x_train)} train images, top-1 on {len(x_test)} test images")
    print()
    print(format_table(rows))
    if scales:
        verdict = "all powers of two" if all(s["power_of_two"] for s in scales) else "NOT all powers of two"
        print()
        print(f"Brevitas scales ({verdict}); fl = -log2(scale), beside the Radix 8-bit greedy fls:")
        print()
        print(format_scales(scales, fls))
    print()
    print(f"weights {spec.weights.name} sha256 {weights_sha[:16]}; torch {torch.__version__}, "
          f"brevitas {brevitas_version}, numpy {np.__version__}, "
          f"python {platform.python_version()}; total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
