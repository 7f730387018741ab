"""MLCommons' VWW, KWS and AD models converted to Radix's factories (radix_models.convert_mlperf_tiny).

These run without ai-edge-litert or h5py: they check the committed state_dicts (hash, strict load,
ingestion, sane outputs) and the converter's operator-to-layer mapping on TFLite-like graphs built
here from the committed weights, not on the TFLite files (the converter itself checks those).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from radix.ingest import ingest
from radix_models import convert_mlperf_tiny as conv

# printed by `python -m radix_models.convert_mlperf_tiny --repo PATH/TO/tiny` (models/README.md)
SHA256 = {
    "vww": "05bd5844514ca3f9b31b877723b7e3576c60128202cb35e8fad9f9d6c8bcbbe9",
    "kws": "7781892413f90446d1c161c342b2fe5702f36a51e80e1ae54773295688c56080",
    "ad": "10c21c9ca32793ffecfbe269805ffed2d7504f5a701044ef70acfe0a1fab0d78",
}
NAMES = list(conv.MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_committed_file_is_the_converted_one(name):
    assert hashlib.sha256(conv.MODELS[name].weights.read_bytes()).hexdigest() == SHA256[name]


@pytest.mark.parametrize("name", NAMES)
def test_loads_strictly_into_its_factory(name):
    spec = conv.MODELS[name]
    model = spec.factory()
    state = torch.load(spec.weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    assert list(state) == list(model.state_dict())
    # the converter's form: every BatchNorm is an identity (mean 0, var 1, weight sqrt(1 + eps)) plus a bias
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            assert torch.all(module.running_mean == 0) and torch.all(module.running_var == 1)
            assert torch.allclose(module.weight, torch.full_like(module.weight, (1 + module.eps) ** 0.5))


@pytest.mark.parametrize("name", NAMES)
def test_ingests_with_every_finding_supported(name):
    spec = conv.MODELS[name]
    graph, findings = ingest(conv.load_converted(name), spec.input_shape)
    assert findings and all(f.supported for f in findings), [f for f in findings if not f.supported]
    assert graph.input_shape == tuple(spec.input_shape)


def test_vww_on_photos_is_finite_and_not_constant():
    from radix.datasets import load_split

    x = np.asarray(load_split("digitwake96", "test")[0][:16])
    logits = conv.torch_outputs(conv.load_converted("vww"), x)
    assert logits.shape == (16, 2) and np.all(np.isfinite(logits))
    assert np.ptp(logits[:, 1] - logits[:, 0]) > 1e-3  # the images are told apart


@pytest.mark.parametrize("name", ["kws", "ad"])
def test_outputs_on_random_inputs_are_finite_and_not_constant(name):
    spec = conv.MODELS[name]
    lo, hi = spec.random_range
    x = np.random.default_rng(0).uniform(lo, hi, (8,) + spec.input_shape).astype(np.float32)
    out = conv.torch_outputs(conv.load_converted(name), x)
    assert np.all(np.isfinite(out)) and np.ptp(out, axis=0).max() > 1e-3


@pytest.mark.parametrize("size, kernel, stride, pads", [(49, 10, 2, (4, 5)), (10, 4, 2, (1, 1)), (96, 3, 2, (0, 1)),
                                                        (48, 3, 1, (1, 1)), (6, 1, 1, (0, 0))])
def test_tensorflow_same_padding(size, kernel, stride, pads):
    assert conv._same_padding(size, kernel, stride) == pads


# ------------------------------------------------- the mapping, on TFLite-like graphs built here


def _fake_tflite(name: str, *, activation: str = "RELU", conv_padding: str = "SAME") -> conv.TFLiteGraph:
    """The TFLite graph the converter would read for the committed weights: BatchNorm folded (an
    identity plus the bias here), NHWC tensors, the factory's ops in order, a final softmax."""
    spec = conv.MODELS[name]
    model = conv.load_converted(name)
    state = {k: v.double().numpy() for k, v in model.state_dict().items()}
    counter = iter(range(10_000))

    def tensor(shape, data=None):
        return conv.TensorInfo(next(counter), f"t{len(shape)}", tuple(shape), "FLOAT32", data)

    shape = spec.input_shape
    nhwc = lambda s: (1, s[1], s[2], s[0]) if len(s) == 3 else (1,) + tuple(s)  # noqa: E731
    first = tensor(nhwc(shape))
    ops, current = [], first
    for layer in conv.factory_layers(model):
        m = layer.module
        if layer.kind in ("conv", "fc"):
            w = state[f"{layer.name}.weight"]
            b = state[f"{layer.bn[0]}.bias"] if layer.bn and m.bias is None else state[f"{layer.name}.bias"]
            act = activation if layer.relu else "NONE"
            if layer.kind == "fc":
                kind, weight, options = "FULLY_CONNECTED", w, {"fusedActivationFunction": act, "keepNumDims": False}
                shape = (w.shape[0],)
            else:
                depthwise = m.groups > 1
                kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
                weight = w.transpose(1, 2, 3, 0) if depthwise else w.transpose(0, 2, 3, 1)
                c, h, wd = shape
                stride = m.stride
                options = {"padding": conv_padding, "strideH": stride[0], "strideW": stride[1],
                           "fusedActivationFunction": act, "depthMultiplier": 1}
                shape = (w.shape[0], -(-h // stride[0]), -(-wd // stride[1]))
            out = tensor(nhwc(shape))
            ops.append(conv.TFLiteOp(len(ops), kind, options, [current, tensor(weight.shape, weight), tensor(b.shape, b)],
                                     [out]))
        elif layer.kind == "pool":
            c, h, wd = shape
            options = {"padding": "VALID", "filterHeight": h, "filterWidth": wd, "strideH": h, "strideW": wd,
                       "fusedActivationFunction": "NONE"}
            shape = (c, 1, 1)
            out = tensor(nhwc(shape))
            ops.append(conv.TFLiteOp(len(ops), "AVERAGE_POOL_2D", options, [current], [out]))
        else:
            shape = (shape[0],)
            out = tensor(nhwc(shape))
            ops.append(conv.TFLiteOp(len(ops), "RESHAPE", {}, [current, tensor((2,))], [out]))
        current = out
    if spec.task == "classify":
        out = tensor(current.shape)
        ops.append(conv.TFLiteOp(len(ops), "SOFTMAX", {"beta": 1.0}, [current], [out]))
        current = out
    return conv.TFLiteGraph(ops, first, current)


@pytest.mark.parametrize("name", NAMES)
def test_mapping_round_trips_the_committed_weights(name):
    spec = conv.MODELS[name]
    result = conv.convert(_fake_tflite(name), spec.factory(), spec.input_shape)
    committed = conv.load_converted(name).state_dict()
    assert list(result.state) == list(committed) and result.hybrid == []
    for key, value in committed.items():
        assert torch.equal(result.state[key], value), key


def test_a_relu6_is_refused_naming_the_layer():
    with pytest.raises(conv.ConversionError, match=r"TFLite operator 0 CONV_2D .* factory layer 1 \(Conv2d\): "
                                                   r"fused activation RELU6, the factory has nn.ReLU"):
        conv.convert(_fake_tflite("kws", activation="RELU6"), conv.MODELS["kws"].factory(), (1, 49, 10))


def test_a_different_padding_is_refused_naming_the_layer():
    with pytest.raises(conv.ConversionError, match=r"TFLite operator 0 CONV_2D .* factory layer 1 \(Conv2d\): "
                                                   r"TensorFlow pads VALID"):
        conv.convert(_fake_tflite("kws", conv_padding="VALID"), conv.MODELS["kws"].factory(), (1, 49, 10))


def test_a_different_topology_is_refused():
    graph = _fake_tflite("ad")
    with pytest.raises(conv.ConversionError, match="operators before any softmax"):
        conv.convert(graph, conv.MODELS["kws"].factory(), (1, 49, 10))
