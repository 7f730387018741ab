"""Compression benchmark: every method of ``radix compress`` on LeNet-5 and VGGNet (mnist5k) and DigitsNet (digits).

Usage::

    .venv/bin/python bench/compression.py                    # the tables
    .venv/bin/python bench/compression.py --json             # one JSON object: every row's full report
    .venv/bin/python bench/compression.py --models vggnet    # a subset of lenet5,vggnet,digitsnet
    .venv/bin/python bench/compression.py --rtl-images 0     # no RTL simulation (no Verilator here)

Each row runs :func:`radix.compress.flow.compress` with the defaults of ``radix compress`` (6
fine-tuning epochs per method and pruning round, 20 for DigitsNet's small training split, Adam at
2e-3 with a cosine decay, the model's own training augmentation, seed 0, one thread), fine-tuning on the data set's training split and
scoring float top-1 on its test split. The compressed model is then calibrated to 8-bit dynamic
fixed point on the whole training split (greedy, as ``radix calibrate``) and scored with the
engine's integer arithmetic (``radix.network``); cycles per image are the analytic cycle model
of the default engine through the reference backend (``radix.runner.run_images``), labelled so,
and the *measured* cycles of the calibrated program on the Verilated RTL of the default engine: the
``sim`` backend running ``radix.runner.run_files`` on the first ``--rtl-images`` (default 2) images
of the test subset, the path of ``radix run --backend sim``, its mean of the engine's CYCLES
register per image, each layer checked bit for bit against the golden model. Savings are against
the model's float-model row (the uncompressed program), analytic against analytic, measured
against measured.
Storage is the float32 weights in the Deep Compression format of ``radix.compress.storage``
(biases apart); the program column is the 8-bit program's weights in the same format, as a
``.radix`` saved with compressed weights holds them. See docs/compression.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import radix
from radix import backends
from radix.compress.channels import PruneChannels
from radix.compress.flow import RadixCheck, compress
from radix.compress.prune import Prune
from radix.compress.share import Share
from radix.compress.svd import LowRank
from radix.compress.training import FineTune, TrainingData
from radix.compress.ttq import Ternary
from radix.engine_spec import DEFAULT_CONFIG, EngineConfig
from radix_models import BUILTIN_MODELS, load_builtin
from radix_models.train import RECIPES

SEED = 0
RTL_IMAGES = 2  # images per row on the RTL: cycles depend on the layer geometry, not on the data

# the calibration images of a model when not the whole training split: VGGNet's 18 M MACs per image
# make the greedy calibration on the integer golden model slow on 4,000 images (ResNet-8's flow uses 1,000 too)
CALIBRATION_IMAGES = {"vggnet": 1000}

# (model, data set, fine-tuning epochs, [(row label, command-line spelling, methods, calibration weight bits
#  [, fine-tuning options of this row: epochs, lr])])
PLAN = [
    ("lenet5", "mnist5k", 6, [
        ("float model", "-", [], {}),
        ("pruning", "--prune 0.9", [Prune(sparsity=0.9)], {}),
        ("channel pruning", "--prune-channels 0.5", [PruneChannels(fraction=0.5)], {}),
        ("SVD of FC1", "--svd 16 --svd-layers classifier.1", [LowRank(rank=16, layers=("classifier.1",))], {}),
        ("trained ternary", "--ttq", [Ternary()], {}),
        ("weight sharing", "--share 5", [Share(bits=5)], {}),
        ("Deep Compression", "--prune 0.9 --share 5", [Prune(sparsity=0.9), Share(bits=5)], {}),
        ("Deep Compression, 4-bit FC", "--prune 0.9 --share 5 + calibrate --weight-bits fc=4",
         [Prune(sparsity=0.9), Share(bits=5)], {"fc": 4}),
        ("channels + Deep Compression", "--prune-channels 0.5 --prune 0.9 --share 5",
         [PruneChannels(fraction=0.5), Prune(sparsity=0.9), Share(bits=5)], {}),
    ]),
    # layers of 32 and 64 channels span two to four array tiles each way: channel pruning removes tiles
    # A channel cut costs the BatchNorm-folded VGGNet most of its accuracy (39 % top-1 right after
    # --prune-channels 0.6, before fine-tuning) and, without its BatchNorms, it relearns slowly: 0.6
    # at lr 1e-3 (its training's; 2e-3 costs even the uncut folded model 0.6 pp in 2 epochs) reached
    # 96.2 % float after 20 epochs, 96.8 % after 30 and 97.3 % after 60
    ("vggnet", "mnist5k", 6, [
        ("float model", "-", [], {}),
        ("channel pruning", "--prune-channels 0.5", [PruneChannels(fraction=0.5)], {}, {"epochs": 60, "lr": 1e-3}),
        ("channel pruning", "--prune-channels 0.6", [PruneChannels(fraction=0.6)], {}, {"epochs": 60, "lr": 1e-3}),
        ("Deep Compression", "--prune 0.9 --share 5", [Prune(sparsity=0.9), Share(bits=5)], {}, {"lr": 1e-3}),
    ]),
    # 1,437 training images are 23 batches an epoch: 20 epochs give the fine-tuning a few hundred steps
    ("digitsnet", "digits", 20, [
        ("float model", "-", [], {}),
        ("pruning", "--prune 0.7", [Prune(sparsity=0.7)], {}),
        ("channel pruning", "--prune-channels 0.5", [PruneChannels(fraction=0.5)], {}),
        ("SVD of conv2 (k x k to 6, then 1x1)", "--svd 6 --svd-layers features.4",
         [LowRank(rank=6, layers=("features.4",))], {}),
        ("trained ternary", "--ttq", [Ternary()], {}),
        ("weight sharing", "--share 4", [Share(bits=4)], {}),
        ("Deep Compression", "--prune 0.7 --share 4", [Prune(sparsity=0.7), Share(bits=4)], {}),
    ]),
]

PAPERS = [
    ("Han et al. NIPS'15, pruning", "LeNet-5 (431K weights, 60K MNIST images)", "12x fewer weights",
     "error 0.80% -> 0.77%"),
    ("Han et al. NIPS'15, pruning", "AlexNet / VGG-16 (ImageNet)", "9x / 13x fewer weights", "no loss"),
    ("Deep Compression ICLR'16", "LeNet-5 / LeNet-300-100 (MNIST)", "39x / 40x storage", "no loss"),
    ("Deep Compression ICLR'16", "AlexNet / VGG-16 (ImageNet)", "35x / 49x storage", "no loss"),
    ("Qiu et al. FPGA'16, SVD", "VGG16 FC6, 25088x4096 at rank 500", "7x fewer FC6 weights",
     "VGG16-SVD top-5 86.66% at 16 bits on the ZC706"),
    ("Zhu et al. ICLR'17, TTQ", "ResNet-20 / 32 / 44 / 56 (CIFAR-10)", "ternary, ~16x",
     "error 8.23->8.87, 7.67->7.63, 7.18->7.02, 6.80->6.44 %"),
    ("Zhu et al. ICLR'17, TTQ", "AlexNet (ImageNet, from scratch)", "ternary, ~16x", "top-1 error 42.8 -> 42.5 %"),
]


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def measure_rtl(program, dataset: str, images: int) -> dict:
    """Cycles per image of ``program`` measured on the Verilated RTL of the default engine (the
    ``sim`` backend, as ``radix run --backend sim``) over the first ``images`` test images."""
    with tempfile.TemporaryDirectory(prefix="radix-bench-") as tmp:
        path = Path(tmp) / "program.radix"  # the simulation runs the driver in its own directory
        program.save(path)
        result = backends.run("sim", "radix.runner:run_files",
                              {"program": str(path), "data": dataset, "images": images, "clock_mhz": 100.0},
                              EngineConfig(width=program.width))
    if not result["bit_exact"]:
        raise RuntimeError(f"{dataset}: the program is not bit-exact on the RTL: {result['first_mismatch']}")
    return {"images": result["images"], "per_image_mean": result["cycles"]["per_image_mean"],
            "per_layer_mean": result["cycles"]["per_layer_mean"], "source": result["cycles"]["source"],
            "bit_exact": result["bit_exact"], "wall_seconds": result["wall_seconds"]}


def run_row(name: str, data: TrainingData, tuning: dict, methods, weight_bits: dict, rtl_images: int) -> dict:
    """One row: compress (``tuning``: FineTune's epochs and lr), calibrate to 8 bits, score, and
    (``rtl_images`` > 0) measure the calibrated program's cycles on the RTL; the flow's report with
    ``rtl`` and the seconds."""
    seed_everything()
    spec = BUILTIN_MODELS[name]
    settings = FineTune(**tuning, augment=RECIPES[name].augment, show_progress=False)
    start = time.perf_counter()
    result = compress(load_builtin(name), input_shape=spec.input_shape, data=data, methods=methods,
                      fine_tune=settings,
                      radix=RadixCheck(bits=8, weight_bits=weight_bits, images=CALIBRATION_IMAGES.get(name)))
    seconds = round(time.perf_counter() - start, 1)
    if result.program is None:
        raise RuntimeError(f"{name}: the compressed model does not run on the engine: {result.warnings}")
    rtl = measure_rtl(result.program, spec.dataset, rtl_images) if rtl_images else None
    return dict(result.report, seconds=seconds, rtl=rtl, warnings=result.warnings)


def spelled(command: str, tuning: dict) -> str:
    """The row's ``radix compress`` options with the fine-tuning options that differ from the defaults."""
    if command == "-":
        return command
    defaults = FineTune()
    extra = "".join(f" --{key} {value:g}" for key, value in tuning.items() if value != getattr(defaults, key))
    return command + extra


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers)))
             + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pp(difference: float) -> str:
    """A difference of two accuracies in percentage points, signed, without a "-0.0"."""
    return f"{round(100 * difference, 1) + 0.0:+.1f}"


