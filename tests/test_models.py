"""Tests for the built-in models: registry, architectures and committed weights."""

import pytest
import torch

from radix.datasets import load_split
from radix_models import BUILTIN_MODELS, UnknownModelError, load_builtin
from radix_models.train import accuracy, train

ACCURACY_FLOOR = {"lenet5": 0.97, "digitsnet": 0.95}


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


@pytest.mark.parametrize("name", ACCURACY_FLOOR)
def test_builtin_reaches_accuracy_floor(name):
    spec = BUILTIN_MODELS[name]
    model = load_builtin(name)
    assert not model.training
    x, y = load_split(spec.dataset, "test")
    out = model(torch.from_numpy(x[:2]))
    assert out.shape == (2, 10)
    assert accuracy(model, x, y) >= ACCURACY_FLOOR[name]


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
