"""MLCommons' own MLPerf Tiny VWW, KWS and AD models: Radix's 8-bit programs against MLCommons' int8 TFLite models.

Usage::

    .venv/bin/python bench/mlperf_tiny_accuracy.py                 # a table
    .venv/bin/python bench/mlperf_tiny_accuracy.py --json          # one JSON object
    .venv/bin/python bench/mlperf_tiny_accuracy.py --only kws      # one benchmark (repeatable)
    .venv/bin/python bench/mlperf_tiny_accuracy.py --write-npz DIR # also the proxy sets as .npz for the CLI

The models are MLCommons' trained MLPerf Tiny models converted to PyTorch
(``models/radix_models/weights/mlperf_{vww,kws,ad}.pt``, written by
``radix_models.convert_mlperf_tiny`` from the float TFLite models; provenance in
models/README.md) in Radix's factories ``mobilenet_vww()``, ``dscnn()`` and ``autoencoder()``.

**The inputs are offline proxies, not the benchmark data sets** (COCO-derived Visual Wake Words,
Speech Commands v2 and ToyADMOS cannot be had offline), so nothing here is an accuracy on the
benchmark: every row is scored against the converted **float PyTorch model** on the same inputs,
i.e. how faithfully each 8-bit model reproduces the float one where the proxies take it:

- VWW: ``radix.datasets.load_split("digitwake96", ...)``, 96x96 crops of three photos shipped in
  scikit-learn and matplotlib (half with a digit drawn on), pixels in [0, 1] as MLCommons trains
  the model (``rescale=1./255``); Radix calibrates on ``--calibration-images`` of the train split
  and every row is scored on the 1,000 test images (other digits, same scenes).
- KWS: synthetic speech-like clips (a seeded source-filter synthesis: 1 to 3 voiced syllables of
  harmonics of a gliding pitch under three moving formants, optional fricative noise, a noise
  floor, some clips noise only and some cut short and zero-padded as short Speech Commands clips
  are) through a numpy port of MLCommons' MFCC front end (``get_dataset.py``: 1 s at 16 kHz divided
  by its maximum, 30 ms Hann frames every 20 ms, 512-point FFT magnitude, 40 mel bands 20-4000 Hz
  as ``tf.signal.linear_to_mel_weight_matrix``, ``log(mel + 1e-6)``, DCT-II scaled as
  ``tf.signal.mfccs_from_log_mel_spectrograms``, 10 coefficients: 49x10). The port is checked
  only indirectly: silence gives coefficient 0 of -123.6, the bottom of the int8 model's input
  range (-123.4). Calibration and evaluation clips come from different seeds. The one real MFCC
  map in mlcommons/tiny (the KWS reference submission's ``kws_input_data.cc``) is classified by
  every row too.
- AD: the one real ToyCar spectrogram in mlcommons/tiny (the AD reference submission's
  ``normal_id_01_00000000_hist_librosa.bin``: a normal clip of machine id 01, 200 frames x 128
  log-mel bins in dB, as ``common.py`` computes them), cut into MLCommons' 5-frame windows of 640:
  the 96 windows of frames 0-99 calibrate Radix, the 96 of frames 100-199 are the normal
  evaluation inputs, and each of those also gets two synthetic anomalies (a tone: a one-bin-wide
  line 0-15 dB above the clip's mean level in that bin, in all five frames; a burst: broadband
  power 0-10 dB above one frame's mean level), 288 evaluation inputs. Scored by the output's SQNR
  against the float model's output, the rank correlation (Spearman) of the per-sample
  reconstruction errors (the anomaly score) with the float model's, on all 288 and on the 96
  normal windows, and the AUC of the score for synthetic anomaly against normal.

Rows: the converted float PyTorch model (the reference); MLCommons' float TFLite model
(``kws_ref_model_float32.tflite`` is a *hybrid* model: int8 weights in its five standard
convolutions and run-time int8 quantization of their inputs, see the converter); MLCommons' int8
TFLite model (its own post-training quantization: per-channel int8 weights, asymmetric int8
activations with float scales; input quantized as its details say; scored on its dequantized
int8 logits or outputs); Radix's 8-bit program: ``radix.calibrate.calibrate`` on the ingested
model with ``CalibrationSettings(bits=8)`` (the default: the scheme chosen on held-out
calibration inputs), and the paper's scheme (per-layer L1 weights, greedy activations), run on
the golden model (the engine's exact integer arithmetic) by ``radix.evaluate.program_outputs``.
The TFLite files and the two reference inputs are read from ``bench/data/mlcommons-tiny``
(committed at their paths in mlcommons/tiny) or a clone or bare mirror of mlcommons/tiny
(``--tiny``, or ``$MLCOMMONS_TINY``), checked against the git blob ids in
``radix_models.convert_mlperf_tiny.BLOBS``; without them (or ai-edge-litert) their rows say so.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: the machine is shared

import argparse
import datetime
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

import radix
from radix.calibrate import CalibrationSettings, calibrate
from radix.console import table
from radix.datasets import load_split, subset
from radix.evaluate import program_outputs, reconstruction_report, roc_auc
from radix.ingest import ingest
from common import seed_everything  # bench/common.py, beside this script
from radix_models import convert_mlperf_tiny as conv

SEED = 0
DEFAULT_TINY = str(Path(__file__).resolve().parent / "data" / "mlcommons-tiny")
VWW_CALIBRATION = 500
KWS_CALIBRATION, KWS_EVALUATION = 500, 1000
KWS_CALIBRATION_SEED, KWS_EVALUATION_SEED = 1, 2
AD_FRAMES, AD_MELS, AD_WINDOW = 200, 128, 5
AD_SPLIT_FRAME = 100  # windows of frames 0..99 calibrate, of 100..199 evaluate
RADIX_ROWS = [("Radix 8-bit default (chooses)", CalibrationSettings(bits=8)),
              ("Radix 8-bit, the paper's scheme", CalibrationSettings.paper(bits=8))]


# ----------------------------------------------------------------------------- KWS: the proxy

SAMPLE_RATE = 16000
FRAME, STEP, FFT = 480, 320, 512  # 30 ms, 20 ms, tf.signal.stft's fft_length=None: the next power of 2
MEL_BANDS, MEL_LOW, MEL_HIGH, MFCCS = 40, 20.0, 4000.0, 10


def _hertz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_matrix() -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20, 4000)``: HTK mel, triangles
    between neighbouring band edges on the mel scale, the DC bin zeroed."""
    bins = FFT // 2 + 1
    freqs_mel = _hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:])[:, None]
    edges = np.linspace(_hertz_to_mel(MEL_LOW), _hertz_to_mel(MEL_HIGH), MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((freqs_mel - lower) / (center - lower), (upper - freqs_mel) / (upper - center)))
    return np.concatenate([np.zeros((1, MEL_BANDS)), weights])


