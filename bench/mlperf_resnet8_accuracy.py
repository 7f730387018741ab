"""MLCommons' own MLPerf Tiny ResNet-8 (CIFAR-10 weights): Radix's 8-bit schemes against MLCommons' int8 TFLite.

Usage::

    .venv/bin/python bench/mlperf_resnet8_accuracy.py                  # tables
    .venv/bin/python bench/mlperf_resnet8_accuracy.py --json           # one JSON object
    .venv/bin/python bench/mlperf_resnet8_accuracy.py --quick          # the default, the paper's scheme, TFLite
    .venv/bin/python bench/mlperf_resnet8_accuracy.py --write-npz DIR  # also the two sets as .npz for the CLI

The model is MLCommons' ``pretrainedResnet.h5`` converted to PyTorch
(``models/radix_models/weights/mlperf_resnet8.pt``, ``radix_models.convert_mlperf_resnet8``;
provenance in models/README.md). CIFAR-10 cannot be had offline, so the images are natural
32x32 crops of the colour photos that ship in scikit-learn, matplotlib and scikit-image
(``bench/natural_crops.py``: recipe, seed, the calibration/evaluation split, which share no
pixel), raw 0..255 pixels as MLCommons trains the model. With no labels, every row is scored by
its **top-1 agreement with the float PyTorch model** on the evaluation crops.

Rows: the float TFLite model (``pretrainedResnet.tflite``, run with ai-edge-litert; also its
largest logit difference from PyTorch), MLCommons' int8 TFLite model
(``pretrainedResnet_quant.tflite``: its own post-training quantization, per-channel int8
weights and asymmetric int8 activations with float scales; its int8 input quantized as its input
details say, ``q = round(x / scale) + zero_point``; top-1 of its int8 logits, before the
softmax whose 1/256 steps would tie), and Radix calibrations: ``radix.calibrate.calibrate`` on
the ingested model with the calibration crops (``--images N``: the seeded subset ``radix calibrate
--images N`` takes), scored with ``radix.evaluate.program_accuracy`` (the golden model, the
engine's exact integer arithmetic), as ``radix calibrate`` and ``radix eval --data eval.npz``
would on the ``--write-npz`` files. The TFLite files are read from ``bench/data/mlcommons-tiny``
(committed, at their paths in mlcommons/tiny) or a clone or bare mirror of mlcommons/tiny
(``--tiny``, or ``$MLCOMMONS_TINY``), checked against the blob hashes in models/README.md;
without them (or without ai-edge-litert) their rows say so.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: the machine is shared

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import radix
from radix.calibrate import CalibrationSettings, calibrate
from radix.datasets import subset
from radix.evaluate import program_accuracy
from radix.ingest import ingest
from common import seed_everything  # bench/common.py, beside this script
from natural_crops import natural_crops  # bench/natural_crops.py
from radix_models.mlperf_resnet8 import INPUT_SHAPE, WEIGHTS, load_mlperf_resnet8

SEED = 0
PER_QUADRANT = 64  # 8 photos x 2 quadrants x 64 = 1,024 calibration and 1,024 evaluation crops
DEFAULT_IMAGES = 1000
DEFAULT_TINY = str(Path(__file__).resolve().parent / "data" / "mlcommons-tiny")  # the two TFLite files, committed

OLD = {"weight_rule": "l1", "bias_correction": False, "unsigned": False}  # the rules before schemes were chosen
NEW = {"weight_rule": "mse", "bias_correction": True}
# (label, CalibrationSettings options); {} is the default, which chooses
RADIX_ROWS = [
    ("Radix 8-bit default (chooses)", {}),
    ("Radix 8-bit default, every tensor signed (--signed)", {"unsigned": False}),
    ("Radix 8-bit per-layer, L1 weights, greedy (the paper; the old default)",
     {"per_channel": False, "activation_rule": "greedy", **OLD}),
    ("Radix 8-bit per-channel, L1 weights, greedy (old --per-channel)", {"per_channel": True, "activation_rule": "greedy", **OLD}),
    ("Radix 8-bit per-layer, L1 weights, max-abs (old --activations maxabs)",
     {"per_channel": False, "activation_rule": "maxabs", **OLD}),
    ("Radix 8-bit per-channel, L1 weights, max-abs (old --per-channel --activations maxabs)",
     {"per_channel": True, "activation_rule": "maxabs", **OLD}),
    ("Radix 8-bit per-layer, MSE weights, greedy, bias corr.", {"per_channel": False, "activation_rule": "greedy", **NEW}),
    ("Radix 8-bit per-layer, MSE weights, MSE act., bias corr.", {"per_channel": False, "activation_rule": "mse", **NEW}),
    ("Radix 8-bit per-layer, MSE weights, max-abs, bias corr.", {"per_channel": False, "activation_rule": "maxabs", **NEW}),
    ("Radix 8-bit per-channel, MSE weights, greedy, bias corr.", {"per_channel": True, "activation_rule": "greedy", **NEW}),
    ("Radix 8-bit per-channel, MSE weights, MSE act., bias corr.", {"per_channel": True, "activation_rule": "mse", **NEW}),
    ("Radix 8-bit per-channel, MSE weights, max-abs, bias corr.", {"per_channel": True, "activation_rule": "maxabs", **NEW}),
    ("Radix 8-bit per-channel, MSE weights, MSE act., no bias corr.",
     {"per_channel": True, "activation_rule": "mse", "weight_rule": "mse", "bias_correction": False}),
    ("Radix 16-bit default (chooses)", {"bits": 16}),
    ("Radix 16-bit, the paper's scheme", {"bits": 16, "per_channel": False, "activation_rule": "greedy", **OLD}),
]
QUICK = (0, 2)  # --quick: the default and the paper's scheme


def float_logits(model, x) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(np.ascontiguousarray(x[i:i + 256])))
                          for i in range(0, len(x), 256)]).double().numpy()


def tflite_rows(tiny: str | None, x_eval, reference) -> tuple[list[dict], dict]:
    """The float and int8 TFLite rows (or rows saying why not) and the float check."""
    from radix_models import convert_mlperf_resnet8 as conv

    names = ("TFLite float (pretrainedResnet.tflite)", "TFLite int8, MLCommons' own PTQ (pretrainedResnet_quant.tflite)")
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError as exc:
        return [_missing(name, f"ai-edge-litert not installed ({exc})") for name in names], {}
    blobs = {}
    for key, path in (("float", conv.TFLITE_PATH), ("int8", conv.TFLITE_INT8_PATH)):
        try:
            data = _read_tiny(tiny, path)
        except Exception as exc:
            return [_missing(name, f"{path} not readable from --tiny {tiny!r}: {exc}") for name in names], {}
        sha = conv.git_blob_sha(data)
        if sha != conv.BLOBS[path]:
            return [_missing(name, f"{path}: git blob {sha}, expected {conv.BLOBS[path]}") for name in names], {}
        blobs[key] = data
    top1 = reference.argmax(1)
    rows, check = [], {}
    start = time.perf_counter()
    logits, softmax = conv.TFLiteModel(blobs["float"]).run(x_eval)
    check = {"max_abs_logit_diff": float(np.max(np.abs(logits - reference))),
             "max_abs_logit": float(np.max(np.abs(reference))),
             "max_abs_softmax_diff": float(np.max(np.abs(softmax - torch.softmax(torch.from_numpy(reference), 1).numpy())))}
    rows.append({"scheme": names[0], "bits": "fp32", "agreement": _pct(logits.argmax(1) == top1),
                 "calibration_s": None, "eval_s": time.perf_counter() - start,
                 "note": f"max |logit - PyTorch| {check['max_abs_logit_diff']:.2e} (logits up to {check['max_abs_logit']:.1f})"})
    start = time.perf_counter()
    model = conv.TFLiteModel(blobs["int8"])
    logits, softmax = model.run(x_eval)
    scale, zero = model.input["quantization"]
    rows.append({"scheme": names[1], "bits": "8", "agreement": _pct(logits.argmax(1) == top1),
                 "calibration_s": None, "eval_s": time.perf_counter() - start,
                 "note": f"input int8 = round(x / {scale:g}) + ({zero}); int8 logits (its softmax output: "
                         f"{_pct(softmax.argmax(1) == top1):.2f} %)"})
    return rows, check


def _read_tiny(tiny: str | None, path: str) -> bytes:
    from radix_models.convert_mlperf_resnet8 import read_from_git

    if not tiny:
        raise FileNotFoundError("no mlcommons/tiny checkout given")
    if (Path(tiny) / path).is_file():
        return (Path(tiny) / path).read_bytes()
    return read_from_git(tiny, path)


def _missing(scheme: str, why: str) -> dict:
    return {"scheme": scheme, "bits": "-", "agreement": None, "calibration_s": None, "eval_s": None, "note": why}


def _pct(mask) -> float:
    return 100.0 * float(np.mean(mask))


def radix_row(graph, x_calib, x_eval, y_eval, label: str, options: dict) -> tuple[dict, object]:
    settings = CalibrationSettings(**options)
    start = time.perf_counter()
    program = calibrate(graph, x_calib, settings)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    accuracy, saturated = program_accuracy(program, x_eval, y_eval)[:2]  # (top-1, input values saturated, ...)
    eval_seconds = time.perf_counter() - start
    chosen = program.report["calibration"]
    note = chosen["chosen"] if chosen["mode"] == "chosen" else ""
    note += f"{'; ' if note else ''}input fl {program.input_fl}"
    if saturated:
        note += f", {saturated} input values saturated"
    return ({"scheme": label, "bits": str(settings.bits), "agreement": 100.0 * accuracy, "calibration_s": seconds,
             "eval_s": eval_seconds, "note": note, "settings": program.report["settings"],
             "calibration": chosen}, program)


def format_table(rows: list[dict]) -> str:
    lines = ["| scheme | bits | top-1 agreement with float % | calibration s | note |",
             "| --- | --- | ---: | ---: | --- |"]
    for r in rows:
        agree = "—" if r["agreement"] is None else f"{r['agreement']:.2f}"
        secs = "—" if r["calibration_s"] is None else f"{r['calibration_s']:.1f}"
        lines.append(f"| {r['scheme']} | {r['bits']} | {agree} | {secs} | {r['note']} |")
    return "\n".join(lines)


def format_candidates(calibration: dict) -> str:
    lines = [f"held out {calibration['holdout_images']} of the calibration images, fitted on {calibration['fit_images']}; "
             f"chosen: {calibration['chosen']} ({calibration['reason']})",
             "| candidate | held-out top-1 agreement | held-out logit SQNR dB | s | chosen |",
             "| --- | ---: | ---: | ---: | --- |"]
    for c in calibration["candidates"]:
        lines.append(f"| {c['scheme']} | {100 * c['holdout_agreement']:.2f} % ({c['holdout_agree_images']}) | "
                     f"{c['holdout_logit_sqnr_db']} | {c['seconds']:.1f} | {'yes' if c['chosen'] else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                        help=f"calibration crops (a seeded subset of the {16 * PER_QUADRANT}; default {DEFAULT_IMAGES})")
    parser.add_argument("--tiny", default=os.environ.get("MLCOMMONS_TINY", DEFAULT_TINY),
                        help="a clone or bare mirror of mlcommons/tiny, for the TFLite models "
                             f"(default $MLCOMMONS_TINY or {DEFAULT_TINY})")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the converted state_dict")
    parser.add_argument("--quick", action="store_true", help="only the default and the paper's scheme (and TFLite)")
    parser.add_argument("--write-npz", metavar="DIR", help="write DIR/calib.npz and DIR/eval.npz (y: the float "
                        "model's top-1) for radix calibrate / radix eval")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seed_everything(SEED)
    total_start = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc)

    model = load_mlperf_resnet8(args.weights)
    crops = natural_crops(PER_QUADRANT, SEED)
    x_eval = crops["evaluation"]
    reference = float_logits(model, x_eval)
    y_eval = reference.argmax(1)
    calib_all = crops["calibration"]
    y_calib_all = float_logits(model, calib_all).argmax(1)
    x_calib, _ = subset(calib_all, y_calib_all, args.images)
    if args.write_npz:
        Path(args.write_npz).mkdir(parents=True, exist_ok=True)
        np.savez(Path(args.write_npz) / "calib.npz", x=calib_all, y=y_calib_all)
        np.savez(Path(args.write_npz) / "eval.npz", x=x_eval, y=y_eval)

    rows = [{"scheme": "float (PyTorch, fp32): the reference", "bits": "fp32", "agreement": 100.0,
             "calibration_s": None, "eval_s": None, "note": "converted pretrainedResnet.h5"}]
    t_rows, float_check = tflite_rows(args.tiny, x_eval, reference)
    rows += t_rows
    graph, _ = ingest(model, INPUT_SHAPE)
    programs = {}
    for i, (label, options) in enumerate(RADIX_ROWS):
        if args.quick and i not in QUICK:
            continue
        row, program = radix_row(graph, x_calib, x_eval, y_eval, label, options)
        rows.append(row)
        programs[label] = program
        if not args.json:
            print(f"{label}: {row['agreement']:.2f} % ({row['calibration_s']:.1f} s)", file=sys.stderr, flush=True)
    default = next(r for r in rows if r["scheme"] == RADIX_ROWS[0][0])
    paper = next(r for r in rows if r["scheme"] == RADIX_ROWS[QUICK[1]][0])
    result = {
        "benchmark": "mlperf_resnet8_accuracy", "model": str(args.weights), "seed": SEED,
        "data": {"recipe": "bench/natural_crops.py", "per_quadrant": PER_QUADRANT,
                 "calibration_images": int(len(x_calib)), "calibration_pool": int(len(calib_all)),
                 "evaluation_images": int(len(x_eval)), "float_class_histogram": np.bincount(y_eval, minlength=10).tolist()},
        "rows": [{k: v for k, v in r.items() if k not in ("calibration",)} for r in rows],
        "float_tflite_check": float_check,
        "default_calibration": default["calibration"],
        "calibration_time_ratio_default_vs_paper": default["calibration_s"] / paper["calibration_s"],
        "environment": {"radix": radix.__version__, "torch": torch.__version__, "numpy": np.__version__,
                        "python": platform.python_version(), "started": started.isoformat(timespec="seconds"),
                        "total_s": time.perf_counter() - total_start},
    }
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    print(f"MLCommons ResNet-8 (pretrainedResnet.h5 converted), {len(x_calib)} calibration and {len(x_eval)} evaluation "
          f"crops (bench/natural_crops.py, seed {SEED}); top-1 agreement with the float PyTorch model\n")
    print(format_table(rows))
    print("\nThe default's choice:\n")
    print(format_candidates(default["calibration"]))
    print(f"\ncalibration time, default / the paper's scheme: {result['calibration_time_ratio_default_vs_paper']:.2f}x; "
          f"total {result['environment']['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
