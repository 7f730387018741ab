"""ONNX models in: exports of the built-in models ingest as the PyTorch models do, the rest is named."""

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

import radix_models
from radix.ingest import UnsupportedModelError, ingest
from radix.onnx_import import MAX_OPSET, OnnxImportError, load_onnx


def export(model: nn.Module, shape, path, **kwargs):
    """The TorchScript exporter (``dynamo=False``), whose node names carry the module scopes;
    tests/test_user_models_onnx.py exports with the default (dynamo) one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(model.eval(), (torch.zeros((1,) + tuple(shape)),), str(path), dynamo=False,
                          input_names=["x"], **kwargs)
    return path


def builtin(name: str) -> nn.Module:
    """A built-in model with its committed weights."""
    return radix_models.load_builtin(name)


def layout(graph):
    """What the engine runs, layer by layer."""
    return [(l.name, l.kind, l.role, l.relu, l.pool, l.skip is not None, l.kernel, l.stride, l.padding, l.in_shape,
             l.out_shape) for l in graph.layers]


def random_images(shape, batch=4, seed=1):
    return torch.randn((batch,) + tuple(shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, opset", [("lenet5", None), ("digitsnet", None), ("resnet8", None),
                                         ("resnet8", 9)])  # opset 9: Pad as attributes, an empty Pad
def test_builtin_models_round_trip(name, opset, tmp_path):
    spec = radix_models.get_spec(name)
    model = builtin(name)
    module, shape = load_onnx(export(model, spec.input_shape, tmp_path / f"{name}.onnx", opset_version=opset))
    assert shape == spec.input_shape
    reference, _ = ingest(model, spec.input_shape)
    graph, findings = ingest(module, shape)
    assert all(f.supported for f in findings)
    assert layout(graph) == layout(reference)  # same layers, kinds, names (the exporter's scopes) and fusions
    x = random_images(spec.input_shape)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(graph.forward(x.numpy())[graph.output], expected, rtol=1e-5, atol=1e-5)


def test_weights_are_copied_bit_for_bit(tmp_path):
    model = radix_models.load_builtin("lenet5")  # no BatchNorm: the exporter folds nothing
    module, shape = load_onnx(export(model, (1, 28, 28), tmp_path / "lenet5.onnx"))
    reference, _ = ingest(model, shape)
    graph, _ = ingest(module, shape)
    for ours, theirs in zip(graph.layers, reference.layers):
        assert np.array_equal(ours.weight, theirs.weight) and np.array_equal(ours.bias, theirs.bias)


class Idioms(nn.Module):
    """'same' padding, a branch joined by torch.cat, F.max_pool2d, Keras-style uneven zero padding,
    global average pooling by x.mean and x.view(x.size(0), -1), exported with a dynamic batch."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding="same")
        self.b = nn.Conv2d(3, 4, 1)
        self.down = nn.Conv2d(8, 8, 3, stride=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = F.max_pool2d(torch.cat([F.relu(self.a(x)), self.b(x)], dim=1), 2)
        y = F.relu(self.down(F.pad(y, (0, 1, 0, 1))))
        y = y.mean((2, 3), keepdim=True)
        return self.fc(y.view(y.size(0), -1))


@pytest.mark.parametrize("opset", [9, 13, 20])  # Squeeze/Unsqueeze/Pad operands move to inputs in between
def test_dynamic_batch_and_idioms(tmp_path, opset):
    model = Idioms().eval()
    path = export(model, (3, 12, 12), tmp_path / "idioms.onnx", dynamic_axes={"x": {0: "N"}}, opset_version=opset)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    module, shape = load_onnx(path)
    assert shape == (3, 12, 12)
    graph, findings = ingest(module, shape)
    assert all(f.supported for f in findings)
    reference, _ = ingest(model, shape)
    # functions get their own names (the pooling after the concatenation is an identity layer)
    assert [entry[1:] for entry in layout(graph)] == [entry[1:] for entry in layout(reference)]
    assert [l.name for l in graph.layers if not l.role and l.kind != "concat"] == ["a", "b", "down", "fc"]
    x = random_images((3, 12, 12), batch=5)
    with torch.no_grad():
        expected = model(x).numpy()
        np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph.forward(x.numpy())[graph.output], expected, rtol=1e-5, atol=1e-5)


def model_proto(nodes, initializers, output_shape, *, inputs=None, opset=17):
    """A hand-built ONNX model of one float image input ``x`` (N, 1, 8, 8) and one output ``y``."""
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name)
                               for name, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(model, path):
    onnx.save(model, str(path))
    return path


