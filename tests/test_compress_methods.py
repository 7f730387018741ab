"""The compression methods one by one, on small models and few images (seconds, not minutes)."""

import numpy as np
import pytest
import torch
from radix.engine_spec import EngineConfig
from torch import nn

from radix.compress import CompressionError, channels, prune, share, svd, ttq
from radix.calibrate import CalibrationSettings
from radix.compress.flow import State, check_methods, engine_figures, engine_program
from radix.compress.training import FineTune, TrainingData, evaluate, fine_tune, prepare, weight_layers, zeros_kept
from radix.errors import InputError
from radix_models import load_builtin

torch.set_num_threads(1)
QUICK = FineTune(epochs=1, lr=1e-3, show_progress=False)


@pytest.fixture(scope="module")
def digits():
    data, _ = TrainingData.load("digits", images=400, validation_images=200, classes=10)
    return data


def state_of(model, shape=(1, 8, 8)) -> State:
    return State(module=prepare(model), input_shape=shape)


def test_prepare_folds_batchnorm_and_keeps_the_function(digits):
    model = load_builtin("digitsnet")
    module = prepare(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    with torch.no_grad():
        torch.testing.assert_close(module(digits.x_test), model(digits.x_test), atol=1e-5, rtol=1e-5)


def test_pruning_reaches_the_sparsity_and_masks_stay_zero(digits):
    state = state_of(load_builtin("digitsnet"))
    sizes = {name: layer.weight.numel() for name, layer in weight_layers(state.module)}
    report = prune.apply(state, prune.Prune(sparsity=0.6, steps=2), digits, QUICK, stage=1)
    nonzero = sum(int(torch.count_nonzero(layer.weight)) for _, layer in weight_layers(state.module))
    total = sum(sizes.values())
    # removed dead channels only ever take more weights away: at least the requested zeros
    assert nonzero <= total - round(0.6 * total) and report["sparsity"] == 1 - nonzero / total
    assert len({round(entry["sparsity"], 2) for entry in report["layers"].values()}) > 1  # per-layer sensitivity
    zeros = {name: (layer.weight == 0).clone() for name, layer in weight_layers(state.module)}
    with zeros_kept(state.module, list(zeros)):
        fine_tune(state.module, digits, FineTune(epochs=2, lr=1e-2, show_progress=False), desc="t")
    for name, layer in weight_layers(state.module):
        assert torch.all(layer.weight[zeros[name]] == 0), name
        assert torch.any(layer.weight[~zeros[name]] != 0)


def test_sensitivity_allocation_hits_the_count_exactly():
    curves = {"a": np.array([0, 0, 0.1, 0.2, 0.5, 1, 2, 3, 4.0]), "b": np.zeros(9), "c": np.linspace(0, 8, 9)}
    sizes = {"a": 1000, "b": 333, "c": 17}
    counts = prune.allocate(curves, sizes, 0.7)
    assert sum(counts.values()) == round(0.7 * 1350)
    assert counts["b"] / 333 >= counts["a"] / 1000 >= counts["c"] / 17  # the insensitive layer gives most


def test_dead_channels_are_removed_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 81, 7), nn.ReLU(),
                          nn.Linear(7, 3))
    with torch.no_grad():
        model[0].weight[1] = 0  # no inputs, bias folds into the Linear
        model[0].bias[1] = 0.7
        model[4].weight[:, 3 * 81: 4 * 81] = 0  # channel 3 is read by nobody
        model[6].weight[:, 2] = 0  # neuron 2 of the first Linear is read by nobody
    state = state_of(model, (1, 20, 20))
    x = torch.rand(5, 1, 20, 20)
    expected = state.module(x)
    removed = channels.remove_dead(state)
    assert removed == {"0": {"channels": 6, "kept": 4}, "4": {"channels": 7, "kept": 6}}
    torch.testing.assert_close(state.module(x), expected, atol=1e-5, rtol=1e-5)


def test_channel_pruning_removes_the_macs_in_whole_tiles(digits):
    state = state_of(load_builtin("digitsnet"))
    before = sum(channels.layer_macs(state.module, (1, 8, 8)).values())
    report = channels.apply(state, channels.PruneChannels(fraction=0.5, cols=4), digits, QUICK, stage=1)
    after = sum(channels.layer_macs(state.module, (1, 8, 8)).values())
    assert after <= 0.5 * before and report["macs_after"] == after
    for name, entry in report["layers"].items():
        kept = entry["kept"]
        assert kept % 4 == 0 or kept < 4, (name, kept)  # whole 4-column tiles above one tile
        assert state.module.get_submodule(name).weight.shape[0] == kept
    assert report["layers"]
    assert state.module.get_submodule("features.4").in_channels == state.module.get_submodule("features.0").out_channels
    assert evaluate(state.module, digits.x_test, digits.y_test)[1] > 0.5


