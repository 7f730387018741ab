"""The driver over the reference bus engine: a program loaded once, batches from one START, the
host's cost, the limits and the faults, against the golden model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import golden, network
from radix.command_exec import ReferenceBusTransport
from radix.driver import Driver, EngineFault, EngineMismatch, EngineTimeout
from radix.engine_spec import BUS_ENGINE_VERSION, ERROR_CODE, EngineConfig, bus_register
from radix.placement import PlacementError
from radix.program import Layer, Program, ProgramError


def random_program(rng, *, width, c_in, h, k, stride, pad, pool, c_mid, fc_out, unsigned=(False, False, False)):
    """A conv and an fc layer; ``unsigned`` gives the signedness of the input, the conv's and the
    fc's outputs (docs/arithmetic.md §1)."""
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1)
    conv_h = (h + 2 * pad - k) // stride + 1
    out_h = conv_h // 2 if pool else conv_h
    conv = Layer(name="conv", kind="conv", modules=["conv"], in_shape=(c_in, h, h), out_shape=(c_mid, out_h, out_h),
                 kernel=k, stride=stride, padding=(pad,) * 4, relu=bool(rng.integers(2)), pool=pool, fl_in=6,
                 fl_w=[int(v) for v in rng.integers(4, 9, c_mid)], fl_out=int(rng.integers(2, 12)), weight_bits=width,
                 weights=rng.integers(lo, hi, (c_mid, c_in, k, k)), bias=rng.integers(-5000, 5000, c_mid),
                 inputs=["input"])
    fc = Layer(name="fc", kind="fc", modules=["fc"], in_shape=(c_mid, out_h, out_h), out_shape=(fc_out,), kernel=1,
               stride=1, padding=(0, 0, 0, 0), relu=False, pool=False, fl_in=conv.fl_out, fl_w=[7],
               fl_out=int(rng.integers(0, 8)), weight_bits=width,
               weights=rng.integers(lo, hi, (fc_out, c_mid * out_h * out_h)), bias=rng.integers(-5000, 5000, fc_out),
               inputs=["conv"])
    conv.unsigned_out, fc.unsigned_out = unsigned[1:]
    program = Program(width=width, input_shape=(c_in, h, h), input_fl=6, layers=[conv, fc], input_unsigned=unsigned[0])
    program.link_signedness()
    return program


def images(rng, program, count):
    lo, hi = golden.tensor_range(program.width, unsigned=program.input_unsigned)
    return rng.integers(lo, hi + 1, (count,) + tuple(program.input_shape))


