"""Whole networks and random layers through the host driver and the RTL simulation (sim backend)."""

import json

import pytest

from radix import golden, network
from radix.calibrate import CalibrationSettings, calibrate
from radix.cli import main
from radix.datasets import load_split
from radix.engine_spec import EngineConfig
from radix.ingest import ingest
from radix.program import INPUT, Program
from radix_models import get_spec, load_builtin
from radix_sim.hostrun import SimulationError, run_host


@pytest.fixture(scope="module")
def digits_program(tmp_path_factory):
    x, _ = load_split("digits", "train")
    graph, _ = ingest(load_builtin("digitsnet"), (1, 8, 8))
    path = tmp_path_factory.mktemp("prog") / "digitsnet.radix"
    calibrate(graph, x, CalibrationSettings(bits=8)).save(path)
    return path


@pytest.fixture(scope="module")
def resnet8_program(tmp_path_factory):
    spec = get_spec("resnet8")
    x, _ = load_split(spec.dataset, "train")
    graph, _ = ingest(load_builtin("resnet8"), spec.input_shape)
    path = tmp_path_factory.mktemp("prog") / "resnet8.radix"
    calibrate(graph, x[:200], CalibrationSettings(bits=8)).save(path)
    return path


def unsigned_where_non_negative(program: Program) -> Program:
    """``program`` with its input (non-negative images) and every ReLU output unsigned, each one
    bit finer (fl + 1: the range the sign bit gave up, docs/arithmetic.md §1), the readers' fls
    and biases re-aligned to match: a choice calibration may make."""
    finer = {INPUT}
    program.input_unsigned = True
    program.input_fl += 1
    for layer in program.layers:
        assert layer.kind != "concat", "a concatenation group would need one signedness (§11)"
        if layer.inputs[0] in finer:  # the accumulator is one bit finer, and so is the bias (§4)
            layer.fl_in += 1
            layer.bias = golden.saturate(layer.bias * 2, golden.acc_width(program.width) - 1)
        if layer.skip in finer:
            layer.fl_skip += 1
        if layer.relu:
            layer.unsigned_out = True
            layer.fl_out += 1
            finer.add(layer.name)
    program.link_signedness()
    return program


def test_resnet8_with_unsigned_tensors_through_driver_and_rtl_is_bit_exact(resnet8_program, tmp_path):
    """ResNet-8's identity and projection shortcuts, per-side padding and folded average pool on
    the RTL, with the input and every ReLU output unsigned, so the RTL meets unsigned inputs,
    unsigned skip tensors of the identity shortcuts beside signed projection ones, and unsigned
    outputs with values above 2^(W-1) - 1; the program goes through the file format (version 4)
    first. (Signed tensors meet the RTL in the user's ResNet-8 below.)"""
    path = tmp_path / "resnet8-unsigned.radix"
    unsigned_where_non_negative(Program.load(resnet8_program)).save(path)
    program = Program.load(path)
    assert program.input_unsigned and any(layer.unsigned_skip for layer in program.layers)
    x, _ = load_split("mnist32rgb", "test")
    outputs = network.run(program, network.quantize_input(program, x[:1]))
    assert max(int(out.values.max()) for out, layer in zip(outputs, program.layers) if layer.unsigned_out) > 127
    result = run_host("radix.runner:run_files", {"program": str(path), "data": "mnist32rgb", "images": 1},
                      EngineConfig(), pause=0.3, seed=11)
    assert result["bit_exact"] is True and result["first_mismatch"] is None, result["first_mismatch"]
    assert result["images"] == 1
    assert all(cycles > 0 for cycles in result["cycles"]["per_layer_mean"].values())


def test_digitsnet_through_driver_and_rtl_is_bit_exact(digits_program):
    result = run_host("radix.runner:run_files",
                      {"program": str(digits_program), "data": "digits", "images": 12}, EngineConfig(),
                      pause=0.3, seed=5)
    assert result["bit_exact"] is True and result["first_mismatch"] is None
    assert result["images"] == 12 and result["accuracy"] == result["reference_accuracy"]
    assert all(cycles > 0 for cycles in result["cycles"]["per_layer_mean"].values())


def test_selftest_on_rtl_has_no_mismatch():
    result = run_host("radix.runner:selftest", {"seed": 7, "count": 25}, EngineConfig(), pause=0.3, seed=7)
    assert result["layers"] == 25 and result["mismatches"] == 0, result["details"]


