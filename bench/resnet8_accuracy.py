"""ResNet-8 accuracy benchmark: Radix dynamic fixed point on mnist32rgb against float and Brevitas.

Usage::

    .venv/bin/python bench/resnet8_accuracy.py                 # tables
    .venv/bin/python bench/resnet8_accuracy.py --json          # one JSON object
    .venv/bin/python bench/resnet8_accuracy.py --images 4000   # calibrate on the whole train split

The built-in ``resnet8`` (MLPerf Tiny ResNet-8) is calibrated on ``--images`` images of the
4,000-image ``train`` split of ``mnist32rgb`` (a seeded random subset, the same images for every
scheme) and scored (top-1) on the 1,000-image ``test`` split. The Radix rows run the calibrated
program on the golden model (``radix.network``), the engine's exact integer arithmetic
(docs/arithmetic.md, with the residual add of §9 and the average pooling of §10). The Brevitas
row is a post-training twin of ResNet-8 built from Brevitas's power-of-two fixed-point
quantizers, BatchNorm folded into the convolutions, its activation ranges calibrated with
``brevitas.graph.calibrate.calibration_mode``. See bench/README.md for what each row means.

``--untrained`` runs on an untrained ``ResNet8()`` with seeded random BatchNorm statistics
instead of the committed weights (for developing the benchmark; its accuracies mean nothing).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: the machine is shared

import argparse
import datetime
import hashlib
import json
import math
import platform
import socket
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import radix
from radix import network
from radix.calibrate import CalibrationSettings, calibrate
from radix.datasets import load_split
from radix.ingest import ingest
from common import scheme_rows, seed_everything, top1  # bench/common.py, beside this script
from radix_models import get_spec, load_builtin
from radix_models.resnet8 import ResidualStack, ResNet8

MODEL = "resnet8"
SEED = 0
DEFAULT_IMAGES = 500  # keeps the whole run under ~5 minutes on one core of a loaded machine (bench/README.md)
BATCH = 250  # images per golden-model / Brevitas batch (bounds the memory of the integer convs)

# (scheme, weight bits, activation bits, settings)
RADIX_ROWS = scheme_rows() + [
    ("Radix 8-bit, per-channel weights, max-abs activations", "8", "8",
     CalibrationSettings.paper(bits=8, per_channel=True, activation_rule="maxabs", unsigned=False)),
]


def untrained_resnet8(seed: int = SEED) -> nn.Module:
    """An untrained ResNet-8 whose BatchNorms have seeded random statistics and affine parameters,
    so that folding them is not the identity (development only)."""
    torch.manual_seed(seed)
    model = ResNet8()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model.eval()


def calibration_subset(n_train: int, images: int) -> np.ndarray:
    """``images`` indices of the train split: a seeded random subset, in increasing order (the
    train split is sorted by class, so its first images are all zeros)."""
    if not 1 <= images <= n_train:
        raise SystemExit(f"--images must be 1..{n_train}, got {images}")
    return np.sort(np.random.default_rng(SEED).permutation(n_train)[:images])


def float_row(model, x_test, y_test) -> dict:
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(np.array(x_test[i:i + BATCH])))
                            for i in range(0, len(x_test), BATCH)])
    return {"scheme": "float (PyTorch, fp32)", "weight_bits": "fp32", "activation_bits": "fp32",
            "top1": top1(logits.argmax(1).numpy(), y_test), "calibration_s": None, "eval_s": None,
            "note": "PyTorch eval mode"}


def golden_predict(program, x) -> np.ndarray:
    return np.concatenate([network.predict(network.logits(program, x[i:i + BATCH])) for i in range(0, len(x), BATCH)])


def radix_row(model, input_shape, x_calib, x_test, y_test, scheme, wbits, abits, settings) -> tuple[dict, object]:
    start = time.perf_counter()
    graph, _ = ingest(model, input_shape)
    program = calibrate(graph, x_calib, settings)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = golden_predict(program, x_test)
    eval_seconds = time.perf_counter() - start
    worst = min((entry for entry in program.report["layers"] if entry.get("act_sqnr_db") is not None),
                key=lambda entry: entry["act_sqnr_db"], default=None)
    note = f"golden model, W={settings.bits}"
    if worst is not None:
        note += f"; lowest act SQNR {worst['act_sqnr_db']:.1f} dB ({worst['name']})"
    return ({"scheme": scheme, "weight_bits": wbits, "activation_bits": abits, "top1": top1(predictions, y_test),
             "calibration_s": seconds, "eval_s": eval_seconds, "note": note}, program)


# ----------------------------------------------------------------------------------------- Brevitas


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference BatchNorm folded into the preceding convolution: the math of
    ``radix.ops.batch_norm.fold_batchnorm`` (docs/arithmetic.md §8), in float64, returned as float32."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    if bn is None:
        return weight.float(), bias.float()
    scale = bn.weight.detach().double() if bn.affine else torch.ones(bn.num_features, dtype=torch.float64)
    shift = bn.bias.detach().double() if bn.affine else torch.zeros(bn.num_features, dtype=torch.float64)
    factor = scale / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    weight = weight * factor.reshape(-1, 1, 1, 1)
    bias = (bias - bn.running_mean.detach().double()) * factor + shift
    return weight.float(), bias.float()


def _brevitas_kwargs():
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint
    from brevitas.quant.scaled_int import Int32Bias

    act = {"act_quant": Int8ActPerTensorFixedPoint, "return_quant_tensor": True}
    wb = {"weight_quant": Int8WeightPerTensorFixedPoint, "bias_quant": Int32Bias, "return_quant_tensor": True}
    return act, wb


def _quant_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d | None):
    """A ``QuantConv2d`` with ``conv``'s geometry and the BN-folded float weights and bias."""
    import brevitas.nn as qnn

    _, wb = _brevitas_kwargs()
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        raise ValueError(f"{conv}: the twin copies plain convolutions only")
    twin = qnn.QuantConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                           padding=conv.padding, bias=True, **wb)
    weight, bias = fold_batchnorm(conv, bn)
    with torch.no_grad():
        twin.weight.copy_(weight)
        twin.bias.copy_(bias)
    return twin