def mfcc(clips: np.ndarray) -> np.ndarray:
    """MLCommons' KWS front end (``get_dataset.py``, feature_type ``mfcc``) on 1 s clips at 16 kHz:
    ``(N, 16000)`` -> ``(N, 1, 49, 10)`` float32."""
    clips = np.asarray(clips, dtype=np.float64)
    peak = clips.max(axis=1, keepdims=True)  # wav / tf.reduce_max(wav): the maximum, not the largest magnitude
    clips = clips / np.where(peak > 0, peak, 1.0)
    frames = np.lib.stride_tricks.sliding_window_view(clips, FRAME, axis=1)[:, ::STEP]
    frames = frames[:, : 1 + (SAMPLE_RATE - FRAME) // STEP]  # 49
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)  # hann_window(periodic=True)
    spectrum = np.abs(np.fft.rfft(frames * window, n=FFT, axis=-1))
    log_mel = np.log(spectrum @ mel_matrix() + 1e-6)
    n = np.arange(MEL_BANDS)
    dct = 2.0 * np.cos(np.pi * np.arange(MFCCS)[:, None] * (2 * n + 1) / (2 * MEL_BANDS))  # tf.signal.dct type 2
    return ((log_mel @ dct.T) / math.sqrt(2.0 * MEL_BANDS))[:, None].astype(np.float32)