# layers the cycle model's constants were not measured on (radix.cycle_model): pooling, a fold,
# several input and output tiles, a stride-2 1x1, a kernel of 2, a layer split into two bands
MODEL_CHECK_LAYERS = [
    dict(name="conv 16->24 @10 k3 pool", kind="conv", c_in=16, c_out=24, size=10, kernel=3, stride=1, pad=1, pool=True),
    dict(name="conv 2->8 @12 k3 folded", kind="conv", c_in=2, c_out=8, size=12, kernel=3, stride=1, pad=1, pool=False),
    dict(name="fc 200->30", kind="fc", c_in=200, c_out=30),
    dict(name="conv 48->16 @6 k1 s2", kind="conv", c_in=48, c_out=16, size=6, kernel=1, stride=2, pad=0, pool=False),
    dict(name="conv 16->40 @7 k3 s2", kind="conv", c_in=16, c_out=40, size=7, kernel=3, stride=2, pad=1, pool=False),
    dict(name="conv 8->70 @5 k2", kind="conv", c_in=8, c_out=70, size=5, kernel=2, stride=1, pad=0, pool=False),
    dict(name="conv 16->16 @40 k3 bands", kind="conv", c_in=16, c_out=16, size=40, kernel=3, stride=1, pad=1, pool=False),
]


def test_cycle_model_follows_the_rtl():
    """The analytic model's START-to-DONE cycles within 3% of the RTL's (no memory pauses)."""
    results = run_host("radix.runner:measure_layers", {"layers": MODEL_CHECK_LAYERS, "seed": 3}, EngineConfig())
    assert [r["jobs"] for r in results][-1] == 2  # the last layer is two bands
    for r in results:
        assert r["bit_exact"], r["name"]
        assert abs(r["model_cycles"] - r["cycles"]) <= 0.03 * r["cycles"], r


def test_program_for_other_width_refused_inside_simulation(tmp_path):
    """A 16-bit program on the default (8-bit) build: the driver inside the simulation reads the
    engine's DATA_WIDTH and refuses it, naming both widths."""
    x, _ = load_split("digits", "train")
    graph, _ = ingest(load_builtin("digitsnet"), (1, 8, 8))
    path = tmp_path / "digitsnet-16.radix"
    calibrate(graph, x[:100], CalibrationSettings(bits=16)).save(path)
    with pytest.raises(SimulationError, match="program is 16-bit, the engine's DATA_WIDTH is 8"):
        run_host("radix.runner:run_files", {"program": str(path), "data": "digits", "images": 1}, EngineConfig())


