"""Models whose input is a vector (N, F): an MLP classifier and an autoencoder (the MLPerf Tiny
anomaly-detection shape, smaller), from a user's own file through check, calibrate, eval and run,
as a user would type them in their own directory."""

import json
import textwrap

import numpy as np
import pytest

from radix.cli import main
from radix.evaluate import _spearman, roc_auc, reconstruction_report

MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def autoencoder():
        torch.manual_seed(0)
        dims = [64, 32, 32, 8, 32, 32, 64]
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        model = nn.Sequential(*layers[:-2])
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        return model.eval()

    def mlp():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
""")


@pytest.fixture()
def user_dir(tmp_path, monkeypatch):
    (tmp_path / "models.py").write_text(MODELS)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 64)).astype(np.float32)
    y = (np.arange(80) % 2).astype(np.int64)  # 0 normal, 1 anomalous: anomalies are louder
    x[y == 1] *= 2.5
    np.savez(tmp_path / "vectors.npz", x=x, y=y)
    np.savez(tmp_path / "classes.npz", x=x, y=rng.integers(0, 5, 80))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(capsys, *argv):
    status = main([str(a) for a in argv] + ["--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


def test_autoencoder_check_calibrate_eval_run(capsys, user_dir):
    status, report = cli(capsys, "check", "models.py:autoencoder", "--input-shape", "64")
    assert status == 0 and [l["kind"] for l in report["layers"]] == ["fc"] * 6
    status, report = cli(capsys, "check", "models.py:autoencoder", "--data", "vectors.npz")
    assert status == 0 and report["layers"][0]["out_shape"] == [32]
    status, _ = cli(capsys, "calibrate", "models.py:autoencoder", "--data", "vectors.npz", "-o", "ae.radix")
    assert status == 0
    status, report = cli(capsys, "eval", "ae.radix", "--data", "vectors.npz")
    assert status == 0 and report["task"] == "reconstruct" and report["task_reason"] == "the output has the input's shape"
    assert report["output_sqnr_db"] > 20 and report["error_rank_correlation"] > 0.9
    assert 0 <= report["auc"] <= 1 and 0 <= report["float_auc"] <= 1
    status, report = cli(capsys, "run", "ae.radix", "--data", "vectors.npz", "--images", "6")
    assert status == 0 and report["bit_exact"] and report["task"] == "reconstruct"
    assert main(["run", "ae.radix", "--data", "vectors.npz", "--images", "2"]) == 0
    assert "2 inputs on the reference backend, reconstructed" in capsys.readouterr().out


def test_vector_classifier_and_forced_task(capsys, user_dir):
    status, _ = cli(capsys, "calibrate", "models.py:mlp", "--data", "classes.npz", "-o", "mlp.radix")
    assert status == 0
    status, report = cli(capsys, "eval", "mlp.radix", "--data", "classes.npz")
    assert status == 0 and report["task"] == "classify" and 0 <= report["accuracy"] <= 1
    status, report = cli(capsys, "eval", "mlp.radix", "--data", "classes.npz", "--task", "reconstruct")
    assert status == 2 and "does not have the input's 64 values" in report["error"]


@pytest.mark.parametrize("shape", ["64,1", "0", "a"])
def test_input_shape_is_one_or_three_positive_integers(capsys, shape):
    status = main(["check", "lenet5", "--input-shape", shape])
    assert status == 2 and "--input-shape" in capsys.readouterr().err


def test_npz_of_other_ranks_is_named(capsys, tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2, 3)), y=np.zeros(4, dtype=np.int64))
    status = main(["eval", "x.radix", "--data", str(tmp_path / "bad.npz")])
    assert status == 2


def test_rank_statistics_against_hand_computed_values():
    assert _spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert _spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert _spearman([1, 1, 1], [1, 2, 3]) is None
    # ties share a rank: scores (0.1, 0.4, 0.4, 0.9) for labels (0, 0, 1, 1): pairs won 3 of 4, one tie
    assert roc_auc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(3.5 / 4)


def test_reconstruction_report_is_exact_for_a_perfect_program():
    class Program:
        input_shape = (3,)
        layers = [type("Layer", (), {"fl_out": 2, "out_shape": (3,)})()]

    x = np.array([[0.25, 0.5, -1.0], [1.0, 0.0, 0.75]])
    report = reconstruction_report(Program(), x, np.array([0, 1]), x * 4, float_outputs=x)
    assert report["mean_error"] == 0 and report["output_sqnr_db"] == float("inf")
    assert report["auc"] == 0.5 and report["error_rank_correlation"] is None  # every error ties at 0