def test_other_exporters_forms_match_onnx_semantics(tmp_path):
    """auto_pad SAME_UPPER (uneven), an unfused BatchNormalization, Clip as ReLU, GlobalAveragePool
    then Squeeze, MatMul plus a constant Add (a bias) and a final Softmax: checked against ONNX's
    own reference implementation."""
    rng = np.random.default_rng(0)
    init = {"w": rng.normal(size=(4, 1, 3, 3)), "scale": rng.uniform(0.5, 1.5, 4), "shift": rng.normal(size=4),
            "mean": rng.normal(size=4), "var": rng.uniform(0.5, 1.5, 4), "zero": 0.0, "axes": [2, 3],
            "m": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2], name="/features/conv/Conv"),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], epsilon=1e-3),
        helper.make_node("Clip", ["n", "zero"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Squeeze", ["p", "axes"], ["s"]),
        helper.make_node("MatMul", ["s", "m"], ["mm"], name="/head/fc/MatMul"),
        helper.make_node("Add", ["mm", "b"], ["logits"], name="/head/fc/Add"),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    init["axes"] = np.asarray(init["axes"], dtype=np.int64)
    model = model_proto(nodes, {k: v for k, v in init.items() if k != "axes"}, ["N", 3])
    model.graph.initializer.append(numpy_helper.from_array(init["axes"], "axes"))
    module, shape = load_onnx(save(model, tmp_path / "hand.onnx"))
    assert shape == (1, 8, 8)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert module.get_submodule("head.fc").bias is not None  # the Add became the Linear's bias
    graph, findings = ingest(module, shape)
    assert [(l.name, l.kind, l.padding, l.relu) for l in graph.layers] == [
        ("features.conv", "conv", (0, 0, 1, 1), True), ("head.fc", "fc", (0, 0, 0, 0), False)]
    assert any(f.type == "Softmax" and "dropped" in f.reason for f in findings)


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.Sigmoid()
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


def test_unsupported_operator_is_refused_by_name(tmp_path):
    module, shape = load_onnx(export(WithSigmoid(), (1, 8, 8), tmp_path / "sigmoid.onnx"))
    with pytest.raises(UnsupportedModelError) as info:
        ingest(module, shape)
    assert "act (Sigmoid): not supported by the engine" in str(info.value)


def test_operator_without_pytorch_form_is_refused_by_name(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv"),
             helper.make_node("Sin", ["c"], ["s"]),
             helper.make_node("Flatten", ["s"], ["f"]),
             helper.make_node("Gemm", ["f", "m"], ["y"], transB=1, name="/fc/Gemm")]
    model = model_proto(nodes, {"w": np.ones((2, 1, 3, 3)), "m": np.ones((3, 72))}, ["N", 3])
    module, shape = load_onnx(save(model, tmp_path / "sin.onnx"))
    with pytest.raises(UnsupportedModelError) as info:
        ingest(module, shape)
    assert "sin (Sin): not supported by the engine" in str(info.value)
    with pytest.raises(NotImplementedError, match="ONNX operator Sin"):
        module(torch.zeros(1, 1, 8, 8))


def test_not_an_onnx_file_is_named(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("def model():\n    return None\n")
    with pytest.raises(OnnxImportError, match=f"^{path}: not an ONNX model"):
        load_onnx(path)
    with pytest.raises(OnnxImportError, match=f"^{tmp_path / 'missing.onnx'}: cannot read: No such file"):
        load_onnx(tmp_path / "missing.onnx")


def test_more_than_one_input_is_named(tmp_path):
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, 8, 8]) for name in ("image", "mask")]
    model = model_proto([helper.make_node("Add", ["image", "mask"], ["y"])], {}, [1, 1, 8, 8], inputs=inputs)
    path = save(model, tmp_path / "two.onnx")
    with pytest.raises(OnnxImportError, match=r"two.onnx: the model has 2 inputs \('image', 'mask'\)"):
        load_onnx(path)


@pytest.mark.parametrize("opset", [7, MAX_OPSET + 1])
def test_unsupported_opset_is_named(tmp_path, opset):
    model = model_proto([helper.make_node("Relu", ["x"], ["y"])], {}, ["N", 1, 8, 8], opset=opset)
    path = save(model, tmp_path / "old.onnx")
    with pytest.raises(OnnxImportError, match=f"old.onnx: ONNX opset {opset} is not supported"):
        load_onnx(path)


def test_dynamic_image_size_gives_no_shape(tmp_path):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])]
    model = model_proto([helper.make_node("Relu", ["x"], ["y"])], {}, ["N", 1, "H", "W"], inputs=inputs)
    module, shape = load_onnx(save(model, tmp_path / "dyn.onnx"))
    assert shape is None
    assert torch.equal(module(torch.tensor([[[[-1.0, 2.0]]]])), torch.tensor([[[[0.0, 2.0]]]]))


class SeparableNet(nn.Module):
    """MobileNetV1's depthwise-separable block and DS-CNN's rectangular front: a 10x4 stride-2
    convolution, a depthwise 3x3 (groups = C) with BatchNorm and ReLU, a pointwise 1x1, a grouped
    3x3 with a depth multiplier of 2, a global pool and a classifier."""

    def __init__(self):
        super().__init__()
        self.front = nn.Sequential(nn.Conv2d(1, 8, (10, 4), stride=2, padding=(4, 1)), nn.BatchNorm2d(8), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU())
        self.pointwise = nn.Sequential(nn.Conv2d(8, 12, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(12, 24, 3, stride=(2, 1), padding=1, groups=4), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 6))

    def forward(self, x):
        return self.head(self.grouped(self.pointwise(self.depthwise(self.front(x)))))


def test_grouped_and_rectangular_convolutions_round_trip(tmp_path):
    model = SeparableNet().eval()
    for module in model.modules():  # statistics that matter when folded
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    shape = (1, 49, 10)
    module, got_shape = load_onnx(export(model, shape, tmp_path / "separable.onnx"))
    reference, _ = ingest(model, shape)
    graph, findings = ingest(module, got_shape)
    assert all(f.supported for f in findings)
    assert layout(graph) == layout(reference)
    assert [(l.groups, l.kernel, l.stride) for l in graph.layers if l.kind == "conv"] == [
        (1, (10, 4), (2, 2)), (8, (3, 3), (1, 1)), (1, (1, 1), (1, 1)), (4, (3, 3), (2, 1))]
    x = random_images(shape)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(graph.forward(x.numpy())[graph.output], expected, rtol=1e-5, atol=1e-5)
