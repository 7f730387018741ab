"""Calibration plots: one readable PNG per engine layer plus the SQNR summary, numbers checked."""

import numpy as np
import pytest
from matplotlib import image

import radix_models
from radix.calibrate import CalibrationSettings, calibrate
from radix.datasets import load_split
from radix.ingest import ingest
from radix.report_plots import SUMMARY, PlotError, layer_sqnr, saturated_share, weight_stats, write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lenet5():
    """LeNet-5 calibrated on 64 training images, with 32 test images."""
    x, _ = load_split("mnist5k", "train")
    x_test, _ = load_split("mnist5k", "test")
    graph, _ = ingest(radix_models.load_builtin("lenet5"), (1, 28, 28))
    programs = {per_channel: calibrate(graph, x[:64], CalibrationSettings(bits=8, per_channel=per_channel))
                for per_channel in (False, True)}
    return graph, programs, x[:64], x_test[:32]


@pytest.mark.parametrize("per_channel", [False, True])
def test_one_png_per_layer_and_a_summary(lenet5, tmp_path, per_channel):
    graph, programs, x, x_test = lenet5
    program = programs[per_channel]
    paths = write_plots(graph, program, x, tmp_path / "report", x_test=x_test)
    names = [layer.name for layer in program.layers if layer.kind != "concat"]
    assert [p.name for p in paths] == [f"{i:02d}-{name}.png" for i, name in enumerate(names)] + [SUMMARY]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 500
        assert pixels.std() > 0.05  # something is drawn


def test_activation_sqnr_is_calibrations_on_the_calibration_images(lenet5):
    graph, programs, x, _ = lenet5
    program = programs[False]
    sqnr = layer_sqnr(graph, program, x)
    for layer in program.layers:
        assert sqnr[layer.name] == pytest.approx(layer.stats["act_sqnr_db"], abs=1e-3)


def test_weight_statistics_match_calibrations(lenet5):
    graph, programs, _, _ = lenet5
    for per_channel, program in programs.items():
        for layer, float_layer in zip(program.layers, graph.layers):
            stats = weight_stats(layer, float_layer.weight)
            assert stats.sqnr_db == pytest.approx(layer.stats["weight_sqnr_db"], abs=1e-3)
            fl = np.asarray(layer.fl_w).reshape((-1,) + (1,) * (float_layer.weight.ndim - 1))
            share = saturated_share(float_layer.weight, fl, layer.weight_bits)
            assert share == pytest.approx(layer.stats["weight_saturated"])
            assert stats.share(stats.saturated) == pytest.approx(share)


@pytest.mark.parametrize("bits, fl", [(8, 3), (8, -2), (4, 6), (16, 9)])
def test_saturated_share_by_thresholds(bits, fl):
    """Independently of the rounding code: v saturates iff v 2^fl + 1/2 reaches 2^(bits-1) or falls
    below -2^(bits-1) (round half up, docs/arithmetic.md §2)."""
    rng = np.random.default_rng(bits * 100 + fl)
    scale = 2.0 ** (bits - 1 - fl)
    values = np.concatenate([rng.normal(scale=scale / 2, size=500), rng.uniform(-2 * scale, 2 * scale, 500),
                             [scale - 2.0 ** -fl / 2, scale - 2.0 ** -fl / 2 - 1e-9 * scale, -scale - 2.0 ** -fl / 2,
                              -scale - 2.0 ** -fl / 2 - 1e-9 * scale]])
    top = 2.0 ** (bits - 1)
    expected = sum(1 for v in values if v * 2.0 ** fl + 0.5 >= top or v * 2.0 ** fl + 0.5 < -top) / len(values)
    assert 0 < expected < 1
    assert saturated_share(values, fl, bits) == expected


def test_bad_images_and_unwritable_directory_are_named(lenet5, tmp_path):
    graph, programs, x, _ = lenet5
    with pytest.raises(PlotError, match=r"images of shape \(3, 1, 8, 8\): the program's input is \(N, 1, 28, 28\)"):
        write_plots(graph, programs[False], np.zeros((3, 1, 8, 8)), tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PlotError, match=f"{blocker / 'report'}: cannot create the plot directory"):
        write_plots(graph, programs[False], x, blocker / "report")
