"""Tests for the built-in models: registry, architectures and committed weights."""

import operator

import numpy as np
import pytest
import torch
from torch import nn

from radix.datasets import load_split
from radix.engine_spec import DEFAULT_CONFIG
from radix.ingest import ingest
from radix_models import BUILTIN_MODELS, UnknownModelError, load_builtin
from radix_models.train import RECIPES, random_recolour, split_score, train

# resnet8: the 95% the training recipe was designed to reach on mnist32rgb. mobilenet_vww: 90.4%
# committed (MLPerf's quality target on the real Visual Wake Words is 80%). The autoencoder's
# score is the ROC AUC of its reconstruction error on machine640's normal and anomalous halves.
ACCURACY_FLOOR = {"lenet5": 0.97, "digitsnet": 0.95, "resnet8": 0.95, "vggnet": 0.97,
                  "mobilenet_vww": 0.88, "dscnn": 0.95, "autoencoder": 0.95}


def test_registry_specs():
    assert set(BUILTIN_MODELS) == set(ACCURACY_FLOOR)
    for name, spec in BUILTIN_MODELS.items():
        assert spec.name == name
        assert spec.weights.is_file()
        x, _ = load_split(spec.dataset, "test")
        assert x.shape[1:] == spec.input_shape


def test_lenet5_layers():
    layers = dict(BUILTIN_MODELS["lenet5"].factory().named_modules())
    assert isinstance(layers["features.0"], torch.nn.Conv2d)
    assert isinstance(layers["features.3"], torch.nn.Conv2d)
    assert [layers[f"classifier.{i}"].out_features for i in (1, 3, 5)] == [120, 84, 10]


def test_digitsnet_has_trained_batchnorm():
    bn = load_builtin("digitsnet").features[1]
    assert isinstance(bn, torch.nn.BatchNorm2d)
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_vggnet_is_supported_and_its_layers_span_several_tiles():
    graph, _ = ingest(load_builtin("vggnet"), BUILTIN_MODELS["vggnet"].input_shape)  # what `radix check` runs
    layers = graph.engine_layers()
    assert [(layer.kind, layer.out_shape) for layer in layers] == [
        ("conv", (32, 28, 28)), ("conv", (32, 14, 14)), ("conv", (64, 14, 14)), ("conv", (64, 7, 7)), ("fc", (10,))]
    rows, cols = DEFAULT_CONFIG.rows, DEFAULT_CONFIG.cols
    for layer in layers[:4]:
        # why the model exists: every convolution has more than one tile of output columns, and
        # all but the first more than one tile of input rows
        assert -(-layer.out_shape[0] // cols) >= 2
    assert all(layer.in_shape[0] > rows for layer in layers[1:4])


def _conv_and_linear(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_resnet8_parameter_count():
    model = BUILTIN_MODELS["resnet8"].factory()
    # Convolutions and the dense layer, weights and biases, as in the Keras reference...
    assert sum(p.numel() for m in _conv_and_linear(model) for p in m.parameters()) == 77_706
    # ...plus BatchNorm's scale and shift: 78,186 trainable (Keras: 78,666 with the BN statistics).
    assert sum(p.numel() for p in model.parameters()) == 78_186


def test_resnet8_layer_shapes_and_macs():
    model = BUILTIN_MODELS["resnet8"].factory().eval()
    shapes, macs = {}, []

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape[1:])
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                macs.append(output.numel() * module.weight[0].numel())

        return hook

    for name, module in model.named_modules():
        module.register_forward_hook(record(name))
    model(torch.zeros(1, 3, 32, 32))
    assert shapes["stem"] == shapes["stack1"] == (16, 32, 32)
    assert shapes["stack2.conv1.0"] == (16, 33, 33)  # Keras "same": one row and column, after
    assert shapes["stack2"] == shapes["stack2.shortcut"] == (32, 16, 16)
    assert shapes["stack3"] == shapes["stack3.shortcut"] == (64, 8, 8)
    assert shapes["pool"] == (64, 1, 1) and shapes[""] == (10,)
    assert isinstance(model.stack1.shortcut, nn.Identity)
    for stack in (model.stack2, model.stack3):
        assert stack.shortcut.kernel_size == (1, 1) and stack.shortcut.stride == (2, 2)
        assert stack.shortcut.bias is not None
    assert sum(macs) == 12_501_632


def test_resnet8_traces_with_fx():
    model = load_builtin("resnet8")
    traced = torch.fx.symbolic_trace(model)
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and n.target is operator.add]
    assert len(adds) == 3
    x = torch.from_numpy(load_split("mnist32rgb", "test")[0][:4])
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


