"""Convert MLCommons' pretrained MLPerf Tiny ResNet-8 (Keras h5) to a PyTorch state_dict.

Source: mlcommons/tiny (Apache-2.0),
``benchmark/training/image_classification/trained_models/pretrainedResnet.h5`` (the Keras
model of ``keras_model.resnet_v1_eembc()`` with 16 filters, CIFAR-10), checked against the
float TFLite model beside it (``pretrainedResnet.tflite``). See models/README.md for the blob
hashes of the converted files.

Usage (bench extra: h5py, ai-edge-litert)::

    # from a local clone or bare mirror of mlcommons/tiny:
    python -m radix_models.convert_mlperf_resnet8 --repo /path/to/tiny/.git
    # or from the files themselves:
    python -m radix_models.convert_mlperf_resnet8 --h5 pretrainedResnet.h5 --tflite pretrainedResnet.tflite

It writes ``weights/mlperf_resnet8.pt`` (``-o``) and prints the largest logit and softmax
difference between the converted PyTorch model and the float TFLite model on natural-image crops
(scikit-learn's two sample photos cut into 32x32 tiles) and on uniform random pixels.

The mapping, read off the h5 file's ``model_config`` (and checked against it: filters, kernel,
strides, padding, epsilon, the graph's wiring):

- Keras ``Conv2D`` kernels are ``(kh, kw, in, out)`` (HWIO): transposed to PyTorch's OIHW;
  ``padding="same"`` is PyTorch ``padding=1`` on the stride-1 3x3 convolutions, and on the
  stride-2 3x3 convolutions of an even map TensorFlow pads one row and column at the bottom and
  right only: the model's ``ZeroPad2d((0, 1, 0, 1))`` before an unpadded convolution. The 1x1
  stride-2 shortcuts need no padding (TensorFlow's total "same" padding is max(0, -1) = 0);
- ``BatchNormalization``: gamma, beta, moving mean and variance to weight, bias, running mean and
  variance; epsilon from the config (0.001, set by the factory; not part of a state_dict);
- images are NHWC in Keras, NCHW in PyTorch: ``x.transpose(0, 3, 1, 2)``;
- ``Dense`` kernels are ``(in, out)``: transposed. The flatten before it reads a 1x1x64 map (the
  8x8 average pool is global), so Keras' HWC flatten order equals PyTorch's CHW order and no
  permutation of the Dense rows is needed (the converter asserts the pooled map is 1x1);
- the final softmax is not part of the PyTorch model (logits; the argmax is the same).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from radix.modelspec import sha256_of
from radix_models.mlperf_resnet8 import INPUT_SHAPE, KERAS_BN_EPSILON, WEIGHTS, mlperf_resnet8
from radix_models.tflite_runner import TFLiteRunner

REPO = "mlcommons/tiny"
LICENSE = "Apache-2.0"
H5_PATH = "benchmark/training/image_classification/trained_models/pretrainedResnet.h5"
TFLITE_PATH = "benchmark/training/image_classification/trained_models/pretrainedResnet.tflite"
TFLITE_INT8_PATH = "benchmark/training/image_classification/trained_models/pretrainedResnet_quant.tflite"
# The git blob ids of the files the committed weights were converted from and checked against
# (mlcommons/tiny at 1afd2c9820f795965a6134facd0b4dfae41ef23f; last changed by 1bbcf37f, "Restore
# image classification models", 2026-04-27).
BLOBS = {
    H5_PATH: "cbd69708c39f96a3ed09141bcac029bbfe8be256",
    TFLITE_PATH: "2e479f36e734ac7a17fa773c3f326ed888bcdf62",
    TFLITE_INT8_PATH: "0e2f5df6b930c58bd0727ce63e3f01a18aa600f1",
}

# PyTorch prefix -> (Keras Conv2D, Keras BatchNormalization or None, stride, kernel, its input's Keras layer)
LAYERS = {
    "stem": ("conv2d", "batch_normalization", 1, 3, "input_1"),
    "stack1.conv1": ("conv2d_1", "batch_normalization_1", 1, 3, "activation"),
    "stack1.conv2": ("conv2d_2", "batch_normalization_2", 1, 3, "activation_1"),
    "stack2.conv1": ("conv2d_3", "batch_normalization_3", 2, 3, "activation_2"),
    "stack2.conv2": ("conv2d_4", "batch_normalization_4", 1, 3, "activation_3"),
    "stack2.shortcut": ("conv2d_5", None, 2, 1, "activation_2"),
    "stack3.conv1": ("conv2d_6", "batch_normalization_5", 2, 3, "activation_4"),
    "stack3.conv2": ("conv2d_7", "batch_normalization_6", 1, 3, "activation_5"),
    "stack3.shortcut": ("conv2d_8", None, 2, 1, "activation_4"),
}
# Where each PyTorch Sequential keeps its conv and BN: (conv index, BN index); a stride-2 block
# starts with its ZeroPad2d.
_SEQ_INDEX = {1: (0, 1), 2: (1, 2)}


def git_blob_sha(data: bytes) -> str:
    """Git's object id of a file's bytes (what ``git ls-tree`` prints for it)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_from_git(repo: str, path: str, rev: str = "HEAD") -> bytes:
    return subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], check=True, capture_output=True).stdout