def small_program(seed: int, width: int = 8):
    """A two-convolution, one-FC random program small enough for the reference engine's tests."""
    return random_program(np.random.default_rng(seed), width=width, c_in=2, h=6, k=3, stride=1, pad=1, pool=False,
                          c_mid=3, fc_out=2)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(8, 8, 8), (8, 16, 24), (16, 4, 4), (16, 8, 12)]),
       st.integers(1, 5), st.integers(1, 3), st.booleans(), st.integers(1, 12), st.integers(1, 12),
       st.integers(1, 5), st.integers(1, 3), st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_batches_match_golden_with_banding(seed, build, k, stride, pool, c_in, c_mid, fc_out, batch, unsigned):
    width, rows, cols = build
    rng = np.random.default_rng(seed)
    pad = int(rng.integers(0, k))
    h = int(rng.integers(max(k - 2 * pad, 2 * stride + k), 14))
    program = random_program(rng, width=width, c_in=c_in, h=h, k=k, stride=stride, pad=pad, pool=pool, c_mid=c_mid,
                             fc_out=fc_out, unsigned=unsigned)
    # buffers just big enough for a couple of output rows, so the conv splits into many bands
    fc_tiles = -(-program.layers[1].weights.shape[1] * 2 // rows) + 2
    config = EngineConfig(rows=rows, cols=cols, width=width, in_depth=max(-(-c_in // rows) * h * (2 * stride + k),
                                                                         fc_tiles * batch),
                          wt_depth=max(k * k * rows * -(-c_in // rows), fc_tiles * rows * 2),
                          acc_depth=max(2 * (h + 2 * pad) + 2, batch))
    driver = Driver(ReferenceBusTransport(config))
    try:
        loaded = driver.load(program, batch=batch)
    except PlacementError as refusal:  # a layout the build cannot hold is refused by name, never run
        assert "layer" in str(refusal)
        return
    x = images(rng, program, 2 * batch)
    for first in (0, batch):
        chunk = x[first:first + batch]
        expected = network.run(program, chunk)
        run = driver.run(loaded, chunk, keep_memory=True)
        np.testing.assert_array_equal(run.logits, expected[-1].values)
        stats = run.layer_stats()
        for layer in expected:
            for b in range(batch):
                np.testing.assert_array_equal(run.tensor(layer.name, b), layer.values[b])
            assert stats[layer.name][1] == layer.saturated, layer.name


def test_saturations_per_layer_add_up_across_bands_and_images():
    rng = np.random.default_rng(3)
    program = random_program(rng, width=8, c_in=3, h=12, k=3, stride=1, pad=1, pool=False, c_mid=9, fc_out=4)
    program.layers[0].fl_out += 4  # a smaller data shift: plenty of saturation
    config = EngineConfig(rows=8, cols=8, in_depth=320, wt_depth=4096, acc_depth=24)
    driver = Driver(ReferenceBusTransport(config))
    loaded = driver.load(program, batch=2)
    x = images(rng, program, 2)
    run = driver.run(loaded, x, keep_memory=True)
    expected = network.run(program, x)
    stats = run.layer_stats()
    assert len([c for c in loaded.placement.commands if c.layer == "conv"]) > 2  # banded
    assert expected[0].saturated > 0
    for layer in expected:
        assert stats[layer.name][1] == layer.saturated, layer.name


def test_the_host_does_six_register_accesses_per_batch_and_no_per_layer_work():
    rng = np.random.default_rng(5)
    program = random_program(rng, width=8, c_in=3, h=16, k=3, stride=1, pad=1, pool=True, c_mid=16, fc_out=10)
    transport = ReferenceBusTransport(EngineConfig())
    driver = Driver(transport)
    before = transport.register_accesses
    loaded = driver.load(program, batch=4)
    assert transport.register_accesses - before == 4  # CMD_BASE, CMD_COUNT, WIN_BASE, WIN_SIZE, once
    x = images(rng, program, 4)
    run = driver.run(loaded, x)
    assert run.register_accesses == 6
    assert run.bytes_read > 0 and run.bytes_written > 0 and run.engine_cycles > 0 and run.host_seconds >= 0
    assert (transport.read(bus_register("WIN_BASE").offset), transport.read(bus_register("WIN_SIZE").offset)) == (
        transport.base, loaded.placement.memory_bytes)
    np.testing.assert_array_equal(run.logits, network.run(program, x)[-1].values)


def test_refuses_program_of_other_width():
    program = small_program(0, width=16)
    with pytest.raises(EngineMismatch, match="16-bit.*DATA_WIDTH is 8"):
        Driver(ReferenceBusTransport(EngineConfig())).check(program)


def test_refuses_layer_over_weight_buffer():
    program = random_program(np.random.default_rng(0), width=8, c_in=40, h=8, k=7, stride=1, pad=3, pool=False,
                             c_mid=3, fc_out=2)
    with pytest.raises(EngineMismatch, match="layer conv.*WT_DEPTH"):
        Driver(ReferenceBusTransport(EngineConfig(rows=8, cols=8, wt_depth=512))).check(program)


def test_refuses_foreign_engine():
    transport = ReferenceBusTransport(EngineConfig())
    transport.regs[bus_register("ID").offset] = 0x12345678
    with pytest.raises(EngineMismatch, match="not a Radix engine"):
        Driver(transport)
    transport = ReferenceBusTransport(EngineConfig())
    transport.regs[bus_register("VERSION").offset] = 4
    with pytest.raises(EngineMismatch, match=f"VERSION 4, this driver speaks version {BUS_ENGINE_VERSION}"):
        Driver(transport)


class NeverDone(ReferenceBusTransport):
    """An engine that starts and never finishes."""

    def _start(self):
        self._set("STATUS", 1)

    def wait_done(self, cycles):
        return False


def test_timeout_reports_registers_and_resets():
    program = small_program(1)
    transport = NeverDone(EngineConfig())
    driver = Driver(transport)
    loaded = driver.load(program)
    with pytest.raises(EngineTimeout, match=r"did not finish within \d+ cycles\nregisters: ID=0x52445831"):
        driver.run(loaded, images(np.random.default_rng(1), program, 1))
    assert transport.read(bus_register("STATUS").offset) == 0  # reset after the timeout


def test_engine_fault_names_the_command_and_its_layer():
    program = small_program(2)
    transport = ReferenceBusTransport(EngineConfig())
    driver = Driver(transport)
    loaded = driver.load(program)
    transport.write(bus_register("WIN_SIZE").offset, loaded.placement.memory_bytes // 2)  # too small a window
    with pytest.raises(EngineFault, match=r"stopped at command \d+ \(layer \w+\): ERR_CODE WINDOW"):
        driver.run(loaded, images(np.random.default_rng(2), program, 1))
    assert transport.last_result.error == ERROR_CODE["WINDOW"]


def test_refuses_a_program_that_reads_a_tensor_with_the_wrong_signedness():
    program = random_program(np.random.default_rng(4), width=8, c_in=2, h=6, k=3, stride=1, pad=1, pool=False,
                             c_mid=3, fc_out=2, unsigned=(False, True, False))
    program.layers[1].unsigned_in = False  # the fc reads the unsigned conv output as signed
    with pytest.raises(ProgramError, match="fc"):
        Driver(ReferenceBusTransport(EngineConfig())).check(program)
