"""The operation registry (radix.ops, docs/operations.md): every layer has one operation, every
operation's hooks agree with each other and with the golden model."""

import numpy as np
import pytest

from radix import network, ops, runner
from radix.command_exec import ReferenceBusTransport
from radix.driver import Driver
from radix.engine_spec import DEFAULT_CONFIG, EngineConfig
from radix.ingest import SUPPORTED_OPERATIONS
from radix.program import KINDS, Layer


def _layer(kind: str, groups: int = 1, name: str = "layer") -> Layer:
    return Layer(name=name, kind=kind, modules=[], in_shape=(4, 5, 5), out_shape=(4, 5, 5), kernel=1, stride=1,
                 padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=0, fl_w=[0], fl_out=0, weight_bits=8,
                 weights=np.zeros((4, 4 // groups, 1, 1), dtype=np.int64), bias=np.zeros(4, dtype=np.int64),
                 inputs=["input"], groups=groups)


@pytest.mark.parametrize("kind, groups, expected", [
    ("conv", 1, ops.CONVOLUTION), ("conv", 2, ops.GROUPED_CONVOLUTION), ("conv", 4, ops.GROUPED_CONVOLUTION),
    ("fc", 1, ops.FULLY_CONNECTED), ("concat", 1, ops.CONCATENATION)])
def test_each_layer_has_exactly_one_operation(kind, groups, expected):
    layer = _layer(kind, groups)
    assert [op for op in ops.LAYER_OPERATIONS if op.claims(layer)] == [expected]
    assert layer.operation is expected


def test_every_program_kind_is_an_operations_and_an_unknown_one_is_named():
    assert set(KINDS) == {op.kind for op in ops.LAYER_OPERATIONS}
    with pytest.raises(ValueError, match="layer 'odd' has unknown kind 'pool'"):
        ops.of(_layer("pool", name="odd"))


def test_onnx_operators_and_readme_rows_belong_to_one_operation_each():
    every = ops.OPERATIONS + ops.GRAPH_OPERATIONS
    claimed = [op_type for op in every for op_type in op.onnx_ops]
    assert len(claimed) == len(set(claimed))
    assert {"Conv", "Gemm", "MatMul", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool",
            "BatchNormalization", "Relu", "Clip", "Pad"} <= set(claimed)
    rows = [row for op in every for row in op.readme]
    assert rows and all(row in SUPPORTED_OPERATIONS for row in rows)
    assert all(op.readme for op in every)


def test_random_shares_draw_every_operation_that_draws():
    shares = dict(runner.RANDOM_SHARES)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert set(shares) == {ops.CONVOLUTION, ops.GROUPED_CONVOLUTION, ops.FULLY_CONNECTED, ops.AVERAGE_POOL}


@pytest.mark.parametrize("config", [DEFAULT_CONFIG, EngineConfig(width=8, rows=5, cols=3, wt_depth=256, in_depth=128,
                                                                 acc_depth=256)])
@pytest.mark.parametrize("operation", runner.RANDOM_OPERATIONS, ids=lambda op: op.name.replace(" ", "_"))
def test_each_operations_random_layers_run_bit_exact_on_the_reference(operation, config):
    """An operation's random layers (its random_layer hook) placed by its place hook and run by the
    reference engine give its run hook's integers, word for word."""
    rng = np.random.default_rng(20261207)
    driver = Driver(ReferenceBusTransport(config))
    drawn = []
    for index in range(12):
        layer, x, skip = runner.fitting_layer(driver, rng, index, operation=operation)
        drawn.append(layer)
        expected = network.run_layer(layer, x[None], width=config.width, skip=None if skip is None else skip[None])
        got, _, saturated = runner.run_single(driver, layer, x, skip)
        np.testing.assert_array_equal(np.reshape(got, expected.values[0].shape), expected.values[0])
        assert saturated == expected.saturated
    if operation is ops.AVERAGE_POOL:
        assert all(layer.role == ops.AVGPOOL_ROLE for layer in drawn)
    else:  # a grouped layer of one input channel can only be dense
        assert all(layer.operation is operation or layer.in_shape[0] == 1 for layer in drawn)