def _twin_sequential(seq: nn.Sequential, *, relu_quant: bool = True) -> nn.Sequential:
    """A Sequential of (ZeroPad2d,) Conv2d, BatchNorm2d(, ReLU) as the same indices in Brevitas:
    padding kept (it acts on a QuantTensor unchanged), the conv a ``QuantConv2d`` with the BN folded
    in, the BN an ``nn.Identity``, a ReLU a ``QuantReLU`` (8-bit output quantizer)."""
    import brevitas.nn as qnn

    act, _ = _brevitas_kwargs()
    modules = list(seq)
    out = []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            bn = modules[i + 1] if i + 1 < len(modules) and isinstance(modules[i + 1], nn.BatchNorm2d) else None
            out.append(_quant_conv(module, bn))
        elif isinstance(module, nn.BatchNorm2d):
            if not out or not isinstance(modules[i - 1], nn.Conv2d):
                raise ValueError(f"{module}: the twin folds a BatchNorm only into the Conv2d before it")
            out.append(nn.Identity())
        elif isinstance(module, nn.ReLU):
            out.append(qnn.QuantReLU(**act) if relu_quant else nn.ReLU())
        elif isinstance(module, (nn.ZeroPad2d, nn.Identity)):
            out.append(module)
        else:
            raise ValueError(f"{type(module).__name__}: not expected in a ResNet-8 Sequential")
    return nn.Sequential(*out)


def _value(output):
    return output.value if hasattr(output, "value") else output