def test_resnet8_init_is_he_normal_with_zero_bias():
    torch.manual_seed(0)
    for module in _conv_and_linear(BUILTIN_MODELS["resnet8"].factory()):
        std = (2 / module.weight[0].numel()) ** 0.5 / 0.87962566103423978
        assert module.weight.abs().max() <= 2 * std and not module.bias.any()


def test_resnet8_has_trained_batchnorm():
    for name, bn in load_builtin("resnet8").named_modules():
        if isinstance(bn, nn.BatchNorm2d):
            assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)), name


def test_random_recolour_permutes_and_inverts_channels():
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    first, second = (random_recolour(x, torch.Generator().manual_seed(2)) for _ in range(2))
    assert torch.equal(first, second)
    for image, out in zip(x, first):
        sources = [
            next(c for c in range(3) if torch.equal(o, image[c]) or torch.equal(o, 1 - image[c]))
            for o in out
        ]
        assert sorted(sources) == [0, 1, 2]


@pytest.mark.parametrize("name", ACCURACY_FLOOR)
def test_builtin_reaches_accuracy_floor(name):
    spec = BUILTIN_MODELS[name]
    model = load_builtin(name)
    assert not model.training
    x, y = load_split(spec.dataset, "test")
    out = model(torch.from_numpy(x[:2]))
    assert out.shape == ((2,) + spec.input_shape if RECIPES[name].reconstruct else (2, len(np.unique(y))))
    assert split_score(spec, model, x, y) >= ACCURACY_FLOOR[name]


def test_unknown_model_names_it_and_lists_known():
    with pytest.raises(UnknownModelError) as info:
        load_builtin("resnet50")
    assert isinstance(info.value, KeyError)
    assert "resnet50" in str(info.value)
    assert all(name in str(info.value) for name in BUILTIN_MODELS)


@pytest.fixture
def one_thread():
    """Train on one thread, as the training script does (and fast on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_is_deterministic(one_thread, capsys):
    spec = BUILTIN_MODELS["digitsnet"]
    first, second = (train(spec, epochs=1, seed=3).state_dict() for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert "epoch   1/1" in capsys.readouterr().out


@pytest.mark.parametrize("factory, shape, macs, depthwise", [
    ("mobilenet_vww", (3, 96, 96), 7_493_760, 13),  # MLPerf Tiny: 7.49 M MACs
    ("dscnn", (1, 49, 10), 2_752_000, 4),  # the 25x5 pool folded into the classifier counted
    ("autoencoder", (640,), 264_192, 0),
])
def test_mlperf_tiny_topologies_ingest_with_their_mac_counts(factory, shape, macs, depthwise):
    """The reference topologies as Keras defines them ingest whole: every depthwise layer is one
    grouped engine layer (groups = C), and the multiply-accumulates are the published ones."""
    import radix_models.mlperf_tiny as tiny

    graph, findings = ingest(getattr(tiny, factory)(), shape)
    assert all(f.supported for f in findings)
    layers = graph.engine_layers()
    count = sum(int(np.prod(l.weight.shape)) * (int(np.prod(l.out_shape[1:])) if l.kind == "conv" else 1)
                for l in layers)
    assert count == macs
    assert sum(l.groups == l.in_shape[0] == l.out_shape[0] > 1 for l in layers) == depthwise
