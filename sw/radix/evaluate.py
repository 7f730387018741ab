"""Accuracy of programs and of their float source models, and data loading with its checks.

``program_accuracy`` and ``load_checked`` need numpy alone (the board runs ``radix eval``);
``float_accuracy`` imports torch and returns None where it cannot run (the board, or a source
model that is not on this machine any more).
"""

from __future__ import annotations

import numpy as np

from . import network
from .data_checks import check_images, fingerprint
from .datasets import load_split, subset_indices
from .program import Program

EVAL_BATCH = 256


def load_checked(data: str, split: str, *, images: int | None = None, classes: int | None = None):
    """``(x, y, warnings)``: a split of a data set, cut to ``images``, refused when unusable.

    Messages number an image by its place in the whole file (or split), not in the subset."""
    x, y = load_split(data, split)
    keep = subset_indices(len(y), images)
    x, y = x[keep], y[keep]
    warnings = check_images(x, y, source=data_source(data, split), classes=classes, numbers=keep)
    return x, y, warnings


def data_source(data: str, split: str) -> str:
    """How messages name a split of a data set: the file itself, or the named set and its split."""
    return data if data.endswith(".npz") else f"{data} ({split} split)"


def output_classes(program: Program) -> int:
    """Classes of a program: the size of its last layer's output."""
    return int(np.prod(program.layers[-1].out_shape))


TASKS = ("classify", "reconstruct")


def infer_task(program: Program) -> tuple[str, str]:
    """``(task, reason)``: a program whose output has its input's shape reconstructs its input
    (an autoencoder, whose per-sample error is the anomaly score); otherwise it classifies."""
    if tuple(program.layers[-1].out_shape) == tuple(program.input_shape):
        return "reconstruct", "the output has the input's shape"
    return "classify", "one output per class"


def program_outputs(program: Program, x, *, progress=None) -> tuple[np.ndarray, int, int]:
    """The program's integer outputs ``(N, outputs)`` on the golden model, the number of input
    elements its input quantization saturated (§2: clipped, and counted rather than silently
    lost), and how many of those were clipped by more than one step 2^-fl: calibration may
    choose an fl whose range stops one step short of the data's maximum (e.g. pixels of 1.0 at
    fl 7 become 127/128), which costs no more than rounding; a clip beyond that loses information."""
    outputs, saturated, clipped_far = [], 0, 0
    starts = range(0, len(x), EVAL_BATCH)
    for start in (progress(starts) if progress else starts):
        batch = x[start : start + EVAL_BATCH]
        saturated += network.input_saturation(program, batch)
        x_q = network.quantize_input(program, batch)  # once, for the clip count and the network
        scaled = np.asarray(batch, dtype=np.float64) * np.ldexp(1.0, program.input_fl)
        clipped_far += int(np.count_nonzero(np.abs(scaled - x_q) > 1.0))
        outputs.append(np.reshape(network.run(program, x_q)[-1].values, (len(batch), -1)))
    return np.concatenate(outputs), saturated, clipped_far


def program_accuracy(program: Program, x, y, *, progress=None) -> tuple[float, int, int]:
    """Top-1 of the program on the golden model, with the input saturation counts of
    :func:`program_outputs`."""
    outputs, saturated, clipped_far = program_outputs(program, x, progress=progress)
    return float(np.mean(network.predict(outputs) == y)), saturated, clipped_far


def reconstruction_report(program: Program, x, y, outputs, float_outputs=None) -> dict:
    """How well the program reconstructs its inputs: the per-sample mean squared error of the
    fixed-point output (the anomaly score of an autoencoder) and, with the float model's outputs,
    the output's SQNR against them and the rank correlation (Spearman) of the two models'
    per-sample errors, which is what ranking samples by anomaly needs. With labels 0 (normal) and
    1 (anomalous), the AUC of each score too."""
    n = len(x)
    target = np.asarray(x, dtype=np.float64).reshape(n, -1)
    fixed = np.ldexp(np.asarray(outputs, dtype=np.float64).reshape(n, -1), -program.layers[-1].fl_out)
    error = np.mean((target - fixed) ** 2, axis=1)
    report = {"mean_error": float(np.mean(error))}
    labels = np.asarray(y)
    anomaly_labels = set(np.unique(labels).tolist()) == {0, 1}
    if anomaly_labels:
        report["auc"] = roc_auc(error, labels)
    if float_outputs is not None:
        reference = np.asarray(float_outputs, dtype=np.float64).reshape(n, -1)
        float_error = np.mean((target - reference) ** 2, axis=1)
        noise = float(np.sum((reference - fixed) ** 2))
        report.update(float_mean_error=float(np.mean(float_error)),
                      output_sqnr_db=float("inf") if noise == 0 else
                      float(10 * np.log10(max(float(np.sum(reference**2)), 1e-300) / noise)),
                      error_rank_correlation=_spearman(error, float_error))
        if anomaly_labels:
            report["float_auc"] = roc_auc(float_error, labels)
    return report


def _ranks(values) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    _, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2)[inverse]


def _spearman(a, b) -> float | None:
    """Spearman's rank correlation; None when either side is constant (it is undefined)."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def roc_auc(score, labels) -> float:
    """Area under the ROC curve of ``score`` for labels 1 against 0 (Mann-Whitney, ties halved)."""
    ranks = _ranks(score)
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def float_accuracy(module, x, y) -> float:
    """Top-1 of a torch module on float images (host only)."""
    return float(np.mean(float_outputs(module, x).argmax(axis=1) == y))


def float_outputs(module, x) -> np.ndarray:
    """A torch module's outputs ``(N, outputs)`` on float inputs (host only)."""
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x)))
    return out.reshape(len(x), -1).numpy()


def source_model(program: Program):
    """``(module, None)``: the program's float source model with the weights it was calibrated
    from, or ``(None, reason)`` where it cannot be had (no torch on the board, the model is not on
    this machine, or its weights changed since calibration)."""
    try:
        from .modelspec import resolve

        resolved = resolve(program.source["model"], program.source.get("weights"))
    except Exception:  # no torch on the board, or the source model is not on this machine
        return None, "the source model does not load here"
    if program.source.get("weights_sha256") and resolved.weights_sha256 != program.source["weights_sha256"]:
        return None, "the source model's weights changed since calibration"
    return resolved.module, None


def source_float_accuracy(program: Program, x, y) -> tuple[float | None, str]:
    """The float top-1 of the program's source model on these images, and where it comes from:
    measured at calibration (stored in the program) when these are the very images and labels
    (compared by content, :func:`radix.data_checks.fingerprint`), else measured now when the
    source model still loads here with the same weights, else None."""
    stored = program.source.get("float_accuracy") or {}
    if stored.get("sha256") and stored["sha256"] == fingerprint(x, y):
        return float(stored["top1"]), "measured at calibration"
    module, reason = source_model(program)
    if module is None:
        return None, reason
    return float_accuracy(module, x, y), "measured now"