class TwinStack(nn.Module):
    """A ``ResidualStack`` in Brevitas. ``conv1`` ends in a ``QuantReLU``; ``conv2`` and a 1x1
    projection ``shortcut`` are ``QuantConv2d`` whose outputs stay at the accumulator's scale (input
    scale x weight scale, Int32 bias: no rounding); an identity shortcut passes the block input, an
    8-bit QuantTensor. Their scales differ, so the add is done on the two dequantized values and
    re-quantized by ``add_quant`` (a ``QuantIdentity``, signed 8-bit power of two), then ``relu2``
    (a ReLU on a QuantTensor keeps it on the same grid, so the block output is 8-bit fixed point).
    With ``relu_first`` the order is add, ReLU, ``add_quant`` instead (one quantizer on the
    rectified sum, which is where Radix quantizes, §9)."""

    def __init__(self, stack: ResidualStack, *, relu_first: bool = False) -> None:
        super().__init__()
        import brevitas.nn as qnn

        act, _ = _brevitas_kwargs()
        self.relu_first = relu_first
        self.conv1 = _twin_sequential(stack.conv1)
        self.relu1 = qnn.QuantReLU(**act)
        self.conv2 = _twin_sequential(stack.conv2)
        if isinstance(stack.shortcut, nn.Identity):
            self.shortcut = nn.Identity()
        elif isinstance(stack.shortcut, nn.Conv2d):
            self.shortcut = _quant_conv(stack.shortcut, None)
        else:
            raise ValueError(f"shortcut {type(stack.shortcut).__name__}: only Identity or Conv2d")
        self.add_quant = qnn.QuantIdentity(**act)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        total = _value(self.conv2(self.relu1(self.conv1(x)))) + _value(self.shortcut(x))
        if self.relu_first:
            return self.add_quant(self.relu2(total))
        return self.relu2(self.add_quant(total))


class TwinResNet8(nn.Module):
    """ResNet-8 from Brevitas layers, read off a float ``ResNet8``: ``input_quant`` (8-bit), the stem
    (QuantConv2d + QuantReLU), the three TwinStacks, the float model's own ``AvgPool2d`` (on an
    8-bit QuantTensor Brevitas computes the exact mean: scale / k^2, wider bit width, no
    rounding, as Radix's fold of the pool into the Linear, §10), flatten, ``QuantLinear`` and
    ``output_quant`` on the logits (the engine's logits are W-bit integers too)."""

    def __init__(self, model: ResNet8, *, relu_first: bool = False) -> None:
        super().__init__()
        import brevitas.nn as qnn

        act, wb = _brevitas_kwargs()
        if not isinstance(model.pool, nn.AvgPool2d):
            raise ValueError(f"pool {type(model.pool).__name__}: the twin expects the model's AvgPool2d")
        self.input_quant = qnn.QuantIdentity(**act)
        self.stem = _twin_sequential(model.stem)
        self.stack1 = TwinStack(model.stack1, relu_first=relu_first)
        self.stack2 = TwinStack(model.stack2, relu_first=relu_first)
        self.stack3 = TwinStack(model.stack3, relu_first=relu_first)
        self.pool = model.pool
        fc = model.fc
        self.fc = qnn.QuantLinear(fc.in_features, fc.out_features, bias=True, **wb)
        with torch.no_grad():
            self.fc.weight.copy_(fc.weight)
            self.fc.bias.copy_(fc.bias)
        self.output_quant = qnn.QuantIdentity(**act)

    def forward(self, x):
        x = self.stack3(self.stack2(self.stack1(self.stem(self.input_quant(x)))))
        return self.output_quant(self.fc(torch.flatten(self.pool(x), 1)))