def _band_noise(rng, length: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1.0 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0.0
    out = np.fft.irfft(spectrum, n=length)
    return out / (np.abs(out).max() + 1e-12)


def synthetic_clips(n: int, seed: int) -> np.ndarray:
    """``n`` seeded 1 s speech-like clips ``(n, 16000)`` (module docstring)."""
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, SAMPLE_RATE))
    for i in range(n):
        clip = clips[i]
        if rng.random() < 0.85:  # a "word"; else background noise only
            start = int(rng.uniform(0.05, 0.45) * SAMPLE_RATE)
            for _ in range(int(rng.integers(1, 4))):
                if rng.random() < 0.4:  # a fricative onset
                    length = int(rng.uniform(0.03, 0.12) * SAMPLE_RATE)
                    end = min(start + length, SAMPLE_RATE)
                    clip[start:end] += rng.uniform(0.05, 0.4) * np.hanning(length)[: end - start] * \
                        _band_noise(rng, length, rng.uniform(1500, 3000), 8000)[: end - start]
                    start = end
                length = int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
                end = min(start + length, SAMPLE_RATE)
                if end - start > 16:
                    clip[start:end] += _vowel(rng, length)[: end - start]
                start = end + int(rng.uniform(0.0, 0.08) * SAMPLE_RATE)
                if start >= SAMPLE_RATE:
                    break
        floor = 10.0 ** rng.uniform(-3.5, -1.5)
        clip += floor * _band_noise(rng, SAMPLE_RATE, 20, 8000 * rng.uniform(0.3, 1.0)) * (clip.std() + 0.05) * 10
        if rng.random() < 0.15:  # a short clip, zero-padded to 1 s
            clip[int(rng.uniform(0.5, 0.95) * SAMPLE_RATE):] = 0.0
    return clips