def test_user_resnet8_file_model_check_calibrate_eval_and_rtl(tmp_path, capsys):
    """The issue's newcomer flow: a ResNet-8-style file.py:factory with --weights is accepted,
    calibrates at 8 bits within 0.5 pp of float top-1 on the 1,000 test images, and runs on the
    RTL bit-exact with the reference."""
    model = tmp_path / "my_resnet.py"
    model.write_text("from radix_models.resnet8 import ResNet8\n\ndef build():\n    return ResNet8()\n")
    weights = str(get_spec("resnet8").weights)
    spec = f"{model}:build"
    assert main(["check", spec, "--weights", weights, "--input-shape", "3,32,32"]) == 0
    program = tmp_path / "resnet8.radix"
    assert main(["calibrate", spec, "--weights", weights, "--data", "mnist32rgb", "--images", "500",
                 "--per-channel", "--activations", "maxabs", "-o", str(program)]) == 0
    capsys.readouterr()
    assert main(["eval", str(program), "--data", "mnist32rgb", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 1000 and report["accuracy"] >= report["float_accuracy"] - 0.005, report
    assert main(["run", str(program), "--backend", "sim", "--data", "mnist32rgb", "--images", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True


DSCNN_STYLE = '''
import torch
from torch import nn


class KeywordNet(nn.Module):
    """DS-CNN's shape, smaller: a 10x4 stride-2 convolution with Keras "same" padding on a 49x10
    map, a depthwise-separable block (depthwise 3x3, pointwise 1x1), a 3x1 and a 1x3 convolution,
    strides 2x1, a 13x5 average pool to a 12-way classifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.front = nn.Sequential(nn.ZeroPad2d((1, 1, 4, 5)), nn.Conv2d(1, 16, (10, 4), stride=2),
                                   nn.BatchNorm2d(16), nn.ReLU())
        self.separable = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),
                                       nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.tall = nn.Sequential(nn.Conv2d(16, 24, (3, 1), padding=(1, 0)), nn.ReLU())
        self.wide = nn.Sequential(nn.Conv2d(24, 24, (1, 3), stride=(2, 1), padding=(0, 1)), nn.ReLU())
        self.head = nn.Sequential(nn.AvgPool2d((13, 5)), nn.Flatten(), nn.Linear(24, 12))

    def forward(self, x):
        return self.head(self.wide(self.tall(self.separable(self.front(x)))))


def build():
    return KeywordNet().eval()
'''


def test_user_rectangular_kernel_model_check_calibrate_eval_and_rtl(tmp_path, capsys, monkeypatch):
    """A DS-CNN-style model (10x4 stride-2 first layer, a depthwise-separable block, k x 1 and 1 x k
    kernels, unequal strides, a non-square pool) from the user's own file: check, calibrate, eval,
    and run on the RTL bit-exact with the reference (given by a path relative to the working
    directory, which the simulator, running elsewhere, must still find); its ONNX export is taken
    too."""
    import numpy as np
    import torch

    (tmp_path / "kws.py").write_text(DSCNN_STYLE)
    rng = np.random.default_rng(7)
    np.savez(tmp_path / "mfcc.npz", x=rng.normal(size=(40, 1, 49, 10)).astype(np.float32),
             y=rng.integers(0, 12, 40))
    spec, data = f"{tmp_path / 'kws.py'}:build", str(tmp_path / "mfcc.npz")
    assert main(["check", spec, "--input-shape", "1,49,10", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [l["kind"] for l in layers] == ["conv"] * 5 + ["fc"]
    program = tmp_path / "kws.radix"
    assert main(["calibrate", spec, "--data", data, "-o", str(program)]) == 0
    loaded = Program.load(program)
    assert loaded.layers[0].kernel == (10, 4) and loaded.layers[0].padding == (4, 1, 5, 1)
    assert loaded.layers[1].groups == 16 and loaded.layers[1].weights.shape == (16, 1, 3, 3)
    assert loaded.layers[4].kernel == (1, 3) and loaded.layers[4].stride == (2, 1)
    capsys.readouterr()
    assert main(["eval", str(program), "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "classify"
    monkeypatch.chdir(tmp_path)
    assert main(["run", program.name, "--backend", "sim", "--data", "mfcc.npz", "--images", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True
    onnx_path = tmp_path / "kws.onnx"
    from radix.modelspec import resolve  # the same loader the CLI uses
    torch.onnx.export(resolve(spec).module, torch.zeros(1, 1, 49, 10), onnx_path, dynamo=False)
    assert main(["check", str(onnx_path), "--json"]) == 0
    assert [l["kind"] for l in json.loads(capsys.readouterr().out)["layers"]] == ["conv"] * 5 + ["fc"]


MOBILENET_STYLE = '''
import torch
from torch import nn


def block(c_in, c_out, stride):
    """MobileNetV1's depthwise-separable block with Keras "same" padding (stride 2: one row and
    column after), BatchNorm and ReLU after each convolution."""
    pad = [nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []
    return nn.Sequential(*pad, nn.Conv2d(c_in, c_in, 3, stride, 0 if pad else 1, groups=c_in, bias=False),
                         nn.BatchNorm2d(c_in), nn.ReLU(),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def build():
    torch.manual_seed(9)
    model = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 8, 3, 2, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU(), block(8, 16, 1), block(16, 32, 2), block(32, 32, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()
'''


def test_user_mobilenet_style_model_and_its_onnx_export_on_rtl(tmp_path, capsys):
    """A MobileNetV1-style model (PyTorch groups = C, Keras "same" strided padding, a global pool
    before the classifier) from the user's own file and its ONNX export: each checks, calibrates,
    evaluates and runs on the RTL bit-exact with the reference."""
    import numpy as np
    import torch

    from radix.modelspec import resolve

    (tmp_path / "mobile.py").write_text(MOBILENET_STYLE)
    spec = f"{tmp_path / 'mobile.py'}:build"
    x, _ = load_split("digitwake96", "test")
    small = x[:40, :, :16, :16]  # corners of the wake photos: 3x16x16 images (small: the RTL runs twice)
    with torch.no_grad():
        labels = resolve(spec).module(torch.from_numpy(np.ascontiguousarray(small))).argmax(1).numpy()
    np.savez(tmp_path / "photos.npz", x=small, y=labels)
    onnx_path = tmp_path / "mobile.onnx"
    torch.onnx.export(resolve(spec).module, torch.zeros(1, 3, 16, 16), onnx_path, dynamo=False)
    data = str(tmp_path / "photos.npz")
    for model, extra in ((spec, ["--input-shape", "3,16,16"]), (str(onnx_path), [])):
        assert main(["check", model, *extra, "--json"]) == 0
        layers = json.loads(capsys.readouterr().out)["layers"]
        assert [l["groups"] for l in layers if l["kind"] == "conv"] == [1, 8, 1, 16, 1, 32, 1], model
        program = tmp_path / f"{model.rsplit('.', 1)[-1]}.radix"
        assert main(["calibrate", model, "--data", data, "-o", str(program)]) == 0
        capsys.readouterr()
        assert main(["eval", str(program), "--data", data, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["task"] == "classify"
        assert main(["run", str(program), "--backend", "sim", "--data", data, "--images", "1", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["bit_exact"] is True, model


def test_builtin_autoencoder_on_its_data_and_rtl(tmp_path, capsys):
    """MLPerf Tiny's anomaly-detection autoencoder (640 inputs), trained on machine640: calibrated
    at 8 bits it keeps the float model's anomaly ranking and runs on the RTL bit-exact."""
    program = tmp_path / "autoencoder.radix"
    assert main(["calibrate", "autoencoder", "--data", "machine640", "--images", "500", "-o", str(program)]) == 0
    capsys.readouterr()
    assert main(["eval", str(program), "--data", "machine640", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "reconstruct"
    assert report["auc"] >= report["float_auc"] - 0.01 and report["error_rank_correlation"] > 0.95, report
    assert main(["run", str(program), "--backend", "sim", "--data", "machine640", "--images", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True