def _config_layers(h5) -> dict:
    config = h5.attrs["model_config"]
    config = json.loads(config.decode() if isinstance(config, bytes) else config)
    return {layer["config"]["name"]: layer for layer in config["config"]["layers"]}


def _inbound(layer: dict) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    return [entry[0] for entry in nodes[0]] if nodes else []


def _check_config(layers: dict) -> None:
    """Refuse an h5 whose graph is not the one ``LAYERS`` maps."""
    for prefix, (conv, bn, stride, kernel, source) in LAYERS.items():
        c = layers[conv]["config"]
        if (tuple(c["kernel_size"]), tuple(c["strides"]), c["padding"], c["use_bias"]) != \
                ((kernel, kernel), (stride, stride), "same", True):
            raise ValueError(f"{conv} ({prefix}): unexpected config {c}")
        if _inbound(layers[conv]) != [source]:
            raise ValueError(f"{conv} ({prefix}) reads {_inbound(layers[conv])}, expected {source}")
        if bn is not None:
            if _inbound(layers[bn]) != [conv]:
                raise ValueError(f"{bn} reads {_inbound(layers[bn])}, expected {conv}")
            eps = layers[bn]["config"]["epsilon"]
            if eps != KERAS_BN_EPSILON:
                raise ValueError(f"{bn}: epsilon {eps}, the factory sets {KERAS_BN_EPSILON}")
            if not layers[bn]["config"].get("scale", True) or not layers[bn]["config"].get("center", True):
                raise ValueError(f"{bn}: expected gamma and beta")
    pool = layers["average_pooling2d"]["config"]
    if tuple(pool["pool_size"]) != (8, 8) or _inbound(layers["flatten"]) != ["average_pooling2d"]:
        raise ValueError("expected an 8x8 average pool of the 8x8 map (a 1x1 map) before the flatten")
    if _inbound(layers["dense"]) != ["flatten"] or layers["dense"]["config"]["activation"] != "softmax":
        raise ValueError("expected flatten -> Dense(softmax)")


def state_dict_from_h5(source) -> dict[str, torch.Tensor]:
    """The PyTorch state_dict of :func:`mlperf_resnet8` from the Keras h5 file (path or bytes)."""
    import h5py

    with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as h5:
        _check_config(_config_layers(h5))
        weights = h5["model_weights"]

        def get(layer: str, name: str) -> np.ndarray:
            return np.asarray(weights[layer][layer][f"{name}:0"], dtype=np.float32)

        state = {}
        for prefix, (conv, bn, stride, kernel, _) in LAYERS.items():
            conv_key, bn_key = prefix, None
            if not prefix.endswith("shortcut"):
                conv_index, bn_index = _SEQ_INDEX[stride] if prefix != "stem" else (0, 1)
                conv_key, bn_key = f"{prefix}.{conv_index}", f"{prefix}.{bn_index}"
            state[f"{conv_key}.weight"] = torch.from_numpy(get(conv, "kernel").transpose(3, 2, 0, 1).copy())  # HWIO->OIHW
            state[f"{conv_key}.bias"] = torch.from_numpy(get(conv, "bias"))
            if bn is not None:
                state[f"{bn_key}.weight"] = torch.from_numpy(get(bn, "gamma"))
                state[f"{bn_key}.bias"] = torch.from_numpy(get(bn, "beta"))
                state[f"{bn_key}.running_mean"] = torch.from_numpy(get(bn, "moving_mean"))
                state[f"{bn_key}.running_var"] = torch.from_numpy(get(bn, "moving_variance"))
                state[f"{bn_key}.num_batches_tracked"] = torch.tensor(0)
        state["fc.weight"] = torch.from_numpy(get("dense", "kernel").T.copy())  # (in, out) -> (out, in)
        state["fc.bias"] = torch.from_numpy(get("dense", "bias"))
    return state


