"""radix compress end to end: the model file as MODEL, calibration, the engine, and the command's report."""

import argparse
import json
import textwrap

import numpy as np
import pytest
import torch
from torch import fx, nn

from radix.calibrate import CalibrationSettings, calibrate
from radix.compress import CompressionError, model_file
from radix.compress.cli import add_parser
from radix.compress.storage import program_storage
from radix.datasets import load_split
from radix.ingest import ingest
from radix.modelspec import ModelSpecError, resolve
from radix.program import Program
from radix.runner import run_images
from radix.command_exec import ReferenceBusTransport

torch.set_num_threads(1)


def compress_args(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["compress", *argv])


def run_compress(*argv) -> dict:
    args = compress_args(*argv, "--json")
    result = args.handler(args)
    json.dumps(result["json"])  # the report is JSON as it stands
    return result


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    out = tmp_path_factory.mktemp("dc") / "digits-dc.pt"
    result = run_compress("digitsnet", "--data", "digits", "--prune", "0.6", "--share", "4", "--epochs", "1",
                          "--prune-steps", "2", "--images", "400", "-o", str(out))
    return out, result


def test_the_report_has_the_issues_figures(compressed):
    out, result = compressed
    report = result["json"]
    for key in ("params_before", "params_after", "float_accuracy_before", "float_accuracy_after", "bytes_dense",
                "bytes_compressed", "layers", "methods", "cycles_before", "cycles_after", "macs_after"):
        assert key in report, key
    assert report["params_before"] == 1914 - 16  # digitsnet's BatchNorm folded into the conv before it
    assert report["bytes_dense"] == 4 * report["weights_before"]
    assert report["compression_ratio"] > 5 and report["huffman"]
    assert [m["method"] for m in report["methods"]] == ["prune", "share"]
    assert all(row["codebook"] <= 16 for row in report["layers"])
    assert report["sparsity"] >= 0.6 - 1e-3
    assert "layer" in result["text"] and f"wrote {out}" in result["text"]


def test_a_model_file_is_a_model_every_command_takes(compressed):
    out, result = compressed
    resolved = resolve(str(out))
    assert resolved.input_shape == (1, 8, 8) and resolved.dataset == "digits"
    assert resolved.weights_sha256 and resolved.spec == str(out.resolve())
    x_train, _ = load_split("digits", "train")
    x_test, y_test = load_split("digits", "test")
    graph, _ = ingest(resolved.module, resolved.input_shape)
    program = calibrate(graph, x_train[:200], CalibrationSettings(bits=8))
    with torch.no_grad():
        float_top1 = float(np.mean(resolved.module(torch.from_numpy(x_test)).argmax(1).numpy() == y_test))
    assert float_top1 == pytest.approx(result["json"]["float_accuracy_after"])
    run = run_images(ReferenceBusTransport(), program, x_test[:4], y_test[:4])
    assert run["bit_exact"]
    path = out.with_suffix(".radix")
    program.weight_storage = "compressed"
    program.save(path)
    loaded = Program.load(path)
    for got, want in zip(loaded.layers, program.layers):
        np.testing.assert_array_equal(got.weights, want.weights)
    assert run_images(ReferenceBusTransport(), loaded, x_test[:4], y_test[:4])["bit_exact"]
    storage = program_storage(loaded)
    assert storage["compressed_bytes"] < storage["packed_bytes"] / 3


def test_compress_a_users_factory_model_with_weights(tmp_path):
    source = tmp_path / "net.py"
    source.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 12, 3, padding=1)
                self.bn = nn.BatchNorm2d(12)
                self.fc1 = nn.Linear(12 * 4 * 4, 40)
                self.fc2 = nn.Linear(40, 10)

            def forward(self, x):
                x = torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
                x = x.view(x.size(0), 192)
                return self.fc2(torch.relu(self.fc1(x)))

        def build():
            return Net()
    """))
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    spec = f"{source}:build"
    torch.save(resolve(spec).module.state_dict(), weights)
    out = tmp_path / "net-small.pt"
    result = run_compress(spec, "--weights", str(weights), "--data", "digits", "--svd", "6", "--svd-layers", "fc1", "--prune-channels", "0.3",
                          "--epochs", "1", "--images", "300", "-o", str(out))
    report = result["json"]
    assert report["layers"][1]["name"] == "fc1.0" and report["layers"][1]["rank"] == 6
    assert report["macs_after"] <= 0.7 * report["macs_before"]
    loaded = model_file.load(out)
    graph, _ = ingest(loaded.module, loaded.input_shape)
    assert [layer.name for layer in graph.layers] == ["conv", "fc1.0", "fc1.1", "fc2"]
    x = torch.rand(3, 1, 8, 8)
    compressed = resolve(str(out)).module
    with torch.no_grad():
        torch.testing.assert_close(compressed(x), loaded.module(x))


def test_model_files_load_without_running_code(tmp_path):
    state_dict = tmp_path / "state.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state_dict)
    with pytest.raises(ModelSpecError, match="a state_dict, not a Radix model file"):
        resolve(str(state_dict))
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a pickled module: loading it would run code
    with pytest.raises(ModelSpecError, match="loads without running code"):
        resolve(str(pickled))
    with pytest.raises(ModelSpecError, match="no such file"):
        resolve(str(tmp_path / "missing.pt"))


def test_a_tampered_architecture_is_refused(tmp_path):
    module = fx.symbolic_trace(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    path = tmp_path / "m.pt"
    model_file.save(module, path, input_shape=(1, 2, 2))
    record = torch.load(path, weights_only=True)
    architecture = json.loads(record["architecture"])
    architecture["nodes"][1] = {"op": "call_function", "name": "boom", "target": "os.system",
                                "args": ["true"], "kwargs": {}}
    record["architecture"] = json.dumps(architecture)
    torch.save(record, path)
    with pytest.raises(model_file.ModelFileError, match="function 'os.system' is not one a model file may call"):
        model_file.load(path)
    with pytest.raises(model_file.ModelFileError, match=r"module 0 \(Hardswish\) cannot be stored"):
        model_file.save(fx.symbolic_trace(nn.Sequential(nn.Hardswish())), path, input_shape=(1, 2, 2))


@pytest.mark.parametrize("argv, message", [
    (["--share", "4", "--prune", "0.5"], "--share must come last"),
    (["--svd-conv"], "--svd-conv and --svd-layers need --svd"),
    (["--prune", "0.5", "--weight-bits", "fc=4"], "--weight-bits needs --radix-bits"),
    (["--prune", "0.5", "-o", "x.radix"], "the output is a model file"),
])
def test_bad_command_lines_name_the_option(tmp_path, argv, message):
    args = compress_args("digitsnet", "--data", "digits", "-o", str(tmp_path / "x.pt"), *argv)
    with pytest.raises(CompressionError, match=message):
        args.handler(args)


def test_codebook_errors_skip_a_layer_with_an_average_pool_folded_in():
    from radix.compress.flow import codebook_errors

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.round(model[0].weight * 8) / 8)  # a few shared values each
        model[4].weight.copy_(torch.round(model[4].weight * 8) / 8)
    x = np.random.default_rng(0).random((8, 1, 6, 6)).astype(np.float32)
    graph, _ = ingest(model, (1, 6, 6))
    program = calibrate(graph, x, CalibrationSettings(bits=8))
    # the Linear's program weights are its weights spread over the 4x4 window, divided by 16
    assert np.size(next(layer for layer in program.layers if layer.name == "4").weights) == 3 * 4 * 16
    errors = codebook_errors(model, program, {"0", "4"})
    assert set(errors) == {"0"} and errors["0"]["values"] > 1