def brevitas_scales(twin) -> list[dict]:
    """Every quantizer's scale, its log2 and whether it is a power of two (fl = -log2 scale)."""
    import brevitas.nn as qnn

    rows = []
    with torch.no_grad():
        for name, module in twin.named_modules():
            if isinstance(module, (qnn.QuantConv2d, qnn.QuantLinear)):
                scale, kind = module.quant_weight().scale, "weight"
            elif isinstance(module, (qnn.QuantIdentity, qnn.QuantReLU)):
                scale, kind = module.act_quant.scale(), "activation"
            else:
                continue
            for s in torch.as_tensor(scale).flatten().tolist():
                exponent = math.log2(s)
                rows.append({"tensor": f"{name} {kind}", "module": name, "kind": kind, "scale": s, "log2": exponent,
                             "power_of_two": exponent == round(exponent), "fl": -round(exponent)})
    return rows


def run_twin(model, x_calib, x_test, *, relu_first: bool = False):
    """Build, calibrate and score a twin: (test logits, scales, calibration seconds)."""
    from brevitas.graph.calibrate import calibration_mode

    seed_everything(SEED)
    start = time.perf_counter()
    twin = TwinResNet8(model, relu_first=relu_first).eval()
    with torch.no_grad(), calibration_mode(twin):
        for i in range(0, len(x_calib), BATCH):
            twin(torch.from_numpy(np.array(x_calib[i:i + BATCH])))
    seconds = time.perf_counter() - start
    twin.eval()
    with torch.no_grad():
        logits = torch.cat([_value(twin(torch.from_numpy(np.array(x_test[i:i + BATCH]))))
                            for i in range(0, len(x_test), BATCH)])
    return logits, brevitas_scales(twin), seconds


def twin_float_difference(model, x) -> float:
    """Max |logit difference| between the float model and a fresh twin with quantization disabled
    (``calibration_mode`` runs it in float): checks the BN fold, padding, adds and pooling."""
    from brevitas.graph.calibrate import calibration_mode

    twin = TwinResNet8(model).eval()
    batch = torch.from_numpy(np.array(x))
    with torch.no_grad():
        reference = model(batch)
        with calibration_mode(twin):
            unquantized = _value(twin(batch))
    return float((reference - unquantized).abs().max())


def brevitas_row(model, x_calib, x_test, y_test) -> tuple[dict, list[dict], str | None, dict]:
    """Post-training Brevitas fixed point; the row says so if a Brevitas piece fails. Also scores the
    ``relu_first`` variant of the add (reported in the JSON and the note, not as a row)."""
    scheme = "Brevitas PoT fixed point 8-bit (PTQ)"
    try:
        import brevitas

        version = brevitas.__version__
        logits, scales, seconds = run_twin(model, x_calib, x_test)
        accuracy = top1(logits.argmax(1).numpy(), y_test)
        v_logits, _, _ = run_twin(model, x_calib, x_test, relu_first=True)
        variant = {"add_order": "add, ReLU, QuantIdentity", "top1": top1(v_logits.argmax(1).numpy(), y_test),
                   "twin_float_max_logit_diff": twin_float_difference(model, x_test[:BATCH])}
        row = {"scheme": scheme, "weight_bits": "8", "activation_bits": "8", "top1": accuracy,
               "calibration_s": seconds, "eval_s": None,
               "note": f"brevitas {version}, Int32Bias; add, QuantIdentity, ReLU "
                       f"(add, ReLU, QuantIdentity: {variant['top1']:.1f} %)"}
        return row, scales, version, variant
    except Exception as exc:  # report, never fake: the row carries the failure
        row = {"scheme": scheme, "weight_bits": "8", "activation_bits": "8", "top1": None,
               "calibration_s": None, "eval_s": None, "note": f"FAILED: {type(exc).__name__}: {exc}"}
        return row, [], None, {}