def _array_passes(module: nn.Module) -> int:
    """Passes of the default array per output pixel, summed over the convolutions: input tiles x
    output tiles x kernel positions."""
    rows, cols = EngineConfig().rows, EngineConfig().cols
    return sum(-(-m.in_channels // rows) * -(-m.out_channels // cols) * m.kernel_size[0] * m.kernel_size[1]
               for m in module.modules() if isinstance(m, nn.Conv2d))


def test_channel_pruning_of_vggnet_removes_array_tiles_and_cycles():
    data, _ = TrainingData.load("mnist5k", images=200, validation_images=100, classes=10)
    state = state_of(load_builtin("vggnet"), (1, 28, 28))
    probe = data.x_train[:4].numpy()
    settings = CalibrationSettings(bits=8, activation_rule="maxabs")
    before = engine_figures(engine_program(state.module, (1, 28, 28), probe, settings)[0])
    passes = _array_passes(state.module)
    channels.apply(state, channels.PruneChannels(fraction=0.6), data, FineTune(epochs=0, show_progress=False), stage=1)
    after = engine_figures(engine_program(state.module, (1, 28, 28), probe, settings)[0])
    assert after["conv_macs"] <= 0.4 * before["conv_macs"]
    assert _array_passes(state.module) <= 0.5 * passes, (passes, _array_passes(state.module))
    # whole tiles gone: the analytic cycle model (radix.cycle_model) falls by a third or more
    assert after["cycles"] <= 0.67 * before["cycles"], (before["cycles"], after["cycles"])
    for name, layer in weight_layers(state.module):
        if isinstance(layer, nn.Conv2d) and layer.out_channels > 16:
            assert layer.out_channels % EngineConfig().cols == 0 or layer.out_channels % 16 == 0, (
                name, layer.out_channels)


def test_channel_counts_step_down_to_the_array():
    # 16 x 22 (W=8): every step empties a whole 22-column output tile or a whole 16-row input tile
    assert [channels.next_count(c, 22, 16) for c in (64, 48, 44, 32, 22, 20, 16, 1)] == [48, 44, 32, 22, 16, 16, 15, 0]
    # 16 x 11 (W=16)
    assert [channels.next_count(c, 11, 16) for c in (120, 22, 16, 12, 11, 6, 1)] == [112, 16, 11, 11, 10, 5, 0]


def test_svd_of_full_rank_reproduces_the_layer():
    torch.manual_seed(1)
    linear, conv = nn.Linear(20, 12), nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x, image = torch.randn(4, 20), torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(svd.factorise(linear, 12)(x), linear(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(svd.factorise(conv, 5)(image), conv(image), atol=1e-5, rtol=1e-5)
        low = svd.factorise(linear, 3)
    assert low[0].weight.shape == (3, 20) and low[1].weight.shape == (12, 3) and low[0].bias is None
    singular = torch.linalg.svdvals(linear.weight.double())
    error = torch.linalg.matrix_norm(low[1].weight.double() @ low[0].weight.double() - linear.weight.double())
    torch.testing.assert_close(error, torch.sqrt(torch.sum(singular[3:] ** 2)), atol=1e-5, rtol=1e-5)  # Eckart-Young


def test_svd_energy_rank_and_the_flow(digits):
    singular = torch.tensor([4.0, 2.0, 1.0, 1.0])
    assert svd.choose_rank(singular, svd.LowRank(energy=0.9)) == 2  # (16 + 4) / 22 = 0.91
    state = state_of(load_builtin("lenet5"), (1, 28, 28))
    state.sparse.add("classifier.1")
    report = svd.apply(state, svd.LowRank(rank=9), TrainingData.load("mnist5k", images=200)[0],
                       FineTune(epochs=0), stage=1)
    names = [name for name, _ in weight_layers(state.module)]
    assert "classifier.1.0" in names and "classifier.1.1" in names and "classifier.1" not in names
    assert "kept" in report["layers"]["classifier.5"]  # 9 * (84 + 10) > 840: no saving
    assert state.warnings and "classifier.1" not in state.sparse


def test_ttq_gradients_are_the_papers():
    latent = torch.tensor([0.9, -0.8, 0.01, 0.5, -0.02], requires_grad=True)
    wp, wn = torch.tensor(0.3, requires_grad=True), torch.tensor(0.2, requires_grad=True)
    keep = torch.tensor([True, True, True, True, False])
    out = ttq._Ternarize.apply(latent, wp, wn, torch.tensor(0.05), keep)
    torch.testing.assert_close(out, torch.tensor([0.3, -0.2, 0.0, 0.3, 0.0]))
    grad = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    out.backward(grad)
    torch.testing.assert_close(wp.grad, torch.tensor(5.0))  # sum over the positive set
    torch.testing.assert_close(wn.grad, torch.tensor(-2.0))  # minus the sum over the negative set
    torch.testing.assert_close(latent.grad, torch.tensor([0.3, 0.4, 3.0, 1.2, 0.0]))


def test_ttq_layers_hold_three_values_and_the_ends_stay_full_precision(digits):
    state = state_of(load_builtin("lenet5"), (1, 28, 28))
    data = TrainingData.load("mnist5k", images=300)[0]
    report = ttq.apply(state, ttq.Ternary(), data, QUICK, stage=1)
    layers = dict(weight_layers(state.module))
    assert report["full_precision_layers"] == ["features.0", "classifier.5"]
    for name in ("features.3", "classifier.1", "classifier.3"):
        values = torch.unique(layers[name].weight)
        scales = report["layers"][name]
        torch.testing.assert_close(values, torch.tensor([-scales["wn"], 0.0, scales["wp"]]))
    assert torch.unique(layers["features.0"].weight).numel() > 3


def test_kmeans_matches_a_naive_reference():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(-0.3, 0.05, 300), rng.normal(0.2, 0.1, 500), rng.uniform(-1, 1, 20)])
    centroids, assignment = share.kmeans_1d(values, 8)
    naive_c = list(np.linspace(values.min(), values.max(), 8))
    naive_a = None
    for _ in range(share.KMEANS_ITERATIONS):
        new = [min(range(8), key=lambda k: (abs(v - naive_c[k]), k)) for v in values]
        if new == naive_a:
            break
        naive_a = new
        for k in range(8):
            members = [v for v, a in zip(values, naive_a) if a == k]
            if members:
                naive_c[k] = sum(members) / len(members)
    assert assignment.tolist() == naive_a
    np.testing.assert_allclose(centroids, naive_c, rtol=1e-12, atol=1e-12)


def test_shared_weights_keep_zeros_and_train_the_centroids(digits):
    state = state_of(load_builtin("digitsnet"))
    prune.apply(state, prune.Prune(sparsity=0.5, steps=1), digits, FineTune(epochs=0), stage=1)
    zeros = {name: (layer.weight == 0).clone() for name, layer in weight_layers(state.module)}
    report = share.apply(state, share.Share(bits=3), digits, QUICK, stage=2)
    for name, layer in weight_layers(state.module):
        assert torch.equal(layer.weight == 0, zeros[name]), name
        assert torch.unique(layer.weight[layer.weight != 0]).numel() == report["layers"][name]["codebook"] <= 8
    centroids, index, keep = share.codebook_for(torch.tensor([[-1.0, 0.0, 1.0], [1.1, -0.9, 0.0]]), 1)
    weight = share.SharedWeight(centroids, index, keep)
    out = weight(torch.zeros(2, 3))
    out.backward(torch.tensor([[1.0, 5.0, 2.0], [3.0, 4.0, 7.0]]))
    torch.testing.assert_close(weight.centroids.grad, torch.tensor([1.0 + 4.0, 2.0 + 3.0]))  # members' sums


def test_method_order_is_checked():
    with pytest.raises(CompressionError, match="--share must come last"):
        check_methods([share.Share(bits=4), prune.Prune(sparsity=0.5)])
    with pytest.raises(CompressionError, match="give one of them"):
        check_methods([ttq.Ternary(), share.Share(bits=4)])
    with pytest.raises(CompressionError, match="--prune given 2 times"):
        check_methods([prune.Prune(sparsity=0.5), prune.Prune(sparsity=0.7)])
    check_methods([channels.PruneChannels(fraction=0.3), svd.LowRank(rank=4), prune.Prune(sparsity=0.5),
                   share.Share(bits=5)])


@pytest.mark.parametrize("build, message", [
    (lambda: prune.Prune(sparsity=1.0), r"--prune 1.0: the sparsity must be in \(0, 0.99\]"),
    (lambda: channels.PruneChannels(fraction=0), "--prune-channels 0"),
    (lambda: svd.LowRank(rank=4, energy=0.9), "give exactly one"),
    (lambda: ttq.Ternary(full_precision="middle"), "--ttq-full-precision 'middle'"),
    (lambda: share.Share(bits=9), "--share 9"),
    (lambda: FineTune(epochs=-1), "--epochs -1"),
])
def test_parameters_are_validated(build, message):
    with pytest.raises(CompressionError, match=message) as info:
        build()
    assert isinstance(info.value, InputError)  # the CLI maps it to exit status 2
