"""Compression benchmark: every method of ``radix compress`` on LeNet-5 (mnist5k) and DigitsNet (digits).

Usage::

    .venv/bin/python bench/compression.py          # the tables
    .venv/bin/python bench/compression.py --json   # one JSON object: every row's full report

Each row runs :func:`radix.compress.flow.compress` with the defaults of ``radix compress`` (6
fine-tuning epochs per method and pruning round, 20 for DigitsNet's small training split, Adam at
2e-3 with a cosine decay, the model's own training augmentation, seed 0, one thread), fine-tuning on the data set's training split and
scoring float top-1 on its test split. The compressed model is then calibrated to 8-bit dynamic
fixed point on the whole training split (greedy, as ``radix calibrate``) and scored with the
engine's integer arithmetic (``radix.network``); cycles per image are the analytic cycle model
of the default engine through the reference backend (``radix.runner.run_images``), labelled so.
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
import time

import numpy as np
import torch

import radix
from radix.compress.channels import PruneChannels
from radix.compress.flow import RadixCheck, compress
from radix.compress.prune import Prune
from radix.compress.share import Share
from radix.compress.svd import LowRank
from radix.compress.training import FineTune, TrainingData
from radix.compress.ttq import Ternary
from radix.engine_spec import DEFAULT_CONFIG
from radix_models import BUILTIN_MODELS, load_builtin
from radix_models.train import RECIPES

SEED = 0

# (model, data set, fine-tuning epochs, [(row label, command-line spelling, methods, calibration weight bits)])
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


def run_row(name: str, data: TrainingData, epochs: int, methods, weight_bits: dict) -> dict:
    """One row: compress, calibrate to 8 bits, score; the flow's report with the seconds."""
    seed_everything()
    spec = BUILTIN_MODELS[name]
    settings = FineTune(epochs=epochs, augment=RECIPES[name].augment, show_progress=False)
    start = time.perf_counter()
    result = compress(load_builtin(name), input_shape=spec.input_shape, data=data, methods=methods,
                      fine_tune=settings, radix=RadixCheck(bits=8, weight_bits=weight_bits))
    report = dict(result.report, seconds=round(time.perf_counter() - start, 1), warnings=result.warnings)
    return report


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers)))
             + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pp(difference: float) -> str:
    """A difference of two accuracies in percentage points, signed, without a "-0.0"."""
    return f"{round(100 * difference, 1) + 0.0:+.1f}"


def format_rows(results: list[dict]) -> str:
    rows = []
    for entry in results:
        r = entry["report"]
        radix_check = r["radix"]
        rows.append([
            f"{entry['model']}: {entry['label']}", f"`{entry['command']}`", f"{r['params_after']:,}",
            f"{r['bytes_compressed']:,}", f"{r['compression_ratio']:.1f}x", f"{100 * r['float_accuracy_after']:.1f}",
            f"{100 * radix_check['accuracy']:.1f}",
            _pp(radix_check["accuracy"] - r["float_accuracy_before"]),
            f"{radix_check['program_storage']['compressed_bytes']:,}", f"{r['conv_macs_after']:,}",
            f"{r['cycles_after']:,.0f}", f"{r['seconds']:.0f}",
        ])
    return table(["model: method", "radix compress", "params (nonzero)", "weight bytes", "ratio", "float top-1 %",
                  "8-bit top-1 %", "8-bit Δ vs float model (pp)", "8-bit program weight bytes", "conv MACs", "cycles/image (analytic model)",
                  "s"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    parser.add_argument("--models", default="lenet5,digitsnet", help="comma-separated subset of the models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    wanted = args.models.split(",")
    results = []
    for name, dataset, epochs, rows in PLAN:
        if name not in wanted:
            continue
        data, _ = TrainingData.load(dataset, classes=10)
        for label, command, methods, weight_bits in rows:
            print(f"{name}: {label} ...", file=sys.stderr, flush=True)
            spelled = command if command == "-" or epochs == FineTune().epochs else f"{command} --epochs {epochs}"
            results.append({"model": name, "data": dataset, "label": label, "command": spelled,
                            "report": run_row(name, data, epochs, methods, weight_bits)})
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