def radix_fl_for(program, twin_module: str, kind: str, pool_module: str, pool_window: int):
    """The Radix 8-bit greedy fl of the tensor a Brevitas quantizer stands for, or None.

    Weights: the engine layer holding the module (a Linear with the pool folded in carries
    ``1/k^2`` in its weights, i.e. ``2 log2 k`` more fractional bits: subtracted). Activations: a
    QuantReLU stands for the layer that fused that ReLU, a stack's ``add_quant`` for the layer that
    fused the add and ``relu2``; ``input_quant``/``output_quant`` for the input / the logits."""
    if twin_module == "input_quant":
        return program.input_fl
    if twin_module == "output_quant":
        return program.layers[-1].fl_out
    if twin_module.endswith(".add_quant"):
        twin_module = twin_module[: -len("add_quant")] + "relu2"
    for layer in program.layers:
        if twin_module in layer.modules:
            if kind == "activation":
                return layer.fl_out
            fl = layer.fl_w[0] if len(layer.fl_w) == 1 else None
            if fl is not None and pool_module in layer.modules:
                fl -= round(2 * math.log2(pool_window))
            return fl
    return None


# ------------------------------------------------------------------------------------------ output


def format_table(rows: list[dict]) -> str:
    header = ["scheme", "weights / activations bits", "top-1 %", "Δ vs float (pp)", "calibration s", "note"]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        acc = "—" if r["top1"] is None else f"{r['top1']:.1f}"
        delta = "—" if r["delta_pp"] is None else f"{r['delta_pp']:+.1f}"
        secs = "—" if r["calibration_s"] is None else f"{r['calibration_s']:.2f}"
        lines.append(f"| {r['scheme']} | {r['weight_bits']} / {r['activation_bits']} | {acc} | {delta} | {secs} | "
                     f"{r['note']} |")
    return "\n".join(lines)