def _vowel(rng, length: int) -> np.ndarray:
    """Harmonics of a gliding pitch under three moving formant resonances, Hann-shaped."""
    f0 = np.linspace(rng.uniform(90, 250), rng.uniform(90, 250), length)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = [np.linspace(*rng.uniform(lo, hi, 2), length) for lo, hi in ((300, 900), (900, 2500), (2300, 3500))]
    widths = rng.uniform(60, 160, 3)
    out = np.zeros(length)
    for k in range(1, int(4000 // f0.min()) + 1):
        fk = k * f0
        gain = sum(1.0 / (1.0 + ((fk - f) / b) ** 2) for f, b in zip(formants, widths)) / math.sqrt(k)
        out += np.where(fk < SAMPLE_RATE / 2, gain, 0.0) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return rng.uniform(0.3, 1.0) * np.hanning(length) * out / (np.abs(out).max() + 1e-12)


def kws_sample(text: str) -> np.ndarray:
    """The int8 MFCC map of ``kws_input_data.cc`` (49x10, frame-major), as integers."""
    body = text[text.index("g_kws_inputs[kNumKwsTestInputs][kKwsInputSize] = {") :]
    values = [int(v) for v in re.findall(r"-?\d+", body[body.index("{") : body.index("};")])]
    if len(values) != 490:
        raise ValueError(f"kws_input_data.cc: {len(values)} values, expected 490")
    return np.asarray(values, dtype=np.int64).reshape(1, 1, 49, 10)


# ------------------------------------------------------------------------------ AD: the proxy


def ad_windows(spectrogram: np.ndarray) -> np.ndarray:
    """MLCommons' feature vectors (``common.py``): 5 consecutive frames of 128 bins, frame-major."""
    count = len(spectrogram) - AD_WINDOW + 1
    return np.stack([spectrogram[t:t + AD_WINDOW].reshape(-1) for t in range(count)]).astype(np.float32)


def ad_data(clip_bytes: bytes) -> dict:
    """Calibration windows, evaluation windows (normal, then tone and burst anomalies) and labels."""
    spectrogram = np.frombuffer(clip_bytes, dtype="<f4").reshape(AD_FRAMES, AD_MELS).astype(np.float64)
    calibration = ad_windows(spectrogram[:AD_SPLIT_FRAME])
    normal = ad_windows(spectrogram[AD_SPLIT_FRAME:]).astype(np.float64)
    bin_level = spectrogram.mean(axis=0)  # the clip's mean level per mel bin, dB
    rng = np.random.default_rng(SEED)
    bins = np.arange(AD_MELS)
    tones, bursts = [], []
    for window in normal:
        power = 10.0 ** (window.reshape(AD_WINDOW, AD_MELS) / 10.0)
        centre = rng.uniform(0, AD_MELS)
        line = np.exp(-0.5 * (bins - centre) ** 2)
        tone = power + 10.0 ** ((bin_level + rng.uniform(0, 15)) / 10.0) * line
        tones.append(10.0 * np.log10(tone).reshape(-1))
        frame = int(rng.integers(0, AD_WINDOW))
        burst = power.copy()
        burst[frame] += 10.0 ** ((np.mean(window.reshape(AD_WINDOW, AD_MELS)[frame]) + rng.uniform(0, 10)) / 10.0)
        bursts.append(10.0 * np.log10(burst).reshape(-1))
    x_eval = np.concatenate([normal, np.asarray(tones), np.asarray(bursts)]).astype(np.float32)
    y_eval = np.concatenate([np.zeros(len(normal)), np.ones(2 * len(normal))]).astype(np.int64)
    return {"calibration": calibration, "evaluation": x_eval, "labels": y_eval, "normal": len(normal)}


# --------------------------------------------------------------------------------- scoring


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    noise = float(np.sum((reference - approx) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(float(np.sum(reference ** 2)) / noise))


def spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def classify_scores(reference: np.ndarray, logits: np.ndarray) -> dict:
    """Top-1 agreement with the float model, also on the inputs the float model does not put in
    its most frequent class (the proxies are unbalanced), and the logits' SQNR against float."""
    top1 = reference.argmax(1)
    agree = logits.argmax(1) == top1
    minority = top1 != np.bincount(top1).argmax()
    return {"agreement": 100.0 * float(np.mean(agree)), "minority_agree": int(np.count_nonzero(agree & minority)),
            "minority_inputs": int(np.count_nonzero(minority)), "sqnr_db": sqnr_db(reference, logits)}


def reconstruct_scores(x: np.ndarray, labels: np.ndarray, normal: int, reference: np.ndarray,
                       outputs: np.ndarray) -> dict:
    """As ``radix.evaluate.reconstruction_report``, for any model's outputs."""
    target = x.reshape(len(x), -1).astype(np.float64)
    error = np.mean((target - outputs) ** 2, axis=1)
    float_error = np.mean((target - reference) ** 2, axis=1)
    return {"sqnr_db": sqnr_db(reference, outputs), "rank_corr": spearman(error, float_error),
            "rank_corr_normal": spearman(error[:normal], float_error[:normal]), "auc": roc_auc(error, labels),
            "mean_error": float(np.mean(error))}


# ------------------------------------------------------------------------------ the files


def read_tiny(tiny: str | None, path: str) -> bytes:
    """A file of mlcommons/tiny from a directory of copies or a clone/mirror, blob-checked."""
    if not tiny:
        raise FileNotFoundError("no mlcommons/tiny checkout given")
    data = (Path(tiny) / path).read_bytes() if (Path(tiny) / path).is_file() else conv.read_from_git(tiny, path)
    sha = conv.git_blob_sha(data)
    if sha != conv.BLOBS[path]:
        raise ValueError(f"{path}: git blob {sha}, expected {conv.BLOBS[path]}")
    return data


def _try_read(tiny, path):
    try:
        return read_tiny(tiny, path), None
    except Exception as exc:  # noqa: BLE001 - the row says why
        return None, f"{path} not readable from --tiny {tiny!r}: {exc}"


# --------------------------------------------------------------------------------- one model


def run_model(name: str, tiny: str | None, args) -> dict:
    spec = conv.MODELS[name]
    model = conv.load_converted(name)
    start = time.perf_counter()
    extra = {}
    if name == "vww":
        x_train, y_train = load_split("digitwake96", "train")
        x_calib, _ = subset(x_train, y_train, args.calibration_images)
        x_eval = np.asarray(load_split("digitwake96", "test")[0])
        data = {"proxy": "digitwake96 photos (radix.datasets), [0, 1] pixels",
                "calibration": f"{len(x_calib)} of the train split (seeded subset)",
                "evaluation": f"the {len(x_eval)} test images"}
    elif name == "kws":
        x_calib = mfcc(synthetic_clips(KWS_CALIBRATION, KWS_CALIBRATION_SEED))
        x_eval = mfcc(synthetic_clips(args.kws_clips, KWS_EVALUATION_SEED))
        data = {"proxy": "synthetic speech-like clips through MLCommons' MFCC front end (numpy port)",
                "calibration": f"{len(x_calib)} clips, seed {KWS_CALIBRATION_SEED}",
                "evaluation": f"{len(x_eval)} clips, seed {KWS_EVALUATION_SEED}",
                "mfcc_range": [float(x_eval.min()), float(x_eval.max())]}
        sample_text, why = _try_read(tiny, conv.KWS_SAMPLE_PATH)
        extra["sample"] = kws_sample(sample_text.decode("latin-1")) if sample_text is not None else None
        extra["sample_note"] = why
    else:
        clip, why = _try_read(tiny, conv.AD_CLIP_PATH)
        if clip is None:
            return {"name": name, "skipped": why, "rows": []}
        ad = ad_data(clip)
        x_calib, x_eval = ad["calibration"], ad["evaluation"]
        extra.update(labels=ad["labels"], normal=ad["normal"])
        data = {"proxy": "the real ToyCar normal clip of mlcommons/tiny's AD reference submission, 5-frame windows, "
                         "plus synthetic tone and burst anomalies",
                "calibration": f"{len(x_calib)} windows of frames 0-{AD_SPLIT_FRAME - 1}",
                "evaluation": f"{ad['normal']} windows of frames {AD_SPLIT_FRAME}-{AD_FRAMES - 1} and "
                              f"{len(x_eval) - ad['normal']} anomalous copies"}
    reference = conv.torch_outputs(model, x_eval)
    if args.write_npz:
        out = Path(args.write_npz)
        out.mkdir(parents=True, exist_ok=True)
        y_calib = conv.torch_outputs(model, x_calib).argmax(1) if spec.task == "classify" else np.zeros(len(x_calib))
        y_eval = reference.argmax(1) if spec.task == "classify" else extra["labels"]
        np.savez(out / f"{name}_calib.npz", x=x_calib, y=y_calib.astype(np.int64))
        np.savez(out / f"{name}_eval.npz", x=x_eval, y=np.asarray(y_eval, dtype=np.int64))
    score = (lambda out: classify_scores(reference, out)) if spec.task == "classify" else \
        (lambda out: reconstruct_scores(x_eval, extra["labels"], extra["normal"], reference, out))
    rows = [{"scheme": "float (PyTorch, converted): the reference", "bits": "fp32", **score(reference),
             "note": f"{conv.MODELS[name].weights.name}"}]
    if spec.task == "classify":
        hist = np.bincount(reference.argmax(1), minlength=reference.shape[1])
        data["float_top1_histogram"] = {conv.CLASSES[name][i]: int(c) for i, c in enumerate(hist) if c}
    rows += tflite_rows(name, tiny, x_eval, reference, score)
    programs = {}
    graph, _ = ingest(model, spec.input_shape)
    for label, settings in RADIX_ROWS:
        t0 = time.perf_counter()
        program = calibrate(graph, x_calib, settings)
        seconds = time.perf_counter() - t0
        outputs, saturated, clipped_far = program_outputs(program, x_eval)
        values = np.ldexp(outputs.astype(np.float64), -program.output_fl).reshape(len(x_eval), -1)
        chosen = program.report["calibration"]
        note = (chosen["chosen"] + "; " if chosen["mode"] == "chosen" else "") + f"input fl {program.input_fl}"
        if saturated:
            note += f", {saturated} input values saturated ({clipped_far} by more than a step)"
        row = {"scheme": label, "bits": "8", **score(values), "calibration_s": seconds, "note": note,
               "settings": program.report["settings"]}
        if spec.task == "reconstruct":
            report = reconstruction_report(program, x_eval, extra["labels"], outputs, reference)
            row["radix_reconstruction_report"] = report
        programs[label] = program
        rows.append(row)
        if not args.json:
            print(f"{name}: {label} ({seconds:.1f} s)", file=sys.stderr, flush=True)
    if name == "kws":
        data["real_sample_top1"] = real_sample_top1(model, tiny, extra, programs)
    return {"name": name, "task": spec.task, "data": data, "rows": rows, "seconds": time.perf_counter() - start}


def tflite_rows(name, tiny, x_eval, reference, score) -> list[dict]:
    spec = conv.MODELS[name]
    labels = (f"TFLite float ({Path(spec.float_path).name})", f"TFLite int8, MLCommons' PTQ ({Path(spec.int8_path).name})")
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError as exc:
        return [_missing(label, f"ai-edge-litert not installed ({exc})") for label in labels]
    rows = []
    for label, path, bits in zip(labels, (spec.float_path, spec.int8_path), ("fp32", "8")):
        data, why = _try_read(tiny, path)
        if data is None:
            rows.append(_missing(label, why))
            continue
        runner = conv.TFLiteRunner(data)
        logits, _ = runner.run(x_eval)
        note = ""
        if bits == "fp32":
            diff = float(np.max(np.abs(logits - reference)))
            note = f"max |difference from PyTorch| {diff:.2e} (outputs up to {np.max(np.abs(reference)):.1f})"
            if name == "kws":
                note += "; hybrid: int8 weights and run-time int8 inputs in 5 convolutions"
        else:
            scale, zero = runner.input["quantization"]
            note = f"input int8 = round(x / {scale:.4g}) + ({zero}); dequantized int8 outputs"
        rows.append({"scheme": label, "bits": bits, **score(logits), "note": note})
    return rows


def real_sample_top1(model, tiny, extra, programs) -> dict | str:
    """Every row's class for the one real MFCC map in mlcommons/tiny (int8, dequantized with the
    int8 model's input scale and zero point)."""
    if extra.get("sample") is None:
        return extra.get("sample_note") or "not read"
    spec = conv.MODELS["kws"]
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return "ai-edge-litert not installed: the int8 model's input scale is needed"
    float_data, why_float = _try_read(tiny, spec.float_path)
    int8_data, why = _try_read(tiny, spec.int8_path)
    if int8_data is None:
        return why
    int8 = conv.TFLiteRunner(int8_data, batch=1)
    scale, zero = int8.input["quantization"]
    x = ((extra["sample"] - zero) * scale).astype(np.float32)
    top = {"float (PyTorch, converted)": int(conv.torch_outputs(model, x).argmax())}
    if float_data is not None:
        top[f"TFLite float ({Path(spec.float_path).name})"] = int(conv.TFLiteRunner(float_data, batch=1).run(x)[0].argmax())
    top[f"TFLite int8 ({Path(spec.int8_path).name})"] = int(int8.run(x)[0].argmax())
    for label, program in programs.items():
        top[label] = int(np.argmax(program_outputs(program, x)[0]))
    return {label: conv.CLASSES["kws"][c] for label, c in top.items()}


def _missing(scheme: str, why: str) -> dict:
    return {"scheme": scheme, "bits": "-", "note": why}


# --------------------------------------------------------------------------------- output


def _fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def format_table(results: list[dict]) -> str:
    rows = []
    for result in results:
        if result.get("skipped"):
            rows.append([result["name"].upper(), "skipped", "-", "-", "-", "-", "-", result["skipped"]])
            continue
        for r in result["rows"]:
            classify = result["task"] == "classify"
            agree = "-"
            if classify and r.get("agreement") is not None:
                agree = f"{_fmt(r['agreement'])} ({r['minority_agree']}/{r['minority_inputs']})"
            rows.append([result["name"].upper(), r["scheme"], r["bits"], agree, _fmt(r.get("sqnr_db"), 1),
                         "-" if classify else f"{_fmt(r.get('rank_corr'), 4)} / {_fmt(r.get('rank_corr_normal'), 3)}",
                         "-" if classify else _fmt(r.get("auc"), 3), r.get("note", "")])
    return table(["model", "scheme", "bits", "top-1 agree % (minority)", "SQNR dB", "error rank corr (all / normal)",
                  "anomaly AUC", "note"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--only", choices=list(conv.MODELS), action="append", help="one benchmark (repeatable)")
    parser.add_argument("--calibration-images", type=int, default=VWW_CALIBRATION,
                        help=f"VWW calibration images from digitwake96's train split (default {VWW_CALIBRATION})")
    parser.add_argument("--kws-clips", type=int, default=KWS_EVALUATION,
                        help=f"KWS evaluation clips (default {KWS_EVALUATION})")
    parser.add_argument("--write-npz", metavar="DIR", help="also write DIR/NAME_calib.npz and DIR/NAME_eval.npz "
                        "(y: the float model's top-1; for AD 0 normal, 1 anomalous) for radix calibrate / radix eval")
    parser.add_argument("--tiny", default=os.environ.get("MLCOMMONS_TINY", DEFAULT_TINY),
                        help="a clone or bare mirror of mlcommons/tiny, or a directory of its files at their paths "
                             f"(default $MLCOMMONS_TINY or {DEFAULT_TINY})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seed_everything(SEED)
    started = datetime.datetime.now(datetime.timezone.utc)
    total_start = time.perf_counter()
    results = [run_model(name, args.tiny, args) for name in conv.MODELS if not args.only or name in args.only]
    result = {"benchmark": "mlperf_tiny_accuracy", "seed": SEED,
              "warning": "proxy inputs, not the benchmark data sets: every row is scored against the converted "
                         "float model on the same inputs",
              "models": results,
              "environment": {"radix": radix.__version__, "torch": torch.__version__, "numpy": np.__version__,
                              "python": platform.python_version(), "started": started.isoformat(timespec="seconds"),
                              "total_s": time.perf_counter() - total_start}}
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    print("MLCommons' MLPerf Tiny VWW, KWS and AD models (converted float TFLite) on OFFLINE PROXY INPUTS, not the "
          "benchmark data sets;\nevery row is scored against the converted float PyTorch model on the same inputs.\n")
    for r in results:
        if not r.get("skipped"):
            print(f"{r['name'].upper()}: {r['data']['proxy']}; calibration: {r['data']['calibration']}; "
                  f"evaluation: {r['data']['evaluation']}")
            if "float_top1_histogram" in r["data"]:
                print(f"  float model's top-1 on the evaluation inputs: {r['data']['float_top1_histogram']}")
            if "real_sample_top1" in r["data"]:
                print(f"  the one real MFCC map in mlcommons/tiny (kws_input_data.cc), top-1: {r['data']['real_sample_top1']}")
    print()
    print(format_table(results))
    print("\ntop-1 agree %: with the float model's top-1 on all evaluation inputs; (minority): on how many of the inputs "
          "the float model does not put in its most frequent class. SQNR: of the logits (VWW, KWS) or the output (AD) "
          "against the float model's. Error rank corr: Spearman of the per-sample reconstruction errors with the float "
          "model's, on all inputs / on the normal windows. Anomaly AUC: of the reconstruction error, synthetic "
          "anomalies against normal windows.")
    print(f"\ntotal {result['environment']['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
