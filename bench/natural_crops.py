"""Offline natural 32x32 colour images for CIFAR-10 models: crops of photos shipped in packages.

CIFAR-10 cannot be downloaded here, so MLCommons' CIFAR-10 ResNet-8 is calibrated and evaluated
on crops of the eight colour photographs that ship inside installed packages:

- scikit-learn ``load_sample_images()``: ``china.jpg``, ``flower.jpg`` (427x640);
- matplotlib ``get_sample_data("grace_hopper.jpg")`` (600x512);
- scikit-image ``skimage.data``: ``astronaut`` (512x512), ``chelsea`` (a cat, 300x451),
  ``coffee`` (400x600), ``rocket`` (427x640), ``stereo_motorcycle`` left view (500x741).

Recipe (deterministic, ``seed`` 0 by default): each photo is cut into its four quadrants (the
halves rounded down); the top-left and bottom-right quadrants give **calibration** crops, the
top-right and bottom-left ones **evaluation** crops, so the two sets share no pixel. For every
photo, quadrant and crop in a fixed order, ``rng = np.random.default_rng(seed)`` draws the
crop side ``s`` uniformly from the sides in ``SIDES`` that fit the quadrant, then the top-left
corner uniformly among the positions inside the quadrant; the ``s x s`` crop is reduced to 32x32
by PIL's box filter (the mean of each source area: CIFAR's images are downscaled photos) and kept
as whole 0..255 pixels (uint8, as CIFAR's), then returned as float32 ``(N, 3, 32, 32)`` in raw
0..255, **not** scaled: MLCommons trains and evaluates ResNet-8 on raw pixel values
(``train.py``: ``ImageDataGenerator`` without rescaling or featurewise normalisation; the int8
model's input is ``pixel - 128`` with scale 1). Calibration crops come first per photo and
quadrant pair, then evaluation crops; ``per_quadrant`` crops per quadrant, so
``8 * 2 * per_quadrant`` images per split.
"""

from __future__ import annotations

import numpy as np

SIDES = (32, 40, 48, 64, 80, 96, 128, 160, 192)
CALIBRATION_QUADRANTS = ((0, 0), (1, 1))  # (row half, column half): top-left, bottom-right
EVALUATION_QUADRANTS = ((0, 1), (1, 0))
SEED = 0


def photos() -> dict[str, np.ndarray]:
    """The eight photos, ``name -> (H, W, 3) uint8``, in a fixed order."""
    import matplotlib.cbook
    import matplotlib.image
    import skimage.data
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    out = {f"sklearn/{name.rsplit('/', 1)[-1]}": image for name, image in zip(sample.filenames, sample.images)}
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        out["matplotlib/grace_hopper.jpg"] = matplotlib.image.imread(handle, format="jpg")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        out[f"skimage/{name}"] = getattr(skimage.data, name)()
    out["skimage/stereo_motorcycle(left)"] = skimage.data.stereo_motorcycle()[0]
    for name, image in out.items():
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name}: expected an RGB uint8 photo, got {image.dtype} {image.shape}")
    return out


def _crop(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    from PIL import Image

    patch = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    if side != 32:
        patch = patch.resize((32, 32), Image.Resampling.BOX)
    return np.asarray(patch, dtype=np.uint8).transpose(2, 0, 1)


def natural_crops(per_quadrant: int = 64, seed: int = SEED) -> dict:
    """``{"calibration": x, "evaluation": x, "sources_*": names}``: float32 ``(N, 3, 32, 32)`` in
    raw 0..255 pixels, ``16 * per_quadrant`` images each, disjoint (see the module's recipe)."""
    rng = np.random.default_rng(seed)
    sets = {"calibration": [], "evaluation": []}
    sources = {"calibration": [], "evaluation": []}
    for name, image in photos().items():
        h, w, _ = image.shape
        half_h, half_w = h // 2, w // 2
        for split, quadrants in (("calibration", CALIBRATION_QUADRANTS), ("evaluation", EVALUATION_QUADRANTS)):
            for qr, qc in quadrants:
                q_top, q_left = qr * half_h, qc * half_w
                sides = [s for s in SIDES if s <= min(half_h, half_w)]
                for _ in range(per_quadrant):
                    side = int(rng.choice(sides))
                    top = q_top + int(rng.integers(0, half_h - side + 1))
                    left = q_left + int(rng.integers(0, half_w - side + 1))
                    sets[split].append(_crop(image, top, left, side))
                    sources[split].append(f"{name}@{top},{left}+{side}")
    return {"calibration": np.asarray(sets["calibration"], dtype=np.float32),
            "evaluation": np.asarray(sets["evaluation"], dtype=np.float32),
            "sources_calibration": sources["calibration"], "sources_evaluation": sources["evaluation"]}