# ------------------------------------------------------------------------------------- TFLite


class TFLiteModel(TFLiteRunner):
    """MLCommons' ResNet-8 as TFLite (:class:`TFLiteRunner`): ``run(x)`` for float images
    ``(N, 3, 32, 32)`` in raw 0..255 pixels, its output one softmax of the dense layer's logits."""

    def __init__(self, model, *, batch: int = 100) -> None:
        super().__init__(model if isinstance(model, bytes) else Path(model).read_bytes(), batch=batch)
        if self.logits is self.output:
            raise ValueError("expected the model's output to be one softmax of the logits")

    def run(self, x) -> tuple[np.ndarray, np.ndarray]:
        if tuple(np.shape(x)[1:]) != INPUT_SHAPE:
            raise ValueError(f"images of shape {np.shape(x)[1:]}, expected {INPUT_SHAPE}")
        return super().run(x)


def check_images(seed: int = 0) -> np.ndarray:
    """Float 0..255 images ``(N, 3, 32, 32)`` to compare the converted model with TFLite on:
    scikit-learn's two sample photos cut into 32x32 tiles (whole pixels, as CIFAR's) and 64
    images of uniform random pixels."""
    from sklearn.datasets import load_sample_images

    tiles = []
    for photo in load_sample_images().images:
        h, w, _ = photo.shape
        for i in range(0, h - 31, 32):
            for j in range(0, w - 31, 32):
                tiles.append(photo[i:i + 32, j:j + 32].transpose(2, 0, 1))
    noise = np.random.default_rng(seed).integers(0, 256, size=(64,) + INPUT_SHAPE)
    return np.concatenate([np.asarray(tiles), noise]).astype(np.float32)


def compare_with_tflite(model, tflite, x) -> dict:
    """Largest differences between the PyTorch model and the float TFLite model on ``x``."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x))).double().numpy()
    t_logits, t_softmax = TFLiteModel(tflite).run(x)
    softmax = torch.softmax(torch.from_numpy(logits), 1).numpy()
    return {"images": int(len(x)), "max_abs_logit_diff": float(np.max(np.abs(logits - t_logits))),
            "max_abs_softmax_diff": float(np.max(np.abs(softmax - t_softmax))),
            "max_abs_logit": float(np.max(np.abs(logits))),
            "top1_agreement": float(np.mean(logits.argmax(1) == t_logits.argmax(1)))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="a clone or bare mirror of mlcommons/tiny (git dir) to read both files from")
    parser.add_argument("--rev", default="HEAD", help="the revision of --repo (default HEAD)")
    parser.add_argument("--h5", help="pretrainedResnet.h5 (instead of --repo)")
    parser.add_argument("--tflite", help="pretrainedResnet.tflite, the float model to check against (instead of --repo)")
    parser.add_argument("-o", "--output", default=str(WEIGHTS), help=f"the state_dict to write (default {WEIGHTS})")
    parser.add_argument("--any-version", action="store_true", help="convert files whose git blob differs from BLOBS")
    args = parser.parse_args(argv)
    if args.repo:
        h5_bytes = read_from_git(args.repo, H5_PATH, args.rev)
        tflite_bytes = read_from_git(args.repo, TFLITE_PATH, args.rev)
    elif args.h5 and args.tflite:
        h5_bytes, tflite_bytes = Path(args.h5).read_bytes(), Path(args.tflite).read_bytes()
    else:
        parser.error("give --repo, or both --h5 and --tflite")
    for path, data in ((H5_PATH, h5_bytes), (TFLITE_PATH, tflite_bytes)):
        sha = git_blob_sha(data)
        print(f"{path}: git blob {sha}, {len(data)} bytes")
        if sha != BLOBS[path] and not args.any_version:
            print(f"  not the blob the committed weights come from ({BLOBS[path]}): give --any-version to convert it "
                  "anyway", file=sys.stderr)
            return 1
    state = state_dict_from_h5(h5_bytes)
    model = mlperf_resnet8()
    model.load_state_dict(state)  # strict: every key mapped, none left over
    model.eval()
    check = compare_with_tflite(model, tflite_bytes, check_images())
    print(json.dumps(check, indent=1))
    if check["max_abs_logit_diff"] > 1e-3 or check["top1_agreement"] < 1.0:
        print("the converted model does not match the TFLite model: not written", file=sys.stderr)
        return 1
    torch.save(model.state_dict(), args.output)
    print(f"wrote {args.output} (sha256 {sha256_of(args.output)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