def format_layers(program) -> str:
    lines = ["| layer | modules | fl in / w / out | fl skip | weight SQNR dB | act SQNR dB | act saturated % |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for e in program.report["layers"]:
        fl_w = e["fl_w"][0] if len(e["fl_w"]) == 1 else f"{min(e['fl_w'])}..{max(e['fl_w'])}"
        skip = e.get("fl_skip")
        wsq = "exact" if e.get("weight_sqnr_db") is None else f"{e['weight_sqnr_db']:.1f}"
        asq = "exact" if e.get("act_sqnr_db") is None else f"{e['act_sqnr_db']:.1f}"
        lines.append(f"| {e['name']} | {', '.join(e['modules'])} | {e['fl_in']} / {fl_w} / {e['fl_out']} | "
                     f"{'—' if skip is None else skip} | {wsq} | {asq} | {100 * e['act_saturated']:.3f} |")
    return "\n".join(lines)


def format_scales(scales: list[dict]) -> str:
    lines = ["| tensor | Brevitas scale | power of two | Brevitas fl | Radix 8-bit greedy fl |",
             "| --- | ---: | --- | ---: | ---: |"]
    for s in scales:
        radix_fl = s.get("radix_8bit_greedy_fl")
        lines.append(f"| {s['tensor']} | 2^{s['log2']:g} | {'yes' if s['power_of_two'] else 'NO'} | {s['fl']} | "
                     f"{'—' if radix_fl is None else radix_fl} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                        help=f"calibration images from the train split (default {DEFAULT_IMAGES}, at most 4000)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="a ResNet8 state_dict to use instead of the committed weights")
    parser.add_argument("--untrained", action="store_true",
                        help="an untrained ResNet8() with random BatchNorm statistics (development only)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module=r"brevitas(\..*)?")  # e.g. fast_hadamard_transform missing
    torch.set_num_threads(1)

    seed_everything(SEED)
    total_start = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc)
    spec = get_spec(MODEL)
    if args.untrained:
        model, weights_name, weights_sha = untrained_resnet8(), "untrained ResNet8() (random BN statistics)", None
    else:
        path = args.weights or spec.weights
        if not path.exists():
            raise SystemExit(f"{path} does not exist (the committed weights are written by python -m "
                             f"radix_models.train {MODEL}); --untrained runs the benchmark on an untrained model")
        weights_sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if args.weights is None:
            model = load_builtin(MODEL)
        else:
            model = spec.factory()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.eval()
        if hashlib.sha256(path.read_bytes()).hexdigest() != weights_sha:
            raise RuntimeError(f"{path} changed while it was being loaded: run again")
        weights_name = path.name if args.weights is None else str(path)
    x_train, _ = load_split(spec.dataset, "train")
    x_test, y_test = load_split(spec.dataset, "test")
    subset = calibration_subset(len(x_train), args.images)
    x_calib = np.ascontiguousarray(x_train[subset])

    rows = [float_row(model, x_test, y_test)]
    float_top1 = rows[0]["top1"]
    programs = {}
    for scheme, wbits, abits, settings in RADIX_ROWS:
        seed_everything(SEED)
        row, program = radix_row(model, spec.input_shape, x_calib, x_test, y_test, scheme, wbits, abits, settings)
        rows.append(row)
        programs[scheme] = program
    row, scales, brevitas_version, variant = brevitas_row(model, x_calib, x_test, y_test)
    rows.append(row)
    for r in rows:
        r["delta_pp"] = None if r["top1"] is None else r["top1"] - float_top1
    greedy8 = programs["Radix 8-bit dynamic, the paper's scheme (greedy)"]
    pool_window = model.pool.kernel_size if isinstance(model.pool.kernel_size, int) else model.pool.kernel_size[0]
    for s in scales:
        s["radix_8bit_greedy_fl"] = radix_fl_for(greedy8, s["module"], s["kind"], "pool", pool_window)
    total = time.perf_counter() - total_start
    host = f"{socket.gethostname()} ({platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})"
    header = (f"{MODEL} on {spec.dataset}: train split {len(x_train)} images, test split {len(x_test)} images; "
              f"calibrated on {len(x_calib)} train images (seeded random subset, seed {SEED}), top-1 on all "
              f"{len(x_test)} test images; {started:%Y-%m-%d %H:%M} UTC on {host}")
    versions = {"radix": getattr(radix, "__version__", None), "torch": torch.__version__, "brevitas": brevitas_version,
                "numpy": np.__version__, "python": platform.python_version()}

    if args.json:
        print(json.dumps({
            "model": MODEL, "dataset": spec.dataset, "train_images": len(x_train), "test_images": len(x_test),
            "calibration_split": "train", "calibration_images": len(x_calib),
            "calibration_indices_sha256": hashlib.sha256(subset.astype(np.int64).tobytes()).hexdigest(),
            "seed": SEED, "date_utc": started.isoformat(timespec="seconds"), "host": host,
            "weights": weights_name, "weights_sha256": weights_sha, "header": header,
            "rows": rows,
            "radix_layers": {scheme: program.report["layers"] for scheme, program in programs.items()},
            "radix_input_fl": {scheme: program.input_fl for scheme, program in programs.items()},
            "brevitas_scales": scales,
            "brevitas_scales_all_power_of_two": bool(scales) and all(s["power_of_two"] for s in scales),
            "brevitas_add_variant": variant,
            "versions": versions, "total_s": total,
        }, indent=2))
        return 0
    print(header)
    print()
    print(format_table(rows))
    print()
    print(f"Radix 8-bit greedy, per layer (SQNR and saturation on the {len(x_calib)} calibration images; "
          f"input fl {greedy8.input_fl}):")
    print()
    print(format_layers(greedy8))
    if scales:
        verdict = "all powers of two" if all(s["power_of_two"] for s in scales) else "NOT all powers of two"
        print()
        print(f"Brevitas scales ({verdict}); fl = -log2(scale), beside the Radix 8-bit greedy fls "
              f"(twin with quantization off vs float model: max logit difference "
              f"{variant['twin_float_max_logit_diff']:.1e} on {BATCH} test images):")
        print()
        print(format_scales(scales))
    print()
    sha = "" if weights_sha is None else f" sha256 {weights_sha[:16]}"
    print(f"weights {weights_name}{sha}; torch {torch.__version__}, brevitas {brevitas_version}, "
          f"numpy {np.__version__}, python {platform.python_version()}; total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