def _saving(after: float, before: float) -> str:
    """The fraction saved from ``before`` to ``after``, in %."""
    return f"{100 * (1 - after / before):.1f}"


def format_rows(results: list[dict]) -> str:
    rows = []
    baseline = {}  # model -> its float-model row's report: what every saving is against
    for entry in results:
        r = entry["report"]
        radix_check = r["radix"]
        base = baseline.setdefault(entry["model"], r)
        rtl, base_rtl = r["rtl"], base["rtl"]
        rows.append([
            f"{entry['model']}: {entry['label']}", f"`{entry['command']}`", f"{r['params_after']:,}",
            f"{r['bytes_compressed']:,}", f"{r['compression_ratio']:.1f}x", f"{100 * r['float_accuracy_after']:.1f}",
            f"{100 * radix_check['accuracy']:.1f}",
            _pp(radix_check["accuracy"] - r["float_accuracy_before"]),
            f"{radix_check['program_storage']['compressed_bytes']:,}", f"{r['conv_macs_after']:,}",
            _saving(r["conv_macs_after"], r["conv_macs_before"]),
            f"{r['cycles_after']:,.0f}", _saving(r["cycles_after"], base["cycles_after"]),
            "—" if rtl is None else f"{rtl['per_image_mean']:,.0f}",
            "—" if rtl is None or base_rtl is None else _saving(rtl["per_image_mean"], base_rtl["per_image_mean"]),
            f"{r['seconds']:.0f}",
        ])
    images = next((entry["report"]["rtl"]["images"] for entry in results if entry["report"]["rtl"]), 0)
    return table(["model: method", "radix compress", "params (nonzero)", "weight bytes", "ratio", "float top-1 %",
                  "8-bit top-1 %", "8-bit Δ vs float model (pp)", "8-bit program weight bytes", "conv MACs",
                  "conv MACs removed %", "cycles/image (analytic model)", "analytic saving %",
                  f"cycles/image (measured RTL, {images} images)", "measured RTL saving %", "s"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    models = [name for name, *_ in PLAN]
    parser.add_argument("--models", default=",".join(models), help=f"comma-separated subset of {','.join(models)}")
    parser.add_argument("--rtl-images", type=int, default=RTL_IMAGES,
                        help=f"test images per row on the Verilated RTL (default {RTL_IMAGES}; 0: analytic cycles only)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(models))
    if unknown:
        parser.error(f"--models {args.models}: unknown model(s) {', '.join(unknown)}; known: {', '.join(models)}")
    if args.rtl_images < 0:
        parser.error(f"--rtl-images {args.rtl_images}: must be 0 or more")
    torch.set_num_threads(1)
    started = time.perf_counter()
    wanted = args.models.split(",")
    results = []
    for name, dataset, epochs, rows in PLAN:
        if name not in wanted:
            continue
        data, _ = TrainingData.load(dataset, classes=10)
        for label, command, methods, weight_bits, *override in rows:
            print(f"{name}: {label} ...", file=sys.stderr, flush=True)
            tuning = {"epochs": epochs, **(override[0] if override else {})}
            results.append({"model": name, "data": dataset, "label": label, "command": spelled(command, tuning),
                            "report": run_row(name, data, tuning, methods, weight_bits, args.rtl_images)})
    wall = time.perf_counter() - started
    info = {"radix": radix.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "engine": DEFAULT_CONFIG.as_dict(), "wall_seconds": round(wall, 1)}
    if args.json:
        print(json.dumps({"rows": results, "environment": info}, indent=2, default=float))
        return 0
    print(format_rows(results))
    print()
    print(table(["paper", "network", "compression", "accuracy"], PAPERS))
    print()
    print(f"engine {DEFAULT_CONFIG.rows}x{DEFAULT_CONFIG.cols}, W={DEFAULT_CONFIG.width}; torch {torch.__version__}; "
          f"wall time {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
